"""What the registry index holds for an identifier: its plain spellings (case, accents,
spacing, date formats; not URL encoding: see url_encodings) or, for a phone number, the
digits it is looked up by, the base64 prefixes it starts, and the normalised inputs that
vendors hash."""

import base64
import re
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote, quote_plus, unquote_plus

import phonenumbers

from ..policy import category_of
from .base import SEPARATOR, canonical, strip_accents
from .hashes import _EVERY, _INPUT_BITS, _NARROW, _SINGLE

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is
# Shorter spellings match too much of unrelated text (a first name of two letters).
_MIN_PLAIN = 3
_MIN_BASE64 = 8
# Keystroke-by-keystroke trackers send each prefix of what is typed: only long identifiers
# (emails) are matched without their last characters, so a prefix still names one person.
_MIN_KEYSTROKE = 10
_NOT_DIGIT = re.compile(r"\D")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
# bytes.translate deletes in one pass what a regex replaces match by match (15 times faster
# on a batch), without the set-up str.translate pays on every call.
_NOT_ALNUM_OR_SEPARATOR = bytes(code for code in range(128)
                                if not chr(code).isalnum() and chr(code) != SEPARATOR)
_NOT_WORD = re.compile(r"[^\w]")
_NOT_LETTER = re.compile(r"[^a-z]")
_ZIP_CITY = re.compile(r"^(?P<street>.*?),?\s*(?P<zip>\b\d{4,5}\b)\s+(?P<city>[^,\d]+)$")


class HashInput(NamedTuple):
    category: str
    canonical: str
    text: str
    chains: tuple[int, ...]
    part: str = ""
    """The quasi-identifier the text is (see Finding.part); `canonical` is then its own."""


# Registry values that every request holds somewhere: they would name the subject in all of
# them. Such a value matches nothing, and `policy check` warns about it.
_COMMON_TOKENS = frozenset("""
    www http https ftp com org net html htm php asp json xml api app web mail email test
    null none nil true false undefined nan yes no ok unknown anonymous admin user guest
    default name id get post put home index info contact example localhost
""".split())
_LONGEST_COMMON = max(map(len, _COMMON_TOKENS))


def too_common(value: str) -> str | None:
    """Why a registry value must match nothing, or None."""
    text = value.strip()
    if len(text) > _LONGEST_COMMON:
        return None
    text = text.lower()
    if len(text) < _MIN_PLAIN:
        return f"shorter than {_MIN_PLAIN} characters"
    if text in _COMMON_TOKENS:
        return "a token most requests hold (www, https, null...)"
    if text.isdigit() and len(text) < 4:
        return "a number of fewer than 4 digits"
    return None


_WITH_PARTS = frozenset({"name", "postal_address", "birth_date"})  # what _parts splits


@lru_cache(maxsize=65536)
def _parts(key: str, category: str, value: str) -> tuple[tuple[str, str], ...]:
    """The quasi-identifiers (part, canonical) an identifier holds: the first and last name of
    a full name, the street, postcode and city of an address. A first or last name given alone,
    a one-word name and a birth date are one part, the whole of them (_whole_is_part)."""
    if category == "name":
        if key in ("first_name", "last_name"):
            return ((key.replace("_", " "), _name_key(value)),)
        words = _name_parts(value)
        if len(words) == 1:
            return (("name part", words[0]),)
        return (("first name", words[0]), ("last name", words[-1])) if words else ()
    if category == "postal_address":
        if match := _ZIP_CITY.match(value.strip()):
            return (("street", _name_key(match["street"])), ("postcode", match["zip"]),
                    ("city", _name_key(match["city"])))
        if "," in value:
            return (("street", _name_key(value.split(",")[0])),)
    if category == "birth_date":
        return (("birth date", value.strip()),)
    return ()


def _whole_is_part(category: str, parts: tuple[tuple[str, str], ...]) -> bool:
    return len(parts) == 1 and category != "postal_address"


def _part_of(key: str, category: str, value: str, canon: str,
             text: str | None) -> tuple[str, str]:
    """(part, canonical) of what matched, `text` of the identifier: part "" for all of it.
    Without a text (a base64 prefix), only an identifier that is a part is one."""
    if category not in _WITH_PARTS:
        return "", canon
    parts = _parts(key, category, value)
    if not parts:
        return "", canon
    if _whole_is_part(category, parts):
        return parts[0]
    if text is not None:
        written = _name_key(unquote_plus(text))
        for part in parts:
            if part[1] == written:
                return part
    return "", canon


