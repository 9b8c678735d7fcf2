"""The registry index: every spelling of every identifier in one Aho-Corasick automaton, the
phone numbers and the digests vendors send each in one sorted array, and which subjects share
a value.

A large registry is indexed by one process per core, each a range of subjects and a kind of
work (see _index); what they make travels as a few large objects (texts joined into one
string, numbers in arrays), never as millions of small ones, and is kept on disk sealed (see
sealed.py) for the next load."""

import ctypes
import marshal
import os
import pickle
import subprocess
import sys
import threading
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import ahocorasick_rs
import numpy
import phonenumbers
from mmh3 import hash64

from ..policy import Subject
from ..redact import registry_tokens
from .attribution import owner_keys
from .hashes import (
    _CHAIN_BITS,
    _INPUT_BITS,
    CHAINS,
    SALTED,
    _bulk,
    _chained,
    _prefix_keys,
    continued_by,
)
from .sealed import Sealed, Writer, cache_folder
from .spellings import (
    _base64_prefixes,
    _hash_inputs,
    _identified,
    _name_parts,
    _phone_keys,
    _spellings,
)

# From this many subjects other processes index part of the registry, and the index is kept
# on disk.
_LARGE = 5_000
_CHUNK = 4096  # subjects made at a time, and sent at a time by a worker
# A spelling's origin packs: subject number, identifier position, form; its value in the
# index adds its length.
_POSITION_BITS, _LENGTH_BITS = 8, 16
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_SHARED = 1 << 40  # the spelling of several identifiers: the rest is an index in `shared`
_FORMS = ("plain", "url", "keystroke", "birthday", "base64", "part")
_FORM_INDEX = {form: number for number, form in enumerate(_FORMS)}
# A value that many subjects share (a city, a zip code) names at most this many of them.
_MAX_NAMED = 16
# Up to this many spellings (a registry of about 150 subjects), their texts are kept: a
# Hyperscan screen compiles them (KnownSubjects.spellings).
SCREENED_SPELLINGS = 4096


class Texts(NamedTuple):
    """Many short texts as one string, their lengths and their hashes: what crosses a pipe,
    goes to disk or waits to be merged without millions of objects."""
    joined: str
    lengths: numpy.ndarray
    hashes: numpy.ndarray
    """MurmurHash3 of each: the same in every process (str's hash is not), so the process
    that merges need not hash them again."""

    def each(self) -> Iterator[str]:
        joined, at = self.joined, 0
        for length in self.lengths.tolist():
            yield joined[at:at + length]
            at += length


def _texts(texts: Iterable[str]) -> Texts:
    listed = list(texts)
    return Texts("".join(listed), numpy.fromiter(map(len, listed), numpy.uint32, len(listed)),
                 numpy.fromiter((hash64(text)[0] for text in listed), numpy.int64, len(listed)))


class Index(NamedTuple):
    plain: ahocorasick_rs.AhoCorasick | None
    """Every plain spelling; a match's pattern number is a position in plain_values."""
    plain_values: array
    """Per spelling: where it comes from packed (see _POSITION_BITS), then its length."""
    encoded: ahocorasick_rs.AhoCorasick | None
    """The base64 prefixes, likewise."""
    encoded_values: array
    shared: list[list[int]]
    """The origins of a spelling that several identifiers share."""
    phones: numpy.ndarray
    """Every phone number's keys (spellings._phone_keys), sorted..."""
    phone_items: numpy.ndarray
    """...and where each comes from: subject number, identifier position."""
    split: dict[str, list[tuple[int, str]]]
    """First name -> (subject number, last name) of each full name."""
    owners: dict[str, tuple[int, ...]]
    """The subject numbers, ascending, of each value that several subjects hold (see
    attribution.owner_key); a value held by one subject is not kept."""
    keys: numpy.ndarray
    """8-byte prefixes of every digest, sorted."""
    refs: numpy.ndarray
    """Where each digest comes from: subject number, input position, chain."""
    texts: tuple[list[str], list[str]] | None
    """The plain and encoded spellings of a small registry (SCREENED_SPELLINGS), else None."""
    tokens: set[str]
    """What makes a text unsafe to keep in the log (redact.registry_tokens of every
    subject): made here, where the registry is already read subject by subject."""


