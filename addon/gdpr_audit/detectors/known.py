"""Registry subjects, found in every form at once.

All plain spellings of every identifier of every subject sit in one Aho-Corasick automaton,
so a value is searched once whatever the size of the registry. Hashes are not searched for:
tokens that could be a digest (hex, base64 of one, a decimal checksum) are looked up in a
sorted array of 8-byte digest prefixes, then verified by hashing that one subject's input
again. Keeping prefixes rather than digests is what lets every hash the research detectors
search (and chains of the ones vendors use) fit in memory for a 100,000-subject registry.
"""

import base64
import binascii
import gc
import hashlib
import re
import zlib
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import product
from typing import NamedTuple
from urllib.parse import quote, quote_plus

import ahocorasick
import mmh3
import numpy
import phonenumbers
import whirlpool
from Crypto.Hash import MD2, MD4

from ..fields import Field
from ..policy import Subject, category_of
from .base import Finding, canonical, is_word_boundary, strip_accents


def _hashlib(name: str) -> Callable[[bytes], bytes]:
    # The named constructors are several times faster than hashlib.new(name).
    constructor = getattr(hashlib, name, None) or (lambda data: hashlib.new(name, data))
    return lambda data: constructor(data).digest()


# Every hash of Englehardt et al. (PETS 2018) and Senol et al. (USENIX Security 2022).
ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "md2": lambda data: MD2.new(data).digest(),
    "md4": lambda data: MD4.new(data).digest(),
    **{name: _hashlib(name) for name in (
        "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256",
        "sha3_384", "sha3_512", "ripemd160", "blake2b", "blake2s")},
    "whirlpool": lambda data: whirlpool.new(data).digest(),
    "murmur3_32": lambda data: mmh3.hash(data, signed=False).to_bytes(4, "big"),
    "murmur3_64": lambda data: mmh3.hash64(data, signed=False)[0].to_bytes(8, "big"),
    "murmur3_128": lambda data: mmh3.hash128(data, signed=False).to_bytes(16, "big"),
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),
    "adler32": lambda data: zlib.adler32(data).to_bytes(4, "big"),
}
# The hashes vendors really use, which are also chained (sha256 of an md5 hex digest).
COMMON = ("md5", "sha1", "sha256", "sha512")
# Where the custom is to send the number itself.
DECIMAL = frozenset({"crc32", "adler32", "murmur3_32", "murmur3_64"})
SALTED = "sha256+salt"
# Inner hash first: ("md5", "sha256") is sha256(md5(x)).
CHAINS: tuple[tuple[str, ...], ...] = (
    *((name,) for name in ALGORITHMS), (SALTED,),
    *product(COMMON, repeat=2), *product(COMMON, repeat=3))
_EVERY = tuple(range(len(CHAINS)))
# MD2 and MD4 cost ten times the others (pycryptodome): the primary email alone gets them.
_SINGLE = tuple(i for i in range(len(ALGORITHMS) + 1) if CHAINS[i] not in (("md2",), ("md4",)))
_NARROW = tuple(CHAINS.index((name,)) for name in (*COMMON, SALTED))
# Reference packing in 32 bits: subject index, then input position, then chain.
_CHAIN_BITS, _INPUT_BITS = 7, 5
MAX_SUBJECTS = 1 << (32 - _CHAIN_BITS - _INPUT_BITS)
# A value that many subjects share (a city, a zip code) names at most this many of them.
_MAX_NAMED = 16

_SPACES = re.compile(r"\s+")
_HEX_TOKEN = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,128}(?![0-9a-fA-F])")
_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{22,88}={0,2}(?![A-Za-z0-9+/=_-])")
_SHORT_DIGEST = re.compile(r"[0-9a-fA-F]{8}|[0-9a-fA-F]{16}")
_DECIMAL = re.compile(r"-?\d{5,20}")
_DIGEST_SIZES = frozenset({4, 8, 16, 20, 28, 32, 48, 64})
# Shorter spellings match too much of unrelated text (a first name of two letters).
_MIN_PLAIN = 3
_MIN_BASE64 = 8
# Keystroke-by-keystroke trackers send each prefix of what is typed: only long identifiers
# (emails) are matched without their last characters, so a prefix still names one person.
_MIN_KEYSTROKE = 10
# Spellings too short or too partial to count inside running text.
_WHOLE_VALUE_ONLY = frozenset({"keystroke", "birthday"})
_ZIP_CITY = re.compile(r"^(?P<street>.*?),?\s*(?P<zip>\b\d{4,5}\b)\s+(?P<city>[^,\d]+)$")


