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
import importlib
from importlib import metadata
import os
import pickle
import re
import subprocess
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache, partial
from itertools import product
from operator import methodcaller
from pathlib import Path
from typing import Any, NamedTuple
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
from .sealed import Sealed

# CPython's own (HACL*) md5, sha1 and sha2 skip OpenSSL's set-up on every call: about a
# third faster on inputs as short as identifiers.
_BUILTIN = {"md5": "_md5", "sha1": "_sha1", "sha224": "_sha2", "sha256": "_sha2",
            "sha384": "_sha2", "sha512": "_sha2"}


def _constructor(name: str) -> Callable[[bytes], Any]:
    try:
        return getattr(importlib.import_module(_BUILTIN[name]), name)
    except (KeyError, ImportError, AttributeError):
        return getattr(hashlib, name, None) or partial(hashlib.new, name)


_CONSTRUCTORS = {name: _constructor(name) for name in (
    "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384",
    "sha3_512", "ripemd160", "blake2b", "blake2s")}
_DIGEST = methodcaller("digest")


def _hashlib(name: str) -> Callable[[bytes], bytes]:
    constructor = _CONSTRUCTORS[name]
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
# From this many subjects the digests are hashed in other processes too, and kept on disk.
_LARGE = 5_000
# A spelling of the automata packs: subject number, identifier position, form, length.
_POSITION_BITS, _LENGTH_BITS = 8, 16
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_SHARED = 1 << 40  # the spelling of several identifiers: the rest is an index in _shared
_FORMS = ("plain", "url", "keystroke", "birthday", "base64")
_FORM_INDEX = {form: number for number, form in enumerate(_FORMS)}
# A value that many subjects share (a city, a zip code) names at most this many of them.
_MAX_NAMED = 16