class _Spelled(NamedTuple):
    """What a range of subjects adds to the automata, and who holds what."""
    start: int
    count: int
    plain: Texts
    plain_packs: numpy.ndarray
    encoded: Texts
    encoded_packs: numpy.ndarray
    phones: numpy.ndarray
    phone_items: numpy.ndarray
    owned: Texts
    """attribution.owner_keys of every identifier..."""
    owned_by: numpy.ndarray
    """...and the subject number of each."""
    split: tuple[str, numpy.ndarray, str]
    """The first names of full names, the subject number and the last name of each: the
    names (spellings._name_parts: letters and digits only) joined by spaces. As tuples of
    Python objects, 100,000 subjects' held 27 MB while the automata were built."""


class _Hashed(NamedTuple):
    """What a range of subjects adds to the rest of the index."""
    start: int
    count: int
    keys: numpy.ndarray
    refs: numpy.ndarray
    tokens: list[str]


def _index(subjects: list[Subject], region: str, salts: tuple[str, ...],
           research: bool = False) -> Index:
    """Everything KnownSubjects searches. `research`: the whole research hash set, not only
    the hashes vendors use (hashes.HASH_SCOPES).

    A large registry is indexed by several processes, and its automata (the longest step,
    in Rust, holding this process's GIL) are built while the other processes still work:
    this one spells most subjects (plain spellings and base64 prefixes), the others
    the rest of them first, then the digests and tokens of all subjects."""
    if len(subjects) < _LARGE:
        return _indexed(subjects, region, salts, research, large=False)
    _give_back()  # what parsing the registry freed (100,000 subjects: 42 MB), before building
    _mapped_apart()
    try:
        return _indexed(subjects, region, salts, research, large=True)
    finally:
        _mapped_together()


def _indexed(subjects: list[Subject], region: str, salts: tuple[str, ...], research: bool,
             large: bool) -> Index:
    sealed = _sealed(subjects, region, salts, research) if large else None
    cached = _opened(sealed) if sealed is not None else None
    if cached is not None:
        return cached
    identifiers = [subject.identifiers for subject in subjects]
    count = len(identifiers)
    workers = max(1, min(os.cpu_count() or 1, 8) - 1) if large else 0
    own = count if not workers else int(count * _own_share(workers))
    spell_ranges, hash_ranges = _ranges(own, count, workers), _ranges(0, count, workers)
    children = [_Worker(identifiers, spelling, hashing, region, salts, research)
                for spelling, hashing in zip(spell_ranges, hash_ranges, strict=True)]
    spelled = _spelled_chunks(identifiers, 0, own, region)
    for child, (start, end) in zip(children, spell_ranges, strict=True):
        received = child.spelled()
        done = start + sum(chunk.count for chunk in received)
        spelled += received + _spelled_chunks(identifiers, done, end, region)

    def hashed() -> list[_Hashed]:
        if not workers:
            return _hashed_chunks(identifiers, 0, count, region, salts, research)
        chunks = []
        for child, (start, end) in zip(children, hash_ranges, strict=True):
            received = child.hashed()
            done = start + sum(chunk.count for chunk in received)
            chunks += received + _hashed_chunks(identifiers, done, end, region, salts, research)
        return chunks

    index = _built(spelled, hashed, sealed.writer() if sealed is not None else None)
    _give_back()
    return index


# Of one subject's indexing (CPU, one process, 100,000 subjects), the share of its
# spellings, and of merging them and building the automata (the rest, 0.47, is its digests
# and tokens); and what a worker spends besides, as a share of a registry of 100,000 (its
# interpreter's start and imports, 0.45 s, and sending what it made).
_SPELLING_SHARE, _AUTOMATON_SHARE, _WORKER_SHARE = 0.29, 0.24, 0.03


def _own_share(workers: int) -> float:
    """The share of the subjects this process spells: the automata it builds then are done
    as the workers end (2 cores: 95%). This process's part, own * S + A, is each worker's,
    ((1 - own) * S + 1 - S - A) / workers + W."""
    share = ((1 - _AUTOMATON_SHARE) / workers - _AUTOMATON_SHARE + _WORKER_SHARE) / (
        _SPELLING_SHARE * (1 + 1 / workers))
    return min(1.0, max(0.0, share))