def _identified(identifiers: tuple[tuple[str, str], ...], region: str,
                building: bool = False) -> list[tuple[str, str, str, str]]:
    """(key, category, value, canonical) of each identifier, full names included. While the
    index is built, a phone already in E.164 is parsed once for its canonical form and its
    keys, and canonical()'s memo is not asked: a registry's values are each seen once
    there, and would only push out what searches keep asking."""
    found = []
    canonical_of = _canonical_once if building else canonical
    for key, value in _with_full_names(identifiers):
        category = category_of(key)
        canon = _e164(value, region) if building and category == "phone" else None
        found.append((key, category, value, canon or canonical_of(category, value, region)))
    return found


_canonical_once = canonical.__wrapped__


def _e164(value: str, region: str) -> str | None:
    """A phone number already written in E.164, which is then its canonical form, or None.
    canonical() would parse it once more: the number formatted here is the one its keys are
    made from."""
    text = value.strip()
    if not text.startswith("+") or not text[1:].isdigit():
        return None
    if _templated(text):  # its E.164 format only
        template = _phone_template(text[:-_TAIL_DIGITS], region)
        formatted = template[0].format(*text[-_TAIL_DIGITS:]) if template is not None else None
        return text if formatted == text else None
    formats = _phone_formats(text, region)  # the region does not count after a "+"
    return text if formats is not None and formats[0] == text else None


def _spellings(category: str, value: str, canon: str) -> dict[str, str]:
    """Every spelling of an identifier, with its form: plain, url (an identifier that holds a
    %-escape as it is written), or one that only counts as a whole value (keystroke,
    birthday). Plain and url spellings are also found URL-encoded (url_encodings); the others
    are not. A phone number that has _phone_keys is looked up by them instead."""
    spellings = dict.fromkeys(_plain_spellings(category, value, canon), "plain")
    spellings.update((text, "url") for text in spellings if "%" in text)
    if category == "email" and len(canon) >= _MIN_KEYSTROKE:
        spellings.update((canon[:-cut], "keystroke") for cut in (1, 2))
    elif category == "birth_date" and _ISO_DATE.fullmatch(value):
        spellings[f"{value[5:7]}/{value[8:10]}"] = "birthday"  # Mailchimp's BIRTHDAY
    elif category == "postal_address" and (match := _ZIP_CITY.match(value.strip())):
        # A form's `city` or `zip` field: as a whole value only (not "Europe/Paris").
        city = match["city"].strip().lower()
        for text in (match["zip"], city, strip_accents(city)):
            if text not in spellings and too_common(text) is None:
                spellings[text] = "part"
    return spellings


def _plain_spellings(category: str, value: str, canon: str) -> set[str]:
    spellings = {value.lower(), canon.lower(), strip_accents(value).lower()}
    if category == "postal_address" and "," in value:
        spellings.add(value.split(",")[0].strip().lower())  # the street line alone
    elif category in ("iban", "payment_card"):
        spellings.add(" ".join(canon[i:i + 4] for i in range(0, len(canon), 4)).lower())
    elif category == "birth_date" and _ISO_DATE.fullmatch(value):
        y, m, d = value.split("-")
        spellings |= {f"{y}{m}{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"}
    elif category == "email":
        spellings.add(_gmail(canon))
    # At least _MIN_PLAIN long. One too short may not be once URL-encoded (a two-character
    # Chinese name is 18 characters): its encodings are spelled, as the decoded text is
    # searched only for what the automaton holds plain.
    kept = {s for s in spellings if too_common(s) is None}
    return kept | {encoded for text in spellings - kept for encoded in url_encodings(text)
                   if too_common(encoded) is None}


def url_encodings(text: str) -> set[str]:
    """A spelling URL-encoded (lowercase) as quote and quote_plus write it, if that changes
    it: what a value must hold for a spelling found in it once decoded to count. These are
    not spelled into the automaton (at 100,000 subjects they were 3 spellings in 8, and
    building it held 170 MB more)."""
    if _UNRESERVED.fullmatch(text):  # quoting leaves it as it is
        return set()
    encodings = {_quote(text, _QUOTE).lower()}
    if " " in text:  # else quote_plus quotes it as quote does
        encodings.add(_quote(text, _QUOTE_PLUS).lower())
    return encodings