class Form(NamedTuple):
    subject: str
    category: str
    canonical: str
    form: str


class HashInput(NamedTuple):
    category: str
    canonical: str
    text: str
    chains: tuple[int, ...]


class KnownSubjects:
    id = "registry"

    def __init__(self, subjects: Iterable[Subject], region: str = "FR",
                 salts: Sequence[str] = ()) -> None:
        # Millions of small objects are made and kept: the cyclic collector would rescan them
        # all again and again (half the build time), and none of them forms a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._build(subjects, region, salts)
        finally:
            if collecting:
                gc.enable()

    def _build(self, subjects: Iterable[Subject], region: str, salts: Sequence[str]) -> None:
        self.region = region
        self.salts = tuple(salts)
        self.subjects: list[Subject] = []
        plain: dict[str, list[Form]] = defaultdict(list)
        encoded: dict[str, list[Form]] = defaultdict(list)
        self._split: dict[str, list[tuple[int, str]]] = defaultdict(list)
        prefixes = bytearray()
        refs = array("I")
        for number, subject in enumerate(subjects):
            if number >= MAX_SUBJECTS:
                raise ValueError(f"more than {MAX_SUBJECTS} subjects in the registry")
            self.subjects.append(subject)
            for key, value in _with_full_names(subject.identifiers):
                category = category_of(key)
                canon = canonical(category, value, self.region)
                forms: dict[str, Form] = {}  # one tuple per kind of form, shared by its spellings
                for text, form in self._spellings(category, value, canon).items():
                    plain[text].append(forms.setdefault(form, Form(subject.id, category, canon,
                                                                   form)))
                base64_form = Form(subject.id, category, canon, "base64")
                for text in {value, value.lower(), canon}:
                    for b64 in _base64_prefixes(text):
                        encoded[b64].append(base64_form)
                if category == "name" and key == "name":
                    parts = _name_parts(value)
                    if len(parts) >= 2:
                        self._split[parts[0]].append((number, parts[-1]))
            base = number << (_CHAIN_BITS + _INPUT_BITS)
            for position, item in enumerate(self.hash_inputs(subject)):
                digests = self._digest_list(item.text, item.chains)
                prefixes += b"".join(digest[:8].rjust(8, b"\0") for digest, _ in digests)
                refs.extend([base | position << _CHAIN_BITS | chain for _, chain in digests])
        self.size = len(self.subjects)
        self.plain = _automaton(plain)
        self.encoded = _automaton(encoded)
        keys = numpy.frombuffer(prefixes, dtype=">u8").astype(numpy.uint64)
        del prefixes
        order = numpy.argsort(keys, kind="stable")
        self._keys = keys[order]
        del keys
        self._refs = numpy.frombuffer(refs, dtype=numpy.uint32)[order]

    # --- what is indexed ------------------------------------------------------------------

    def _spellings(self, category: str, value: str, canon: str) -> dict[str, str]:
        """Every spelling of an identifier, with its form: plain, url, or one that only counts
        as a whole value (keystroke, birthday)."""
        spellings = dict.fromkeys(self._plain_spellings(category, value, canon), "plain")
        spellings.update((text, "url") for text in spellings if "%" in text)
        if category == "email" and len(canon) >= _MIN_KEYSTROKE:
            spellings.update((canon[:-cut], "keystroke") for cut in (1, 2))
        elif category == "birth_date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            spellings[f"{value[5:7]}/{value[8:10]}"] = "birthday"  # Mailchimp's BIRTHDAY
        return spellings

    def _plain_spellings(self, category: str, value: str, canon: str) -> set[str]:
        spellings = {value.lower(), canon.lower(), strip_accents(value).lower()}
        if category == "phone":
            spellings |= _phone_spellings(canon, self.region)
        elif category == "postal_address" and "," in value:
            spellings.add(value.split(",")[0].strip().lower())  # the street line alone
        elif category in ("iban", "payment_card"):
            spellings.add(" ".join(canon[i:i + 4] for i in range(0, len(canon), 4)).lower())
        elif category == "birth_date" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            y, m, d = value.split("-")
            spellings |= {f"{y}{m}{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"}
        elif category == "email":
            spellings.add(_gmail(canon))
        for text in list(spellings):
            spellings |= {quote(text, safe="").lower(), quote_plus(text, safe="").lower()}
        return {s for s in spellings if len(s) >= _MIN_PLAIN}

    def hash_inputs(self, subject: Subject) -> list[HashInput]:
        """What vendors hash, in a fixed order (a reference stores the position): the
        normalisations that Meta CAPI, Google enhanced conversions and GA4 user-provided data,
        TikTok, Snap and LinkedIn document. The primary email gets every hash and chain, phones
        every hash, the other spellings the hashes vendors use."""
        inputs: dict[str, HashInput] = {}

        def add(category: str, canon: str, text: str, chains: tuple[int, ...] = _NARROW) -> None:
            if text and (text not in inputs or len(chains) > len(inputs[text].chains)):
                inputs[text] = HashInput(category, canon, text, chains)

        for key, value in _with_full_names(subject.identifiers):
            category = category_of(key)
            canon = canonical(category, value, self.region)
            value = value.strip()
            if category == "email":
                add(category, canon, canon, _EVERY)
                add(category, canon, _gmail(canon))
            elif category == "phone":
                add(category, canon, canon, _SINGLE)
                add(category, canon, canon.lstrip("+"), _SINGLE)
                add(category, canon, _national_digits(canon, self.region))
            elif category == "name":
                ascii_lower = strip_accents(value).lower()
                add(category, canon, ascii_lower)
                add(category, canon, re.sub(r"[^a-z0-9]", "", ascii_lower))
                add(category, canon, value.lower())
                if key == "name":  # Meta's fn and ln: each part, hashed alone
                    words = value.split()
                    for word in {*words[:1], *words[-1:]} if len(words) > 1 else ():
                        add(category, canon, word.lower())
                        add(category, canon, re.sub(r"[^\w]", "", word.lower()))
                        add(category, canon, _name_key(word))
            elif category == "postal_address":
                add(category, canon, value.lower())
                if match := _ZIP_CITY.match(value):
                    city = strip_accents(match["city"]).lower().strip()
                    add(category, canon, match["zip"])
                    add(category, canon, city)
                    add(category, canon, re.sub(r"[^a-z]", "", city))  # Meta's ct
                    add(category, canon, match["street"].strip().lower())
            elif category == "birth_date":
                add(category, canon, value)
                add(category, canon, value.replace("-", ""))  # Meta's YYYYMMDD
            else:
                add(category, canon, value.lower())
            add(category, canon, value)
            add(category, canon, canon)
        found = list(inputs.values())
        if len(found) > 1 << _INPUT_BITS:
            found = found[:1 << _INPUT_BITS]
        return found

    def _digest_list(self, text: str, chains: tuple[int, ...]) -> list[tuple[bytes, int]]:
        """(digest, chain index) of `text` through each of `chains`."""
        data = text.encode()
        inner: dict[tuple[str, ...], bytes] = {}  # sha256(md5(x)) reuses md5(x)
        found = []
        for index in chains:
            chain = CHAINS[index]
            if len(chain) == 1 and chain[0] != SALTED:
                found.append((ALGORITHMS[chain[0]](data), index))
            else:
                found.extend((digest, index) for digest in self._digests(text, chain, inner))
        return found

    def _digests(self, text: str, chain: tuple[str, ...],
                 inner: dict[tuple[str, ...], bytes] | None = None) -> list[bytes]:
        """The digest of `text` through `chain`; intermediate digests travel as lowercase hex."""
        if chain == (SALTED,):
            return [hashlib.sha256((salt + text).encode()).digest() for salt in self.salts]
        inner = {} if inner is None else inner
        data = text.encode()
        for depth in range(1, len(chain)):
            if (hexed := inner.get(chain[:depth])) is None:
                hexed = inner[chain[:depth]] = ALGORITHMS[chain[depth - 1]](data).hex().encode()
            data = hexed
        return [ALGORITHMS[chain[-1]](data)]

    # --- searching --------------------------------------------------------------------------

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
                if form.form in _WHOLE_VALUE_ONLY and end - start != len(lowered.strip()):
                    continue  # a prefix counts only as the whole value typed so far
                yield Finding(self.id, form.category, field, lowered[start:end], form.canonical,
                              form.form, form.subject)
        if len(self.encoded):
            for end, (length, forms) in self.encoded.iter(value):
                for form in forms:
                    yield Finding(self.id, form.category, field, value[end - length + 1:end + 1],
                                  form.canonical, form.form, form.subject)
        if len(self._keys):
            yield from self._find_digests(field)

    def _find_digests(self, field: Field) -> Iterator[Finding]:
        seen: set[tuple[str, str, str]] = set()
        for token, digest, encoding in _digest_candidates(field.value):
            for form in self._verified(digest, encoding):
                # A name given both whole and as first/last name hashes alike: report it once.
                if (form.subject, form.category, form.form) not in seen:
                    seen.add((form.subject, form.category, form.form))
                    yield Finding(self.id, form.category, field, token, form.canonical,
                                  form.form, form.subject)

    def _verified(self, digest: bytes, encoding: str) -> Iterator[Form]:
        key = numpy.uint64(_key(digest))
        low = int(numpy.searchsorted(self._keys, key, "left"))
        high = min(int(numpy.searchsorted(self._keys, key, "right")), low + _MAX_NAMED)
        for ref in self._refs[low:high].tolist():
            subject = self.subjects[ref >> (_CHAIN_BITS + _INPUT_BITS)]
            item = self.hash_inputs(subject)[(ref >> _CHAIN_BITS) & ((1 << _INPUT_BITS) - 1)]
            chain = CHAINS[ref & ((1 << _CHAIN_BITS) - 1)]
            if encoding == "decimal" and chain[-1] not in DECIMAL:
                continue
            if digest in self._digests(item.text, chain):
                yield Form(subject.id, item.category, item.canonical,
                           _form_name(chain, item.category, encoding))

    def find_split(self, fields: Iterable[Field]) -> Iterator[Finding]:
        """A registry name sent as a first name and a last name in two fields of one request."""
        if not self._split:
            return
        values: dict[str, Field] = {}
        for item in fields:
            if len(item.value) <= 64:
                values.setdefault(_name_key(item.value), item)
        for first, item in values.items():
            for number, last in self._split.get(first, ()):
                if last in values:
                    subject = self.subjects[number]
                    name = dict(_with_full_names(subject.identifiers)).get("name", "")
                    yield Finding(self.id, "name", item, item.value,
                                  canonical("name", name, self.region), "split name", subject.id)