def _ranges(start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """start to end cut into `parts` ranges (empty ones at the end)."""
    step = -(-(end - start) // max(parts, 1))
    return [(min(start + n * step, end), min(start + (n + 1) * step, end))
            for n in range(parts)]


_MMAP_THRESHOLD = -3  # mallopt's parameter: from this size, a block is mapped on its own
_TRIM_THRESHOLD = -1  # ...and past this much free at the heap's top, the top is given back
_MAPPED_FROM = 128 * 1024  # glibc's default, before it raises it


def _mapped_apart() -> None:
    """Has glibc map every large block apart while the index is built (_mapped_together
    ends it). By default it raises that size to any mapped block freed (up to 32 MB): once
    building freed large numpy arrays, the automata's growing vectors were moved within the
    heap, each leaving the pages of the last copy held, and freed arrays stayed held until
    _give_back (100,000 subjects, cold: this process held 453 MB as the base64 automaton's
    build ended, 383 now). Mapped apart, a vector grows in place (mremap) and a freed block
    goes back at once."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(_MMAP_THRESHOLD, _MAPPED_FROM)
    except (OSError, AttributeError):  # not glibc
        pass


def _mapped_together() -> None:
    """Once the index is built, large blocks come from the heap again, as glibc's default
    would have them once it raised its threshold: mapped apart, every MB a flow's decoding
    allocates and frees was mapped afresh, its pages faulted in (the hostile batch, 43 -> 67
    ms a MB). glibc raises its threshold to 32 MB at most, and trims the heap past twice
    that."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):  # not glibc
        pass


def _give_back() -> None:
    """Hands the memory that building freed back to the system: glibc keeps it mapped (some
    hundreds of MB for a large registry), where other processes could use it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _spelled_chunks(identifiers: list[tuple[tuple[str, str], ...]], start: int, end: int,
                    region: str) -> list[_Spelled]:
    return [_spelled(identifiers[at:min(at + _CHUNK, end)], at, region)
            for at in range(start, end, _CHUNK)]


def _hashed_chunks(identifiers: list[tuple[tuple[str, str], ...]], start: int, end: int,
                   region: str, salts: tuple[str, ...], research: bool) -> list[_Hashed]:
    return [_hashed(identifiers[at:min(at + _CHUNK, end)], at, region, salts, research)
            for at in range(start, end, _CHUNK)]


class _Collected:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.packs = array("Q")

    def add(self, text: str, packed: int) -> None:
        self.texts.append(text)
        self.packs.append(packed)

    def done(self) -> tuple[Texts, numpy.ndarray]:
        return _texts(self.texts), numpy.frombuffer(self.packs, numpy.uint64)


def _spelled(identifiers: list[tuple[tuple[str, str], ...]], start: int,
             region: str) -> _Spelled:
    """What subjects number start, start + 1... add to the automata, and the values they
    hold."""
    plain, encoded, owned = _Collected(), _Collected(), _Collected()
    phones, phone_items = array("Q"), array("Q")
    firsts: list[str] = []
    split_numbers = array("Q")
    lasts: list[str] = []
    base64 = _FORM_INDEX["base64"]
    for number, items in enumerate(identifiers, start):
        identified = _identified(items, region, building=True)
        for position, (key, category, value, canon) in enumerate(
                identified[:1 << _POSITION_BITS]):
            origin = number << _POSITION_BITS | position
            item = origin << 3
            keys = _phone_keys(canon, region) if category == "phone" else ()
            for key in keys:
                phones.append(key)
                phone_items.append(origin)
            for text, form in _spellings(category, value, canon).items() if not keys else ():
                if len(text) <= _LENGTH_MASK:
                    plain.add(text, item | _FORM_INDEX[form])
            for text in {value, value.lower(), canon}:
                for b64 in _base64_prefixes(text):
                    if len(b64) <= _LENGTH_MASK:
                        encoded.add(b64, item | base64)
            for owner in owner_keys(key, category, value, canon):
                owned.add(owner, number)
            if category == "name" and key == "name" and len(parts := _name_parts(value)) >= 2:
                firsts.append(parts[0])
                split_numbers.append(number)
                lasts.append(parts[-1])
    owned_texts, owned_by = owned.done()
    return _Spelled(start, len(identifiers), *plain.done(), *encoded.done(),
                    numpy.frombuffer(phones, numpy.uint64),
                    numpy.frombuffer(phone_items, numpy.uint64), owned_texts,
                    owned_by.astype(numpy.uint32), (" ".join(firsts), numpy.frombuffer(
                        split_numbers, numpy.uint64), " ".join(lasts)))


def _hashed(identifiers: list[tuple[tuple[str, str], ...]], start: int, region: str,
            salts: tuple[str, ...], research: bool) -> _Hashed:
    """The digests and tokens of subjects number start, start + 1..."""
    hashed: dict[tuple[int, ...], tuple[list[bytes], list[int]]] = {}
    tokens: set[str] = set()
    for number, items in enumerate(identifiers, start):
        tokens |= registry_tokens(items)
        identified = _identified(items, region, building=True)
        base = number << (_CHAIN_BITS + _INPUT_BITS)
        hash_inputs = _hash_inputs(identified, region, research, building=True)
        for position, inputs in enumerate(hash_inputs):
            texts, bases = hashed.setdefault(inputs.chains, ([], []))
            texts.append(inputs.text.encode())
            bases.append(base | position << _CHAIN_BITS)
    return _Hashed(start, len(identifiers), *_digested(hashed, salts), list(tokens))


def _digested(hashed: dict[tuple[int, ...], tuple[list[bytes], list[int]]],
              salts: tuple[str, ...]) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The sorted digest prefixes of the inputs, and their refs. Inputs that go through the
    same chains are hashed together, one algorithm at a time, so the loop over millions of
    digests runs in C (map) rather than in Python."""
    keys: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint64)]
    refs: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint32)]
    for chains, (texts, bases) in hashed.items():
        base_array = numpy.array(bases, dtype=numpy.uint32)
        hexed: dict[tuple[str, ...], list[bytes]] = {(): texts}  # sha256(md5(x)) reuses md5(x)
        continued = continued_by(chains)
        for index in chains:
            chain = CHAINS[index]
            if chain == (SALTED,):
                for salt in salts:
                    keys.append(_prefix_keys(_bulk("sha256", [salt.encode() + t for t in texts])))
                    refs.append(base_array | index)
                continue
            keys.append(_prefix_keys(_chained(chain, hexed, continued)))
            refs.append(base_array | index)
    all_keys = numpy.concatenate(keys)
    order = numpy.argsort(all_keys, kind="stable")
    return all_keys[order], numpy.concatenate(refs)[order]