def _hash_inputs(identified: list[tuple[str, str, str, str]], region: str,
                 research: bool = False, building: bool = False) -> list[HashInput]:
    """What vendors hash, in a fixed order (a reference stores the position; the same in
    both scopes): the normalisations that Meta CAPI, Google enhanced conversions and GA4
    user-provided data, TikTok, Snap and LinkedIn document, each through the hashes vendors
    use. With the research set (hashes.HASH_SCOPES), the primary email also gets every hash
    and chain, phones every hash. `building`: the index, which reads only each input's text
    and chains, so its part is not worked out (a tenth of the index's build)."""
    inputs: dict[str, HashInput] = {}
    every, single = (_EVERY, _SINGLE) if research else (_NARROW, _NARROW)

    def add(category: str, canon: str, text: str, chains: tuple[int, ...] = _NARROW) -> None:
        # Half the texts come again (an email's canonical form is its value, written as is):
        # looked up first, they are not judged too common once more.
        known = inputs.get(text)
        if known is not None and len(chains) <= len(known.chains):
            return
        if not text or too_common(text) is not None:
            return
        part, canon = ("", canon) if building else _part_of(key, category, value, canon, text)
        inputs[text] = HashInput(category, canon, text, chains, part)

    for key, category, value, canon in identified:
        value = value.strip()
        if category == "email":
            add(category, canon, canon, every)
            add(category, canon, _gmail(canon))
        elif category == "phone":
            add(category, canon, canon, single)
            add(category, canon, canon.lstrip("+"), single)
            add(category, canon, _national_digits(canon, region))
        elif category == "name":
            ascii_lower = strip_accents(value).lower()
            add(category, canon, ascii_lower)
            add(category, canon, _NOT_ALNUM.sub("", ascii_lower))
            add(category, canon, value.lower())
            if key == "name":  # Meta's fn and ln: each part, hashed alone
                words = value.split()
                # In a fixed order (not a set): positions must agree across processes.
                for word in dict.fromkeys((words[0], words[-1])) if len(words) > 1 else ():
                    add(category, canon, word.lower())
                    add(category, canon, _NOT_WORD.sub("", word.lower()))
                    add(category, canon, _name_key(word))
        elif category == "postal_address":
            add(category, canon, value.lower())
            if match := _ZIP_CITY.match(value):
                city = strip_accents(match["city"]).lower().strip()
                add(category, canon, match["zip"])
                add(category, canon, city)
                add(category, canon, _NOT_LETTER.sub("", city))  # Meta's ct
                add(category, canon, match["street"].strip().lower())
        elif category == "birth_date":
            add(category, canon, value)
            add(category, canon, value.replace("-", ""))  # Meta's YYYYMMDD
        else:
            add(category, canon, value.lower())
        add(category, canon, value)
        add(category, canon, canon)
    return list(inputs.values())[:1 << _INPUT_BITS]


