"""Text from the traffic is untrusted: it reaches the terminal only through `safe_text`."""

from rich.text import Text

MAX_CHARS = 200


def safe_str(value: object, limit: int = MAX_CHARS) -> str:
    """Every character `str.isprintable()` rejects (C0, DEL, C1, bidi overrides, ESC) becomes a
    visible escape, so no terminal sequence survives; long values are cut."""
    text = "" if value is None else str(value)
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                  for ch in text[:limit])
    return out + "…" if len(text) > limit else out


def safe_text(value: object, limit: int = MAX_CHARS, style: str = "") -> Text:
    """A rich `Text` (never markup, never emoji codes) of an untrusted value."""
    return Text(safe_str(value, limit), style=style)