# --- merging what each process made -----------------------------------------------------------

def _joined(chunks: list[_Hashed]) -> _Hashed:
    """Hashed chunks that follow each other as one, its digests sorted. It empties `chunks`,
    and lets each array go as soon as the next is made: 100,000 subjects' digests are 53 MB,
    and their order 35 more."""
    keys = numpy.concatenate([numpy.zeros(0, numpy.uint64), *(chunk.keys for chunk in chunks)])
    refs = numpy.concatenate([numpy.zeros(0, numpy.uint32), *(chunk.refs for chunk in chunks)])
    tokens = list({token for chunk in chunks for token in chunk.tokens})
    start, count = (chunks[0].start, sum(chunk.count for chunk in chunks)) if chunks else (0, 0)
    chunks.clear()
    order = numpy.argsort(keys, kind="stable")  # merges the sorted runs
    keys = keys[order]
    refs = refs[order]
    return _Hashed(start, count, keys, refs, tokens)


def _built(spelled: list[_Spelled], hashed: Callable[[], list[_Hashed]],
           writer: Writer | None = None) -> Index:
    """The index of the chunks, which it empties: each part is let go once merged, and the
    memory it held handed back before the next (an automaton's build holds three times what
    it keeps). `hashed` is asked for its chunks once the automata are built (other processes
    make them meanwhile). `writer`: where the index goes on disk, as it is made."""
    splits = [chunk.split for chunk in spelled]
    owners = _owners([chunk.owned for chunk in spelled], [chunk.owned_by for chunk in spelled])
    kinds = [([chunk.plain for chunk in spelled], [chunk.plain_packs for chunk in spelled]),
             ([chunk.encoded for chunk in spelled], [chunk.encoded_packs for chunk in spelled])]
    phones = numpy.concatenate([numpy.zeros(0, numpy.uint64), *(c.phones for c in spelled)])
    phone_items = numpy.concatenate([numpy.zeros(0, numpy.uint64),
                                     *(c.phone_items for c in spelled)])
    order = numpy.argsort(phones, kind="stable")  # a number's holders in the subjects' order
    phones, phone_items = phones[order], phone_items[order]
    spelled.clear()
    shared: list[list[int]] = []
    # The base64 prefixes' automaton first: of the two, its build holds the most beyond what
    # it keeps (100,000 subjects: 0.6 million prefixes), so it is better built beside nothing
    # and kept while the plain one builds than the other way round.
    encoded, encoded_values, encoded_texts = _merged(*kinds[1], shared, writer)
    plain, plain_values, plain_texts = _merged(*kinds[0], shared, writer)
    split: dict[str, list[tuple[int, str]]] = {}  # once the automata are built (_Spelled.split)
    for firsts, numbers, lasts in splits:
        if len(numbers):
            for first, number, last in zip(firsts.split(" "), numbers.tolist(),
                                           lasts.split(" "), strict=True):
                split.setdefault(first, []).append((number, last))
    del splits
    chunks = hashed()
    digests = chunks[0] if len(chunks) == 1 else _joined(chunks)
    index = Index(plain, plain_values, encoded, encoded_values, shared, phones, phone_items,
                  split, owners, digests.keys, digests.refs,
                  _screened([plain_texts, encoded_texts]), set(digests.tokens))
    if writer is not None:
        for part in (index.plain_values, index.encoded_values, index.shared, index.phones,
                     index.phone_items, index.split, index.owners, index.keys, index.refs,
                     index.tokens):
            writer.add(part)
        writer.close()
    return index