_SPACES = re.compile(r"\s+")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is
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
_NOT_DIGIT = re.compile(r"\D")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_NOT_WORD = re.compile(r"[^\w]")
_NOT_LETTER = re.compile(r"[^a-z]")
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
        self.region = region
        self.salts = tuple(salts)
        self.subjects: list[Subject] = list(subjects)
        self.size = len(self.subjects)
        if self.size > MAX_SUBJECTS:
            raise ValueError(f"more than {MAX_SUBJECTS} subjects in the registry")
        # Millions of small objects are made and kept: the cyclic collector would rescan them
        # all again and again (half the build time), and none of them forms a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            (self.plain, self._plain_values, self.encoded, self._encoded_values, self._shared,
             self._split, self._keys, self._refs) = _index(self.subjects, region, self.salts)
        finally:
            if collecting:
                gc.enable()

    def _forms(self, value: int) -> list[Form]:
        """The identifiers a spelling of the automata stands for."""
        packed = value >> _LENGTH_BITS
        packs = self._shared[packed & ~_SHARED] if packed & _SHARED else (packed,)
        forms = []
        for item in packs:
            subject = self.subjects[item >> (_POSITION_BITS + 3)]
            identified = _identified(subject.identifiers, self.region)
            _, category, _, canon = identified[(item >> 3) & ((1 << _POSITION_BITS) - 1)]
            forms.append(Form(subject.id, category, canon, _FORMS[item & 7]))
        return list(dict.fromkeys(forms))  # a name given whole and as first and last name

    # --- what is indexed ------------------------------------------------------------------

    def hash_inputs(self, subject: Subject) -> list[HashInput]:
        """What vendors hash, in a fixed order (a reference stores the position): see
        _hash_inputs."""
        return _hash_inputs(_identified(subject.identifiers, self.region), self.region)

    def _digests(self, text: str, chain: tuple[str, ...]) -> list[bytes]:
        """The digest of `text` through `chain`; intermediate digests travel as lowercase hex."""
        if chain == (SALTED,):
            return [hashlib.sha256((salt + text).encode()).digest() for salt in self.salts]
        data = text.encode()
        for name in chain[:-1]:
            data = ALGORITHMS[name](data).hex().encode()
        return [ALGORITHMS[chain[-1]](data)]

    # --- searching --------------------------------------------------------------------------

    def find(self, field: Field) -> Iterator[Finding]:
        value = field.value
        # Spellings are indexed with single spaces: "Jane   Roe" is still Jane Roe.
        lowered = _SPACES.sub(" ", value.lower())
        spans: list[tuple[int, int, int]] = []
        if len(self.plain):
            for end, number in self.plain.iter(lowered):
                packed = self._plain_values[number]
                start = end - (packed & _LENGTH_MASK) + 1
                if _standalone(lowered, start, end + 1):
                    spans.append((start, end + 1, packed))
        # Longest first, and a match inside a longer one is part of it ("martin" in an email).
        spans.sort(key=lambda s: s[0] - s[1])
        kept: list[tuple[int, int]] = []
        for start, end, packed in spans:
            if any(s <= start and end <= e for s, e in kept):
                continue
            kept.append((start, end))
            for form in self._forms(packed):
                if form.form in _WHOLE_VALUE_ONLY and end - start != len(lowered.strip()):
                    continue  # a prefix counts only as the whole value typed so far
                yield Finding(self.id, form.category, field, lowered[start:end], form.canonical,
                              form.form, form.subject)
        if len(self.encoded):
            for end, number in self.encoded.iter(value):
                packed = self._encoded_values[number]
                start = end - (packed & _LENGTH_MASK) + 1
                for form in self._forms(packed):
                    yield Finding(self.id, form.category, field, value[start:end + 1],
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


def _identified(identifiers: tuple[tuple[str, str], ...],
                region: str) -> list[tuple[str, str, str, str]]:
    """(key, category, value, canonical) of each identifier, full names included."""
    found = []
    for key, value in _with_full_names(identifiers):
        category = category_of(key)
        canon = _e164(value, region) if category == "phone" else None
        found.append((key, category, value, canon or canonical(category, value, region)))
    return found


def _e164(value: str, region: str) -> str | None:
    """A phone number already written in E.164, which is then its canonical form, or None.
    canonical() would parse it once more, and phonenumbers takes a tenth of a millisecond to
    parse: the number parsed here is the one the spellings are formatted from."""
    text = value.strip()
    if not text.startswith("+") or not text[1:].isdigit():
        return None
    try:
        number = _parse_phone(text, region)  # the region does not count after a "+"
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return text if e164 == text else None


def _spellings(category: str, value: str, canon: str, region: str) -> dict[str, str]:
    """Every spelling of an identifier, with its form: plain, url, or one that only counts
    as a whole value (keystroke, birthday)."""
    spellings = dict.fromkeys(_plain_spellings(category, value, canon, region), "plain")
    spellings.update((text, "url") for text in spellings if "%" in text)
    if category == "email" and len(canon) >= _MIN_KEYSTROKE:
        spellings.update((canon[:-cut], "keystroke") for cut in (1, 2))
    elif category == "birth_date" and _ISO_DATE.fullmatch(value):
        spellings[f"{value[5:7]}/{value[8:10]}"] = "birthday"  # Mailchimp's BIRTHDAY
    return spellings

def _plain_spellings(category: str, value: str, canon: str, region: str) -> set[str]:
    spellings = {value.lower(), canon.lower(), strip_accents(value).lower()}
    if category == "phone":
        spellings |= _phone_spellings(canon, region)
    elif category == "postal_address" and "," in value:
        spellings.add(value.split(",")[0].strip().lower())  # the street line alone
    elif category in ("iban", "payment_card"):
        spellings.add(" ".join(canon[i:i + 4] for i in range(0, len(canon), 4)).lower())
    elif category == "birth_date" and _ISO_DATE.fullmatch(value):
        y, m, d = value.split("-")
        spellings |= {f"{y}{m}{d}", f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"}
    elif category == "email":
        spellings.add(_gmail(canon))
    for text in list(spellings):
        if not _UNRESERVED.fullmatch(text):  # else quoting leaves it as it is
            spellings |= {_quote(text, _QUOTE).lower(), _quote(text, _QUOTE_PLUS).lower()}
    return {s for s in spellings if len(s) >= _MIN_PLAIN}


def _hash_inputs(identified: list[tuple[str, str, str, str]], region: str) -> list[HashInput]:
    """What vendors hash, in a fixed order (a reference stores the position): the
    normalisations that Meta CAPI, Google enhanced conversions and GA4 user-provided data,
    TikTok, Snap and LinkedIn document. The primary email gets every hash and chain, phones
    every hash, the other spellings the hashes vendors use."""
    inputs: dict[str, HashInput] = {}

    def add(category: str, canon: str, text: str, chains: tuple[int, ...] = _NARROW) -> None:
        if text and (text not in inputs or len(chains) > len(inputs[text].chains)):
            inputs[text] = HashInput(category, canon, text, chains)

    for key, category, value, canon in identified:
        value = value.strip()
        if category == "email":
            add(category, canon, canon, _EVERY)
            add(category, canon, _gmail(canon))
        elif category == "phone":
            add(category, canon, canon, _SINGLE)
            add(category, canon, canon.lstrip("+"), _SINGLE)
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


# --- the index: built in bulk, digests in parallel for large registries, kept on disk -----

class Index(NamedTuple):
    plain: ahocorasick.Automaton
    """Every plain spelling; its value is a number in plain_values."""
    plain_values: array
    """Per spelling: where it comes from packed (see _POSITION_BITS), then its length."""
    encoded: ahocorasick.Automaton
    """The base64 prefixes, likewise."""
    encoded_values: array
    shared: list[list[int]]
    """The origins of a spelling that several identifiers share."""
    split: dict[str, list[tuple[int, str]]]
    """First name -> (subject number, last name) of each full name."""
    keys: numpy.ndarray
    """8-byte prefixes of every digest, sorted."""
    refs: numpy.ndarray
    """Where each digest comes from: subject number, input position, chain."""


def _index(subjects: list[Subject], region: str, salts: tuple[str, ...]) -> Index:
    """Everything KnownSubjects searches. For a large registry, other processes hash the
    digests (one per core but this one) while this one makes the spellings and automata, and
    the whole index is kept on disk, encrypted, for the next load."""
    large = len(subjects) >= _LARGE
    sealed = _sealed(subjects, region, salts) if large else None
    cached = sealed.read() if sealed is not None else None
    if cached is not None and len(cached) == len(Index._fields):
        return Index(*cached)
    identifiers = [subject.identifiers for subject in subjects]
    workers = max(1, min(os.cpu_count() or 1, 8) - 1) if large else 0
    step = max(1, -(-len(identifiers) // max(workers, 1)))
    jobs = [(identifiers[i:i + step], i, region, salts)
            for i in range(0, max(len(identifiers), 1), step)]
    children = [_start_worker(job) for job in jobs] if large else [None] * len(jobs)
    spelled = _spell(identifiers, region)
    writer = sealed.writer() if sealed is not None else None
    for part in spelled if writer is not None else ():
        writer.add(part)  # while the workers still hash
    parts = [_worker_result(child, job) for child, job in zip(children, jobs, strict=True)]
    keys, refs = parts[0]
    if len(parts) > 1:
        keys = numpy.concatenate([keys for keys, _ in parts])
        refs = numpy.concatenate([refs for _, refs in parts])
        parts.clear()
        order = numpy.argsort(keys, kind="stable")  # merges the sorted runs
        keys, refs = keys[order], refs[order]
    if writer is not None:
        writer.add(keys)
        writer.add(refs)
        writer.close()
    return Index(*spelled, keys, refs)


def _spell(identifiers: list[tuple[tuple[str, str], ...]], region: str) -> tuple:
    """The automata of every spelling, built as the spellings are made (no list of millions
    of them in between)."""
    plain, plain_values = ahocorasick.Automaton(ahocorasick.STORE_INTS), array("Q")
    encoded, encoded_values = ahocorasick.Automaton(ahocorasick.STORE_INTS), array("Q")
    shared: list[list[int]] = []
    split: dict[str, list[tuple[int, str]]] = {}
    add = partial(_add, shared=shared)
    for number, items in enumerate(identifiers):
        for position, (key, category, value, canon) in enumerate(_identified(items, region)):
            if position >= 1 << _POSITION_BITS:
                break
            item = number << (_POSITION_BITS + 3) | position << 3
            for text, form in _spellings(category, value, canon, region).items():
                if len(text) <= _LENGTH_MASK:
                    add(plain, plain_values, text, item | _FORM_INDEX[form])
            for text in {value, value.lower(), canon}:
                for b64 in _base64_prefixes(text):
                    if len(b64) <= _LENGTH_MASK:
                        add(encoded, encoded_values, b64, item | _FORM_INDEX["base64"])
            if category == "name" and key == "name" and len(parts := _name_parts(value)) >= 2:
                split.setdefault(parts[0], []).append((number, parts[-1]))
    for automaton, values in ((plain, plain_values), (encoded, encoded_values)):
        if len(values):
            automaton.make_automaton()
    return plain, plain_values, encoded, encoded_values, shared, split


def _add(automaton: ahocorasick.Automaton, values: array, text: str, packed: int,
         shared: list[list[int]]) -> None:
    """The automaton holds a spelling's number (its integers have 32 bits only), and the
    array at that number packs its length and where it comes from (see _POSITION_BITS); a
    spelling of several identifiers points into `shared` instead."""
    number = automaton.get(text, -1)
    if number == -1:
        automaton.add_word(text, len(values))
        values.append(packed << _LENGTH_BITS | len(text))
        return
    first = values[number] >> _LENGTH_BITS
    if first & _SHARED:
        packs = shared[first & ~_SHARED]
    else:
        packs = [first]
        values[number] = (_SHARED | len(shared)) << _LENGTH_BITS | len(text)
        shared.append(packs)
    if packed not in packs and len(packs) < _MAX_NAMED:
        packs.append(packed)


def _start_worker(job: tuple) -> subprocess.Popen[bytes] | None:
    """A fresh interpreter that hashes `job` (not multiprocessing: its spawn re-runs the
    main script, its fork can deadlock in a proxy with threads running)."""
    code = ("import pickle, sys; sys.path.insert(0, sys.argv[1]); "
            "from gdpr_audit.detectors.known import _digest_chunk; "
            "job = pickle.load(sys.stdin.buffer); "
            "pickle.dump(_digest_chunk(*job), sys.stdout.buffer, protocol=5)")
    if getattr(sys, "frozen", False):  # a bundled mitmproxy: sys.executable is no Python
        return None
    try:
        # No stderr: a worker's error could quote an identifier; the job is then done here.
        child = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).parents[2])],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
    except OSError:  # no interpreter to start: this process does it all
        return None
    try:
        with child.stdin:  # type: ignore[union-attr]
            pickle.dump(job, child.stdin, protocol=5)
    except OSError:  # it died at once
        child.kill()
        child.wait()
        return None
    return child


def _worker_result(child: subprocess.Popen[bytes] | None,
                   job: tuple) -> tuple[numpy.ndarray, numpy.ndarray]:
    """What the worker hashed, or the same hashed here if it failed."""
    if child is not None:
        assert child.stdout is not None
        try:
            with child.stdout:  # read as a stream: hundreds of MB are not held twice
                result = pickle.load(child.stdout)
        except (EOFError, pickle.UnpicklingError, OSError):  # it died midway
            result = None
        if child.wait() == 0 and result is not None:
            return result
    return _digest_chunk(*job)


def _digest_chunk(identifiers: list[tuple[tuple[str, str], ...]], start: int, region: str,
                  salts: tuple[str, ...]) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The sorted digest prefixes of subjects number start, start + 1..., and their refs.

    Inputs that go through the same chains are hashed together, one algorithm at a time,
    so the loop over millions of digests runs in C (map) rather than in Python."""
    groups: dict[tuple[int, ...], tuple[list[bytes], list[int]]] = {}
    for number, items in enumerate(identifiers, start):
        base = number << (_CHAIN_BITS + _INPUT_BITS)
        for position, hashed in enumerate(_hash_inputs(_identified(items, region), region)):
            texts, bases = groups.setdefault(hashed.chains, ([], []))
            texts.append(hashed.text.encode())
            bases.append(base | position << _CHAIN_BITS)
    keys: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint64)]
    refs: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint32)]
    for chains, (texts, bases) in groups.items():
        base_array = numpy.array(bases, dtype=numpy.uint32)
        hexed: dict[tuple[str, ...], list[bytes]] = {(): texts}  # sha256(md5(x)) reuses md5(x)
        for index in chains:
            chain = CHAINS[index]
            if chain == (SALTED,):
                for salt in salts:
                    keys.append(_prefix_keys(_bulk("sha256", [salt.encode() + t for t in texts])))
                    refs.append(base_array | index)
                continue
            keys.append(_prefix_keys(_bulk(chain[-1], _hexed(chain[:-1], hexed))))
            refs.append(base_array | index)
    all_keys = numpy.concatenate(keys)
    order = numpy.argsort(all_keys, kind="stable")
    return all_keys[order], numpy.concatenate(refs)[order]


def _hexed(chain: tuple[str, ...], memo: dict[tuple[str, ...], list[bytes]]) -> list[bytes]:
    """The inputs through `chain`, each digest as lowercase hex: what the next hash reads."""
    if chain not in memo:
        memo[chain] = list(map(binascii.hexlify, _bulk(chain[-1], _hexed(chain[:-1], memo))))
    return memo[chain]


def _bulk(name: str, datas: list[bytes]) -> list[bytes]:
    constructor = _CONSTRUCTORS.get(name)
    if constructor is None:
        return list(map(ALGORITHMS[name], datas))
    return list(map(_DIGEST, map(constructor, datas)))


def _prefix_keys(digests: list[bytes]) -> numpy.ndarray:
    """The first 8 bytes of each digest as a big-endian number (shorter ones padded in
    front, as _key reads them)."""
    size = len(digests[0]) if digests else 8
    raw = numpy.frombuffer(b"".join(digests), dtype=numpy.uint8).reshape(len(digests), size)
    width = min(size, 8)
    padded = numpy.zeros((len(digests), 8), dtype=numpy.uint8)
    padded[:, 8 - width:] = raw[:, :width]
    return padded.view(">u8").ravel().astype(numpy.uint64)


def _sealed(subjects: list[Subject], region: str, salts: tuple[str, ...]) -> Sealed:
    """Where the index of exactly this registry, region, salts and code is kept."""
    home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    code = [path.read_bytes() for path in sorted(Path(__file__).parent.glob("*.py"))]
    setting = repr((phonenumbers.__version__, metadata.version("pyahocorasick"), region, salts))
    return Sealed(Path(home) / "gdpr-audit", (*code, setting.encode(), *(
        repr(subject.identifiers).encode() for subject in subjects)))


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
    return _NOT_ALNUM.sub("", strip_accents(text).lower())


def _name_parts(name: str) -> list[str]:
    return [p for p in (_name_key(w) for w in name.split()) if p]


def _gmail(email: str) -> str:
    """Google's normalisation for enhanced conversions: no dots before @gmail.com."""
    local, _, domain = email.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        return f"{local.replace('.', '')}@{domain}"
    return email


def _national_digits(e164: str, region: str) -> str:
    formats = _phone_formats(e164, region)
    return _NOT_DIGIT.sub("", formats[0]) if formats else ""


@lru_cache(maxsize=1024)
def _parse_phone(e164: str, region: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.parse(e164, region)


@lru_cache(maxsize=1024)
def _phone_formats(e164: str, region: str) -> tuple[str, str] | None:
    """The national and international formats of a number: the spellings and the hash
    inputs both want them."""
    try:
        number = _parse_phone(e164, region)
    except phonenumbers.NumberParseException:
        return None
    return (phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL),
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def _phone_spellings(e164: str, region: str) -> set[str]:
    formats = _phone_formats(e164, region)
    if formats is None:
        return set()
    national, international = formats
    national_digits = _NOT_DIGIT.sub("", national)
    return {e164, e164.lstrip("+"), "00" + e164.lstrip("+"), national, national_digits,
            international, national.replace(" ", "."), national.replace(" ", "-")}


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