def _with_full_names(identifiers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """first_name and last_name also make a full name, as forms and CRMs write it."""
    parts = dict(identifiers)
    extra = []
    if "first_name" in parts and "last_name" in parts:
        extra.append(("name", f"{parts['first_name']} {parts['last_name']}"))
    return [*identifiers, *extra]


def _name_key(text: str) -> str:
    """A name part as forms differ in writing it: no accents, case or punctuation."""
    return _NOT_ALNUM.sub("", strip_accents(text).lower())


def _name_keys(texts: list[str]) -> list[str]:
    """_name_key of each text: the ASCII ones in one pass (a batch of events has thousands),
    the others one by one. A contact import has a few accented names among 20,000 short
    values, which must not all take the slow path for them (10.3 ms; now 4.3)."""
    plain = [text for text in texts if text.isascii()]
    joined = SEPARATOR.join(plain)
    if joined.count(SEPARATOR) != len(plain) - 1:  # a text holds a SEPARATOR (or none is ASCII)
        return [_name_key(text) for text in texts]
    keys = joined.lower().encode().translate(None, _NOT_ALNUM_OR_SEPARATOR).decode().split(
        SEPARATOR)
    if len(plain) == len(texts):
        return keys
    ascii_keys = iter(keys)
    return [next(ascii_keys) if text.isascii() else _name_key(text) for text in texts]


def _name_parts(name: str) -> list[str]:
    return [p for p in (_name_key(w) for w in name.split()) if p]


def _gmail(email: str) -> str:
    """Google's normalisation for enhanced conversions: no dots before @gmail.com."""
    local, _, domain = email.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        return f"{local.replace('.', '')}@{domain}"
    return email


def _national_digits(e164: str, region: str) -> str:
    if _templated(e164):
        template = _national_digits_template(e164[:-_TAIL_DIGITS], region)
        return template.format(*e164[-_TAIL_DIGITS:]) if template is not None else ""
    formats = _phone_formats(e164, region)
    return _NOT_DIGIT.sub("", formats[1]) if formats is not None else ""


@lru_cache(maxsize=65536)
def _national_digits_template(head: str, region: str) -> str | None:
    template = _phone_template(head, region)
    return None if template is None else _NOT_DIGIT_OR_FIELD.sub("", template[1])


_NOT_DIGIT_OR_FIELD = re.compile(r"[^0-9{}]")  # a template's fields are {0}, {1}...


# phonenumbers takes a tenth of a millisecond to parse and format a number: most of the time
# a large registry took to index. Numbers that differ only in their last 4 digits are written
# alike (a format is chosen on a number's first digits and its length), so each is formatted
# from the template of its first digits, made once. Checked against phonenumbers on 300,000
# numbers of every country code (tests/test_known_subjects.py keeps a sample).
_TAIL_DIGITS = 4


def _national_length(e164: str) -> int:
    """How many digits follow the country code (0 if there is none). Only numbers of 9 digits
    or more are templated: the first 5 of them, which choose a format, stay whole."""
    for size in (1, 2, 3):
        if int(e164[1:1 + size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return len(e164) - 1 - size
    return 0


def _phone_formats(number: str, region: str) -> tuple[str, str] | None:
    """(E.164, national) of a number, or None if it does not parse."""
    if not _templated(number):
        return _formatted(number, region)
    template = _phone_template(number[:-_TAIL_DIGITS], region)
    if template is None:
        return None
    tail = number[-_TAIL_DIGITS:]
    return tuple(text.format(*tail) for text in template)  # type: ignore[return-value]


def _templated(number: str) -> bool:
    """Whether _phone_formats formats `number` from a template."""
    return number.startswith("+") and number[1:].isdigit() and _national_length(number) >= 9


@lru_cache(maxsize=65536)
def _phone_template(head: str, region: str) -> tuple[str, ...] | None:
    formats = _formatted(head + "0" * _TAIL_DIGITS, region)
    return None if formats is None else tuple(map(_with_placeholders, formats))


def _with_placeholders(text: str) -> str:
    """`text` with its last _TAIL_DIGITS digits made {0}, {1}... for str.format."""
    chars, left = list(text), _TAIL_DIGITS
    for at in range(len(chars) - 1, -1, -1):
        if left and chars[at].isdigit():
            left -= 1
            chars[at] = f"{{{left}}}"
    return "".join(chars)


@lru_cache(maxsize=1024)
def _formatted(number: str, region: str) -> tuple[str, str] | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))


def _phone_keys(e164: str, region: str) -> list[int]:
    """What KnownSubjects.find looks a registry number up by: its international digits (after
    the '+') and its national ones, as its own country writes them (trunk prefix included),
    each as _phone_key makes it. No key for a canonical form that is no number phonenumbers
    formats: its plain spellings are indexed instead (_spellings)."""
    if not e164.startswith("+") or not e164[1:].isdigit():
        return []
    national = _national_digits(e164, region)
    if not national:
        return []
    return [_phone_key(digits, kind) for digits, kind in (
        (e164[1:], INTERNATIONAL), (national, NATIONAL))
        if MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS]


# A phone key is its kind's digit, then the number's digits: the leading digit keeps a
# national number's leading zeros, and the two kinds apart. 18 digits fit in a uint64.
NATIONAL, INTERNATIONAL = "1", "2"
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 4, 17  # fewer digits are too common (too_common)


def _phone_key(digits: str, kind: str) -> int:
    return int(kind + digits)


# quote(text, safe="") and quote_plus(text, safe="") of ASCII text, twice as fast.
_QUOTE = {chr(i): f"%{i:02X}" for i in range(128) if not _UNRESERVED.fullmatch(chr(i))}
_QUOTE_PLUS = {**_QUOTE, " ": "+"}
_RESERVED = re.compile(r"[^A-Za-z0-9_.~-]")


def _quote(text: str, table: dict[str, str]) -> str:
    if not text.isascii():
        return quote(text, safe="") if table is _QUOTE else quote_plus(text, safe="")
    return _RESERVED.sub(lambda match: table[match.group()], text)


def _base64_prefixes(text: str) -> set[str]:
    """The part of base64(text) that stays the same when text is followed by more data."""
    raw = text.encode()
    stable = len(raw) // 3 * 4
    if stable < _MIN_BASE64:
        return set()
    standard = base64.b64encode(raw).decode()[:stable]
    return {standard, standard.replace("+", "-").replace("/", "_")}