def _merged(parts: list[Texts], packs: list[numpy.ndarray], shared: list[list[int]],
            writer: Writer | None) -> tuple[ahocorasick_rs.AhoCorasick | None, array,
                                            list[str] | None]:
    """One automaton's spellings merged (see _deduplicated), its automaton, its values, and
    its texts if few (_kept_texts). The lists of parts are emptied as they are merged."""
    unique, values = _deduplicated(parts, packs, shared)
    parts.clear()
    packs.clear()
    unique, order = _in_prefix_order(unique)
    values = array("Q", values[order].tobytes())  # each pattern's, in the new order
    del order
    _give_back()
    for part in [*unique, None] if writer is not None else ():
        writer.add(part)  # type: ignore[union-attr]
    kept = _kept_texts(unique)
    automaton = _automaton(unique)
    _give_back()
    return automaton, values, kept


_SORTED_PREFIX = 8  # characters that order the spellings
_GATHERED = 1 << 17  # texts put in order at a time


def _in_prefix_order(parts: list[Texts]) -> tuple[list[Texts], numpy.ndarray]:
    """The texts of the parts ordered by their first characters, and that order (positions
    in the parts). An automaton is built from them faster: each text's states were just
    made for the one before it. 2 million spellings of a registry in no order built in 4.1 s
    of CPU, in this order in 2.4 s (plus 0.6 s to order them)."""
    lengths = numpy.concatenate([numpy.zeros(0, numpy.int64), *(p.lengths for p in parts)])
    encoding, width = ("ascii", numpy.uint8) if all(p.joined.isascii() for p in parts) else (
        "utf-32-le", numpy.uint32)  # one code unit per character
    # Followed by as many zeros as a key reads, so that the last text has them to read.
    characters = numpy.concatenate([*(numpy.frombuffer(p.joined.encode(encoding), width)
                                      for p in parts), numpy.zeros(_SORTED_PREFIX, width)])
    starts = numpy.cumsum(lengths) - lengths
    firsts = numpy.lib.stride_tricks.sliding_window_view(characters, _SORTED_PREFIX)[starts]
    if width is not numpy.uint8:  # a byte a character: beyond 255, they only group
        firsts = numpy.minimum(firsts, 255).astype(numpy.uint8)
    firsts[numpy.arange(_SORTED_PREFIX) >= lengths[:, None]] = 0  # not the next text's
    order = numpy.argsort(firsts.view(">u8").ravel())
    del firsts
    hashes = numpy.concatenate([numpy.zeros(0, numpy.int64), *(p.hashes for p in parts)])
    index = numpy.int32 if len(characters) < 1 << 31 else numpy.int64  # half the bytes to move
    starts = starts.astype(index)
    ordered = []
    for at in range(0, len(order), _GATHERED):
        taken = order[at:at + _GATHERED]
        taken_lengths = lengths[taken]
        ends = numpy.cumsum(taken_lengths, dtype=index)
        positions = numpy.repeat(starts[taken] - (ends - taken_lengths.astype(index)),
                                 taken_lengths)
        positions += numpy.arange(len(positions), dtype=index)
        ordered.append(Texts(numpy.take(characters, positions).tobytes().decode(encoding),
                             taken_lengths.astype(numpy.uint32), hashes[taken]))
    return ordered, order


def _kept_texts(parts: list[Texts]) -> list[str] | None:
    """An automaton's spellings, if the registry is small enough for a Hyperscan screen."""
    if sum(len(part.lengths) for part in parts) > SCREENED_SPELLINGS:
        return None
    return [text for part in parts for text in part.each()]


def _screened(kept: list[list[str] | None]) -> tuple[list[str], list[str]] | None:
    """Index.texts: both automata's spellings, if they are SCREENED_SPELLINGS at most."""
    if kept[0] is None or kept[1] is None or len(kept[0]) + len(kept[1]) > SCREENED_SPELLINGS:
        return None
    return kept[0], kept[1]


