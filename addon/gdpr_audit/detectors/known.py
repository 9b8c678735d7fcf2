"""Registry subjects, found in every form at once.

All plain spellings of every identifier of every subject sit in one Aho-Corasick automaton,
so a value is searched once whatever the size of the registry. Hashes are not searched for:
tokens that could be a digest (hex, base64 of one, a decimal checksum) are looked up in a
sorted array of 8-byte digest prefixes, then verified by hashing that one subject's input
again. Keeping prefixes rather than digests is what lets every hash the research detectors
search (and chains of the ones vendors use) fit in memory for a 100,000-subject registry.
"""

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy
from ahocorasick_rs import AhoCorasick

from ..fields import Field
from ..policy import Subject, without_cycle_collection
from .attribution import Places, attribute, part_of_match
from .base import LONG_TEXT, SPACE, Finding, canonical, is_word_boundary
from .hashes import (
    _CHAIN_BITS,
    _INPUT_BITS,
    ALGORITHMS,
    BASE64_RUN,
    CHAINS,
    DECIMAL,
    HASH_SCOPES,
    HEX_RUN,
    MAX_SUBJECTS,
    SALTED,
    WHOLE_DIGEST,
    _digest_candidates,
    _form_name,
    _key,
)
from .registry_index import _FORMS, _LENGTH_BITS, _MAX_NAMED, _POSITION_BITS, _SHARED, _index
from .spellings import HashInput, _hash_inputs, _identified, _name_keys, _with_full_names

__all__ = ["ALGORITHMS", "CHAINS", "SALTED", "Form", "KnownSubjects"]


_SPACES = re.compile(r"\s+")
_ASCII_SPACES = str.maketrans({c: " " for c in map(chr, range(128)) if _SPACES.fullmatch(c)})
_SPACE_RUNS = re.compile("  +")
_SPACE_RUN = f"[{SPACE}][{SPACE}]|[\\t\\n\\r\\f\\v\\x1c-\\x1f]"  # what _SPACES would change
# Spellings too short or too partial to count inside running text.
_WHOLE_VALUE_ONLY = frozenset({"keystroke", "birthday", "part"})


class Form(NamedTuple):
    subject: str
    category: str
    canonical: str
    form: str
    part: str = ""


