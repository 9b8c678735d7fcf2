"""Checkboxes a page serves already checked, with the words that say what they are for.

Read with the standard library's tolerant HTML parser, so attribute order, case, quoting,
`checked`, `checked="checked"` and labels (wrapping, `for=`, or the text that follows the
box) all come out the same.
"""

import re
from dataclasses import dataclass
from html.parser import HTMLParser

MAX_PAGE_CHARS = 2_000_000
_CONTEXT_CHARS = 160
# Words that make a checkbox a consent or marketing one (French and English).
_CONSENT_WORDS = re.compile(
    r"consent|newsletter|marketing|offres?|offers?|promotion|partenaire|partner|publicit|"
    r"advertis|opt[-_ ]?in|subscribe|abonn|prospection|commercial|sms|e-?mails? (?:de|from)|"
    r"j'accepte|i agree|accepte de recevoir|agree to receive|communications?|cookies?|"
    r"personnalis|tracking|analytics|mesure d'audience", re.I)


@dataclass(frozen=True)
class CheckedBox:
    name: str
    """The box's name or id, for the report."""
    text: str
    """What the box says: attributes, label and the text around it."""

    @property
    def is_consent(self) -> bool:
        return bool(_CONSENT_WORDS.search(self.text))


class _Boxes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.boxes: list[dict[str, str]] = []
        self.labels_for: dict[str, str] = {}
        self.open_labels: list[dict[str, str]] = []
        self.trailing: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k.lower(): (v or "") for k, v in attrs}
        if tag == "label":
            self.open_labels.append({"for": attributes.get("for", ""), "text": "", "boxes": ""})
        elif tag == "input":
            self.trailing = None
            if attributes.get("type", "").lower() == "checkbox" and "checked" in attributes:
                box = {"name": attributes.get("name") or attributes.get("id") or "?",
                       "id": attributes.get("id", ""),
                       "text": " ".join(attributes.get(k, "") for k in
                                        ("name", "id", "value", "class", "aria-label", "title"))}
                self.boxes.append(box)
                for label in self.open_labels:
                    label["boxes"] += f"{len(self.boxes) - 1} "
                self.trailing = box
        elif tag in ("form", "fieldset", "select", "button", "textarea"):
            self.trailing = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self.open_labels:
            label = self.open_labels.pop()
            if label["for"]:
                self.labels_for[label["for"]] = self.labels_for.get(label["for"], "") + label["text"]
            for index in label["boxes"].split():
                self.boxes[int(index)]["text"] += " " + label["text"]

    def handle_data(self, data: str) -> None:
        for label in self.open_labels:
            label["text"] += data
        if self.trailing is not None and len(self.trailing["text"]) < _CONTEXT_CHARS * 2:
            self.trailing["text"] += " " + data[:_CONTEXT_CHARS]


def checked_boxes(html: str) -> list[CheckedBox]:
    parser = _Boxes()
    parser.feed(html[:MAX_PAGE_CHARS])
    parser.close()
    return [CheckedBox(box["name"], f"{box['text']} {parser.labels_for.get(box['id'], '')}"
                       if box["id"] else box["text"]) for box in parser.boxes]