def _automaton(parts: list[Texts]) -> ahocorasick_rs.AhoCorasick | None:
    """Its pattern numbers are the texts' order. A contiguous NFA: a third of the memory of
    the trie pyahocorasick built for 2 million spellings, built in Rust in 2 s. It empties
    `parts`."""
    if not any(len(part.lengths) for part in parts):
        parts.clear()
        return None
    return ahocorasick_rs.AhoCorasick(_drained(parts),
                                      implementation=ahocorasick_rs.Implementation.ContiguousNFA,
                                      store_patterns=False)


def _drained(parts: list[Texts]) -> Iterator[str]:
    """The texts of the parts, in order, each part let go once read: a build holds the most
    as it ends, turning its trie into the automaton kept, and the texts are no longer needed
    then (100,000 subjects' base64 prefixes: 19 MB)."""
    parts.reverse()
    while parts:
        yield from parts.pop().each()


def _firsts(parts: list[Texts]) -> numpy.ndarray:
    """For each text of the parts, in order, the position of the first text equal to it.
    Texts are grouped by their hash in C; two texts that only share a hash (about one pair in
    ten million at a million texts) each stay their own."""
    total = sum(len(part.lengths) for part in parts)
    hashes = numpy.concatenate([numpy.zeros(0, numpy.int64), *(part.hashes for part in parts)])
    order = numpy.argsort(hashes)  # not stable: a quarter of the time (2 million: 0.07 s)
    ordered = hashes[order]
    starts = numpy.ones(total, bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    smallest = numpy.minimum.reduceat(order, numpy.flatnonzero(starts))  # of equal hashes
    firsts = numpy.empty(total, numpy.int64)
    firsts[order] = smallest[numpy.cumsum(starts) - 1]
    repeated = numpy.flatnonzero(firsts != numpy.arange(total)).tolist()
    if repeated:
        text_at = _TextAt(parts)
        for position in repeated:
            if text_at(position) != text_at(int(firsts[position])):
                firsts[position] = position
    return firsts


class _TextAt:
    """The text at a position of the parts, in order."""

    def __init__(self, parts: list[Texts]) -> None:
        self.parts = parts
        self.starts = numpy.cumsum([0] + [len(part.lengths) for part in parts]).tolist()
        self.offsets = [numpy.concatenate(([0], numpy.cumsum(part.lengths, dtype=numpy.int64)))
                        for part in parts]

    def __call__(self, position: int) -> str:
        which = bisect_right(self.starts, position) - 1
        at = position - self.starts[which]
        offsets = self.offsets[which]
        return self.parts[which].joined[int(offsets[at]):int(offsets[at + 1])]


def _deduplicated(parts: list[Texts], packs: list[numpy.ndarray],
                  shared: list[list[int]]) -> tuple[list[Texts], numpy.ndarray]:
    """Each text once, and its value (see Index.plain_values): a text that several
    identifiers spell points into `shared`, which lists their origins."""
    firsts = _firsts(parts)
    unique = firsts == numpy.arange(len(firsts))
    packed = numpy.concatenate([numpy.zeros(0, numpy.uint64), *packs])
    lengths = numpy.concatenate([numpy.zeros(0, numpy.uint32), *(p.lengths for p in parts)])
    pattern = (numpy.cumsum(unique) - 1)[firsts]  # each text's pattern number
    values = packed[unique] << numpy.uint64(_LENGTH_BITS) | lengths[unique]
    repeated = numpy.flatnonzero(numpy.bincount(pattern, minlength=1)[pattern] > 1)
    origins: dict[int, list[int]] = {}
    for number, origin in zip(pattern[repeated].tolist(), packed[repeated].tolist(),
                              strict=True):
        held = origins.setdefault(number, [])
        if origin not in held and len(held) < _MAX_NAMED:
            held.append(origin)
    for number, held in origins.items():
        if len(held) > 1:
            length = int(values[number]) & _LENGTH_MASK
            values[number] = (_SHARED | len(shared)) << _LENGTH_BITS | length
            shared.append(held)
    kept = []
    at = 0
    for part in parts:
        kept.append(_selected(part, unique[at:at + len(part.lengths)]))
        at += len(part.lengths)
    return kept, values


def _selected(part: Texts, mask: numpy.ndarray) -> Texts:
    """The texts of `part` where `mask` is True. Their characters are selected in numpy, not
    sliced out one text at a time (2 million texts: half a second)."""
    encoding, width = ("ascii", numpy.uint8) if part.joined.isascii() else (
        "utf-32-le", numpy.uint32)  # one code unit per character
    characters = numpy.frombuffer(part.joined.encode(encoding), width)
    joined = characters[numpy.repeat(mask, part.lengths)].tobytes().decode(encoding)
    return Texts(joined, part.lengths[mask], part.hashes[mask])


def _owners(parts: list[Texts], numbers: list[numpy.ndarray]) -> dict[str, tuple[int, ...]]:
    """The values that several subjects hold, and their numbers (ascending: the parts come in
    the subjects' order)."""
    firsts = _firsts(parts)
    number_of = numpy.concatenate([numpy.zeros(0, numpy.uint32), *numbers])
    repeated = numpy.flatnonzero(numpy.bincount(firsts, minlength=1)[firsts] > 1)
    held: dict[int, list[int]] = {}
    for first, number in zip(firsts[repeated].tolist(), number_of[repeated].tolist(),
                             strict=True):
        holders = held.setdefault(first, [])
        if not holders or holders[-1] != number:
            holders.append(number)
    text_at = _TextAt(parts)
    return {text_at(first): tuple(holders) for first, holders in held.items()
            if len(holders) > 1}


# --- other processes ---------------------------------------------------------------------------

class _Worker:
    """A fresh interpreter that makes the spelled chunks of one range of subjects, then the
    hashed chunks of another (not multiprocessing: its spawn re-runs the main script, its
    fork can deadlock in a proxy with threads running), and a thread here that starts it,
    writes it its job and reads its chunks as they come: this process spells meanwhile,
    not waiting for the worker's interpreter to start (0.25 s at 100,000 subjects) nor for
    it to read its job."""

    def __init__(self, identifiers: list[tuple[tuple[str, str], ...]],
                 spelling: tuple[int, int], hashing: tuple[int, int], region: str,
                 salts: tuple[str, ...], research: bool) -> None:
        self.received: tuple[list[_Spelled], list[_Hashed]] = ([], [])
        self.spelled_all = threading.Event()
        # The identifiers to hash go marshalled a chunk at a time, and the worker loads each
        # as it hashes it: loaded at once, 100,000 subjects' held 46 MB there throughout.
        packed = [marshal.dumps(identifiers[at:min(at + _CHUNK, hashing[1])])
                  for at in range(*hashing, _CHUNK)]
        # Not the thread's args, which it holds until it ends: the job (100,000 subjects:
        # 10 MB) is let go once written.
        self.job: tuple | None = (identifiers[slice(*spelling)], spelling[0], packed,
                                  hashing[0], region, salts, research)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            job, self.job = self.job, None
            child = _start_worker(job)  # type: ignore[arg-type]
            del job
            if child is None or child.stdout is None:
                return
            try:
                with child.stdout:  # read as a stream: a pipe holds 1 MB at most
                    while (chunk := pickle.load(child.stdout)) is not None:
                        if chunk is _SPELLED_ALL:
                            self.spelled_all.set()
                        else:
                            self.received[isinstance(chunk, _Hashed)].append(chunk)
            except Exception:  # it died midway, or sent what is no chunk: the rest is done here
                child.kill()
            child.wait()
        finally:
            self.spelled_all.set()

    def spelled(self) -> list[_Spelled]:
        """The spelled chunks it made, in order: all of them, or those it sent before it
        failed."""
        self.spelled_all.wait()
        return self.received[0]

    def hashed(self) -> list[_Hashed]:
        """Likewise its hashed chunks."""
        self.thread.join()
        return self.received[1]


# The job is marshalled: tuples and strings, 8 times faster than pickle writes them.
_WORKER_CODE = ("import marshal, pickle, sys; sys.path.insert(0, sys.argv[1]); "
                "from gdpr_audit.detectors.registry_index import _worker_chunks; "
                "job = marshal.loads(sys.stdin.buffer.read())\n"
                "for chunk in _worker_chunks(*job):\n"
                "    pickle.dump(chunk, sys.stdout.buffer, protocol=5); sys.stdout.buffer.flush()")


_PIPE = 1 << 20  # what Linux lets a pipe hold


def _start_worker(job: tuple) -> subprocess.Popen[bytes] | None:
    """The worker, its job written to it (it reads the whole job before it sends anything),
    or None."""
    if getattr(sys, "frozen", False):  # a bundled mitmproxy: sys.executable is no Python
        return None
    try:
        # No stderr: a worker's error could quote an identifier; the job is then done here.
        # Read a pipe's worth at a time: pickle reads 64 KB frames, and each read let go of
        # the GIL, which the reading thread then waited up to 5 ms to get back (see below).
        child = subprocess.Popen([sys.executable, "-c", _WORKER_CODE,
                                  str(Path(__file__).parents[2])],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=_PIPE,
                                 stderr=subprocess.DEVNULL,
                                 # As _mapped_apart: each chunk it sends goes back once sent.
                                 env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(_MAPPED_FROM)})
    except OSError:  # no interpreter to start: this process does it all
        return None
    # The thread that reads it needs the GIL between reads, which this process's own
    # indexing holds 5 ms at a time: through a 64 KB pipe the worker waited more than it
    # worked (3 s of 12 at 100,000 subjects). Linux lets a pipe hold 1 MB.
    with suppress(ImportError, AttributeError, OSError):  # not Linux: the pipe stays as it is
        import fcntl
        fcntl.fcntl(child.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE)  # type: ignore[union-attr]
    with suppress(OSError), child.stdin:  # type: ignore[union-attr]
        child.stdin.write(marshal.dumps(job))  # type: ignore[union-attr]
    return child  # if it died at once, no chunk is read from it