class KnownSubjects:
    id = "registry"

    def __init__(self, subjects: Iterable[Subject], region: str = "FR",
                 salts: Sequence[str] = (), hashes: str = "vendor") -> None:
        if hashes not in HASH_SCOPES:
            raise ValueError(f"hashes: {hashes!r} is not one of {', '.join(HASH_SCOPES)}")
        self.region = region
        self.salts = tuple(salts)
        self.research = hashes == "research"
        self.subjects: list[Subject] = list(subjects)
        self.size = len(self.subjects)
        if self.size > MAX_SUBJECTS:
            raise ValueError(f"more than {MAX_SUBJECTS} subjects in the registry")
        with without_cycle_collection():
            (self.plain, self._plain_values, self.encoded, self._encoded_values, self._shared,
             self._split, self._owners, self._keys, self._refs, self._texts,
             self.tokens) = _index(
                self.subjects, region, self.salts, self.research)
        self._numbers = {subject.id: number for number, subject in enumerate(self.subjects)}
        self._ids = [subject.id for subject in self.subjects]

    def _forms(self, value: int, text: str | None = None) -> list[Form]:
        """The identifiers a spelling of the automata stands for; `text`, the spelling (None
        for a base64 prefix), tells which part of an identifier it is (attribution.py)."""
        packed = value >> _LENGTH_BITS
        packs = self._shared[packed & ~_SHARED] if packed & _SHARED else (packed,)
        forms = []
        for item in packs:
            subject = self.subjects[item >> (_POSITION_BITS + 3)]
            identified = _identified(subject.identifiers, self.region)
            key, category, value_of, canon = identified[(item >> 3) & ((1 << _POSITION_BITS) - 1)]
            part, canon = part_of_match(key, category, value_of, canon, text)
            forms.append(Form(subject.id, category, canon, _FORMS[item & 7], part))
        return list(dict.fromkeys(forms))  # a name given whole and as first and last name

    # --- what is indexed ------------------------------------------------------------------

    def hash_inputs(self, subject: Subject) -> list[HashInput]:
        """What vendors hash, in a fixed order (a reference stores the position): see
        _hash_inputs."""
        return _hash_inputs(_identified(subject.identifiers, self.region), self.region,
                            self.research)

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
        lowered = _single_spaced(value.lower())
        spans: list[tuple[int, int, int]] = []
        if self.plain is not None:
            for number, start, end in _matches(self.plain, lowered):
                if _standalone(lowered, start, end):
                    spans.append((start, end, self._plain_values[number]))
        # Longest first, and a match inside a longer one is part of it ("martin" in an email).
        spans.sort(key=lambda s: s[0] - s[1])
        kept: list[tuple[int, int]] = []
        for start, end, packed in spans:
            if any(s <= start and end <= e for s, e in kept):
                continue
            kept.append((start, end))
            for form in self._forms(packed, lowered[start:end]):
                if form.form in _WHOLE_VALUE_ONLY and end - start != len(lowered.strip()):
                    continue  # a prefix counts only as the whole value typed so far
                yield Finding(self.id, form.category, field, lowered[start:end], form.canonical,
                              "plain" if form.form == "part" else form.form, form.subject,
                              1, form.part)
        if self.encoded is not None:
            for number, start, end in _matches(self.encoded, value):
                for form in self._forms(self._encoded_values[number]):
                    yield Finding(self.id, form.category, field, value[start:end],
                                  form.canonical, form.form, form.subject, 1, form.part)
        if len(self._keys):
            yield from self._find_digests(field)

    @property
    def hints(self) -> list[str]:
        """What `find` needs to find anything beyond the automata's spellings (which
        automaton_hits finds): whitespace that find() turns into one space, and every token
        shaped like a digest. See Detector.hint."""
        hints = [_SPACE_RUN] if self.plain is not None else []
        if len(self._keys):
            hints += [HEX_RUN, BASE64_RUN, WHOLE_DIGEST]
        return hints

    @property
    def spellings(self) -> list[tuple[str, bool]] | None:
        """The automata's spellings (text, caseless) that ASCII text can hold, for Screen to
        find instead of automaton_hits; None past registry_index.SCREENED_SPELLINGS, whose
        compilation (Hyperscan compiles a literal in 50 us) would cost more than the scans it
        saves. The plain automaton is searched in lowered text: its ASCII spellings are
        lowercase, and match whatever the case."""
        if self._texts is None:
            return None
        plain, encoded = self._texts
        # Sorted: the compiled database is kept on disk under its patterns, in their order.
        return [(text, True) for text in sorted(plain) if text.isascii() and text == text.lower()
                ] + [(text, False) for text in sorted(encoded)]

    def automaton_hits(self, batch: str) -> Iterator[int]:
        """Where the automata match raw in `batch` (ASCII values joined by SEPARATOR)."""
        if self.plain is not None:
            yield from (end - 1 for _, _, end in _matches(self.plain, batch.lower()))
        if self.encoded is not None:
            yield from (end - 1 for _, _, end in _matches(self.encoded, batch))

    def _find_digests(self, field: Field) -> Iterator[Finding]:
        seen: set[tuple[str, str, str]] = set()
        for token, digest, encoding in _digest_candidates(field.value):
            for form in self._verified(digest, encoding):
                # A name given both whole and as first/last name hashes alike: report it once.
                if (form.subject, form.category, form.form) not in seen:
                    seen.add((form.subject, form.category, form.form))
                    yield Finding(self.id, form.category, field, token, form.canonical,
                                  form.form, form.subject, 1, form.part)

    def _verified(self, digest: bytes, encoding: str) -> Iterator[Form]:
        key = numpy.uint64(_key(digest))
        low = int(self._keys.searchsorted(key, "left"))
        if low == len(self._keys) or self._keys[low] != key:  # most tokens: one search only
            return
        high = min(int(self._keys.searchsorted(key, "right")), low + _MAX_NAMED)
        for ref in self._refs[low:high].tolist():
            subject = self.subjects[ref >> (_CHAIN_BITS + _INPUT_BITS)]
            item = self.hash_inputs(subject)[(ref >> _CHAIN_BITS) & ((1 << _INPUT_BITS) - 1)]
            chain = CHAINS[ref & ((1 << _CHAIN_BITS) - 1)]
            if encoding == "decimal" and chain[-1] not in DECIMAL:
                continue
            if digest in self._digests(item.text, chain):
                yield Form(subject.id, item.category, item.canonical,
                           _form_name(chain, item.category, encoding), item.part)

    def attribute(self, findings: Places) -> Places:
        """One flow's registry findings, naming a subject only where what matched identifies
        them (SPEC 3.7): see attribution.attribute."""
        return attribute(findings, self._owners, self._numbers, self._ids)

    def find_split(self, fields: Iterable[Field]) -> Iterator[Finding]:
        """A registry name sent as a first name and a last name in two fields of one request."""
        if not self._split:
            return
        short = [item for item in fields if len(item.value) <= 64]
        keys = _name_keys([item.value for item in short])
        present = set(keys)
        # In C, over the smaller side: set.intersection(dict) would walk the whole registry.
        for index in sorted(keys.index(first) for first in self._split.keys() & present):
            first, item = keys[index], short[index]  # in the order of the fields
            for number, last in self._split[first]:
                if last in present:
                    subject = self.subjects[number]
                    name = dict(_with_full_names(subject.identifiers)).get("name", "")
                    yield Finding(self.id, "name", item, item.value,
                                  canonical("name", name, self.region), "split name", subject.id)


def _single_spaced(text: str) -> str:
    """_SPACES.sub(" ", text). `\\s+` is tried at every character, and every space of running
    text is a match: 23 ms a MB of log. A long ASCII text has its whitespace made spaces in C
    first, then only runs of spaces are replaced (2.5 ms); on a short one, translate costs more."""
    if len(text) < LONG_TEXT or not text.isascii():
        return _SPACES.sub(" ", text)
    return _SPACE_RUNS.sub(" ", text.translate(_ASCII_SPACES))


def _matches(automaton: AhoCorasick, text: str) -> list[tuple[int, int, int]]:
    """(pattern number, start, end) of every match, overlapping. Rust reads UTF-8 only: a
    body that was not valid UTF-8 holds lone surrogates (surrogateescape), which become
    U+FFFD, one character for one, so that positions stay the same."""
    try:
        return automaton.find_matches_as_indexes(text, True)
    except UnicodeEncodeError:
        return automaton.find_matches_as_indexes(text.translate(_NO_SURROGATES), True)


_NO_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), 0xFFFD)


# A word inside an address or a dotted id (`jean.martin@`, `martin_shop`) is not a name.
_GLUE = frozenset("@._-+")


def _standalone(text: str, start: int, end: int) -> bool:
    if not is_word_boundary(text, start, end):
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before in _GLUE and after in _GLUE) and before not in "@" and after not in "@"
