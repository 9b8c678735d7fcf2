"""Registry subjects, found in every form at once.

All plain spellings of every identifier of every subject sit in one Aho-Corasick automaton,
so a value is searched once whatever the size of the registry. Hashes are not searched for:
hex tokens of hash length are looked up in a dict of every subject's hashed forms, which keeps
memory linear in the registry and the scan time flat.
"""

import base64
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import NamedTuple
from urllib.parse import quote, quote_plus

import ahocorasick
import phonenumbers

from ..fields import Field
from ..policy import Subject, category_of
from .base import Finding, canonical, is_word_boundary, strip_accents

HASHES = ("md5", "sha1", "sha256", "sha512")
_SPACES = re.compile(r"\s+")
_HEX_TOKEN = re.compile(r"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{128}|[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![0-9a-fA-F])")
# Shorter spellings match too much of unrelated text (a first name of two letters).
_MIN_PLAIN = 3
_MIN_BASE64 = 8


class Form(NamedTuple):
    subject: str
    category: str
    canonical: str
    form: str


class KnownSubjects:
    id = "registry"

    def __init__(self, subjects: Iterable[Subject], region: str = "FR") -> None:
        self.region = region
        plain: dict[str, list[Form]] = defaultdict(list)
        encoded: dict[str, list[Form]] = defaultdict(list)
        self.hashes: dict[str, list[Form]] = defaultdict(list)
        self.size = 0
        for subject in subjects:
            self.size += 1
            for key, value in _with_full_names(subject.identifiers):
                category = category_of(key)
                canon = canonical(category, value, region)
                for text in self._spellings(category, key, value, canon):
                    form = "url" if "%" in text else "plain"
                    plain[text].append(Form(subject.id, category, canon, form))
                for text in self._hash_inputs(category, key, value, canon):
                    for algorithm in HASHES:
                        digest = hashlib.new(algorithm, text.encode()).hexdigest()
                        self.hashes[digest].append(Form(subject.id, category, canon, f"{algorithm}({category})"))
                    for b64 in _base64_prefixes(text):
                        encoded[b64].append(Form(subject.id, category, canon, "base64"))
        self.plain = _automaton(plain)
        self.encoded = _automaton(encoded)

    def _spellings(self, category: str, key: str, value: str, canon: str) -> set[str]:
        spellings = {value.lower(), canon.lower(), strip_accents(value).lower()}
        if category == "phone":
            spellings |= _phone_spellings(canon, self.region)
        elif category == "postal_address" and "," in value:
            spellings.add(value.split(",")[0].strip().lower())  # the street line alone
        elif category in ("iban", "payment_card"):
            spellings.add(" ".join(canon[i:i + 4] for i in range(0, len(canon), 4)).lower())
        elif category == "birth_date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            y, m, d = value.split("-")
            spellings |= {f"{y}{m}{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}"}
        for text in list(spellings):
            spellings |= {quote(text, safe="").lower(), quote_plus(text, safe="").lower()}
        return {s for s in spellings if len(s) >= _MIN_PLAIN}

    def _hash_inputs(self, category: str, key: str, value: str, canon: str) -> set[str]:
        """The normalisations that vendors hash (Meta, Google, TikTok: trimmed, lowercased,
        E.164 phones with and without '+')."""
        inputs = {value, value.lower(), canon}
        if category == "phone":
            inputs |= {canon.lstrip("+")}
        if category == "name":
            inputs |= {strip_accents(value).lower().replace(" ", ""), re.sub(r"[^\w]", "", canon)}
        if category == "birth_date":
            inputs |= {value.replace("-", "")}  # Meta's YYYYMMDD
        return {i for i in inputs if i}

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value
        # Spellings are indexed with single spaces: "Jane   Roe" is still Jane Roe.
        lowered = _SPACES.sub(" ", value.lower())
        spans: list[tuple[int, int, tuple[Form, ...]]] = []
        if len(self.plain):
            for end, (length, forms) in self.plain.iter(lowered):
                start = end - length + 1
                if _standalone(lowered, start, end + 1):
                    spans.append((start, end + 1, forms))
        # Longest first, and a match inside a longer one is part of it ("martin" in an email).
        spans.sort(key=lambda s: s[0] - s[1])
        kept: list[tuple[int, int]] = []
        for start, end, forms in spans:
            if any(s <= start and end <= e for s, e in kept):
                continue
            kept.append((start, end))
            for form in forms:
                yield Finding(self.id, form.category, field, lowered[start:end], form.canonical,
                              form.form, form.subject)
        if len(self.encoded):
            for end, (length, forms) in self.encoded.iter(value):
                for form in forms:
                    yield Finding(self.id, form.category, field, value[end - length + 1:end + 1],
                                  form.canonical, form.form, form.subject)
        if len(value) >= 32:
            for token in _HEX_TOKEN.finditer(value):
                # A name given both whole and as first/last name hashes alike: report it once.
                for form in dict.fromkeys(self.hashes.get(token.group().lower(), ())):
                    yield Finding(self.id, form.category, field, token.group(), form.canonical,
                                  form.form, form.subject)


# A word inside an address or a dotted id (`jean.martin@`, `martin_shop`) is not a name.
_GLUE = frozenset("@._-+")


def _standalone(text: str, start: int, end: int) -> bool:
    if not is_word_boundary(text, start, end):
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before in _GLUE and after in _GLUE) and before not in "@" and after not in "@"


def _with_full_names(identifiers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """first_name and last_name also make a full name, as forms and CRMs write it."""
    parts = dict(identifiers)
    extra = []
    if "first_name" in parts and "last_name" in parts:
        extra.append(("name", f"{parts['first_name']} {parts['last_name']}"))
    return [*identifiers, *extra]


def _phone_spellings(e164: str, region: str) -> set[str]:
    try:
        number = phonenumbers.parse(e164, region)
    except phonenumbers.NumberParseException:
        return set()
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national_digits = re.sub(r"\D", "", national)
    return {e164, e164.lstrip("+"), "00" + e164.lstrip("+"), national, national_digits,
            international, national.replace(" ", "."), national.replace(" ", "-")}


def _base64_prefixes(text: str) -> set[str]:
    """The part of base64(text) that stays the same when text is followed by more data."""
    raw = text.encode()
    stable = len(raw) // 3 * 4
    if stable < _MIN_BASE64:
        return set()
    standard = base64.b64encode(raw).decode()[:stable]
    return {standard, standard.replace("+", "-").replace("/", "_")}


def _automaton(patterns: dict[str, list[Form]]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for text, forms in patterns.items():
        automaton.add_word(text, (len(text), tuple(dict.fromkeys(forms))))
    if patterns:
        automaton.make_automaton()
    return automaton