_SPELLED_ALL = True  # what a worker sends once it has sent all its spelled chunks


def _worker_chunks(spelling: list[tuple[tuple[str, str], ...]], spelling_start: int,
                   hashing: list[bytes], hashing_start: int, region: str,
                   salts: tuple[str, ...], research: bool
                   ) -> Iterator[_Spelled | bool | _Hashed | None]:
    """What a worker sends: its spelled chunks, one at a time, _SPELLED_ALL, its hashed
    chunks, then None. `hashing`: the identifiers to hash, marshalled a chunk at a time. The
    hashed ones are all made before any is sent: meanwhile the other process builds its
    automata, holding the GIL that the thread reading this one needs, and the pipe would
    fill and stop this one. Identifiers are let go once done: the other process's automata
    are built meanwhile. The hashed chunks go as they are, each let go once sent, and the
    other process joins them once this one has ended: joined here, they were held three
    times over (100,000 subjects: 130 MB more) while the other process received them."""
    for at in range(0, len(spelling), _CHUNK):
        yield _spelled(spelling[at:at + _CHUNK], spelling_start + at, region)
    spelling.clear()
    yield _SPELLED_ALL
    hashed, start = [], hashing_start
    for number, packed in enumerate(hashing):
        identifiers = marshal.loads(packed)
        hashing[number] = b""
        hashed.append(_hashed(identifiers, start, region, salts, research))
        start += len(identifiers)
    hashed.reverse()
    while hashed:
        yield hashed.pop()
    yield None