def _form_name(chain: tuple[str, ...], category: str, encoding: str) -> str:
    text = category
    for name in chain:
        text = f"{name}({text})"
    return text if encoding == "hex" else f"{encoding}({text})"


def _key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


def _digest_candidates(value: str) -> Iterator[tuple[str, bytes, str]]:
    """(token, digest bytes, how it was written) for everything in `value` that could be a
    digest: hex in either case, base64 of one, and, for a value that is one number, the
    decimal spellings of 32- and 64-bit hashes (signed or not). Short digests (4 and 8 bytes)
    are only taken when they are the whole value: in running text they collide too often."""
    stripped = value.strip()
    if len(value) >= 32:
        for token in _HEX_TOKEN.finditer(value):
            if len(token.group()) // 2 in _DIGEST_SIZES and len(token.group()) % 2 == 0:
                yield token.group(), bytes.fromhex(token.group()), "hex"
    if len(value) >= 22:
        for token in _B64_TOKEN.finditer(value):
            raw = _b64(token.group())
            if raw is not None and len(raw) in _DIGEST_SIZES and len(raw) >= 16:
                yield token.group(), raw, "base64"
    elif _SHORT_DIGEST.fullmatch(stripped):
        yield stripped, bytes.fromhex(stripped), "hex"
    if _DECIMAL.fullmatch(stripped):
        number = int(stripped)
        if -(1 << 31) <= number < (1 << 32):
            yield stripped, (number % (1 << 32)).to_bytes(4, "big"), "decimal"
        if -(1 << 63) <= number < (1 << 64) and not 0 <= number < (1 << 32):
            yield stripped, (number % (1 << 64)).to_bytes(8, "big"), "decimal"


def _b64(token: str) -> bytes | None:
    text = token.rstrip("=")
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_")
                                        + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


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


def _name_key(text: str) -> str:
    """A name part as forms differ in writing it: no accents, case or punctuation."""
    return re.sub(r"[^a-z0-9]", "", strip_accents(text).lower())


def _name_parts(name: str) -> list[str]:
    return [p for p in (_name_key(w) for w in name.split()) if p]


def _gmail(email: str) -> str:
    """Google's normalisation for enhanced conversions: no dots before @gmail.com."""
    local, _, domain = email.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        return f"{local.replace('.', '')}@{domain}"
    return email


def _national_digits(e164: str, region: str) -> str:
    try:
        number = _parse_phone(e164, region)
    except phonenumbers.NumberParseException:
        return ""
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return re.sub(r"\D", "", national)


@lru_cache(maxsize=1024)
def _parse_phone(e164: str, region: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.parse(e164, region)


def _phone_spellings(e164: str, region: str) -> set[str]:
    try:
        number = _parse_phone(e164, region)
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