# --- on disk -----------------------------------------------------------------------------------

def _opened(sealed: Sealed) -> Index | None:
    """The index kept on disk (see _built: its automata are kept as their spellings, and
    rebuilt, a second or two for a million, rather than as Rust's memory), or None if there
    is none or it is not one this code wrote. Each automaton is built as soon as its
    spellings are read, and they are let go before the rest is read."""
    stream = sealed.parts()
    try:
        automata, small = [], []
        for _ in range(2):
            spelled = list(iter(lambda: next(stream), None))
            if not all(isinstance(part, Texts) for part in spelled):
                return None
            small.append(_kept_texts(spelled))
            automata.append(_automaton(spelled))
            del spelled
            _give_back()
        rest = list(stream)  # to the end: only then is the file known whole
        if len(rest) != 10:
            return None
        (plain_values, encoded_values, shared, phones, phone_items, split, owners, keys, refs,
         tokens) = rest
        encoded, plain = automata  # in the order _built made them
        return Index(plain, plain_values, encoded, encoded_values,  # type: ignore[arg-type]
                     shared, phones, phone_items, split, owners, keys, refs,  # type: ignore[arg-type]
                     _screened(small[::-1]), tokens)  # type: ignore[arg-type]
    except (StopIteration, TypeError, ValueError):
        return None


def _sealed(subjects: list[Subject], region: str, salts: tuple[str, ...],
            research: bool = False) -> Sealed | None:
    """Where the index of exactly this registry, region, salts, hash scope and code is kept,
    if anywhere."""
    folder = cache_folder()
    if folder is None:
        return None
    code = [path.read_bytes() for path in sorted(Path(__file__).parent.glob("*.py"))]
    setting = repr((phonenumbers.__version__, region, salts, research))
    # Marshal's version 2 writes no references to objects met before (later versions write
    # them by reference count): the same bytes for the same identifiers in any process, in
    # a fifth of the time repr took (100,000 subjects: 0.04 s).
    return Sealed(folder, (*code, setting.encode(), marshal.dumps(
        [subject.identifiers for subject in subjects], 2)))
