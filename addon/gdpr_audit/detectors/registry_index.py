"""The registry index: built in bulk, its digests hashed in other processes for a large
registry, and kept on disk sealed (see sealed.py) for the next load."""

import os
import pickle
import subprocess
import sys
from array import array
from collections.abc import Callable, Iterator
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import ahocorasick
import numpy
import phonenumbers

from ..policy import Subject
from .attribution import owned_by
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
from .spellings import _base64_prefixes, _hash_inputs, _identified, _name_parts, _spellings

# From this many subjects the digests are hashed in other processes too, and kept on disk.
_LARGE = 5_000
# A spelling of the automata packs: subject number, identifier position, form, length.
_POSITION_BITS, _LENGTH_BITS = 8, 16
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
_SHARED = 1 << 40  # the spelling of several identifiers: the rest is an index in _shared
_FORMS = ("plain", "url", "keystroke", "birthday", "base64", "part")
_FORM_INDEX = {form: number for number, form in enumerate(_FORMS)}
# A value that many subjects share (a city, a zip code) names at most this many of them.
_MAX_NAMED = 16
# The share of a large registry whose spellings the last worker makes (after which it hashes
# its digests): making spellings costs this process more than the vendors' digests cost a
# worker, 200 against 115 us a subject. With one worker a third balances the two.
_TAIL_SHARE = {1: 1 / 3}
_TAIL_CHUNK = 4096  # subjects a worker sends at a time: its spellings never all in memory


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
    owners: dict[str, tuple[int, ...]]
    """The subject numbers, ascending, of each value that several subjects hold (see
    attribution.owner_key); a value held by one subject is not kept."""
    keys: numpy.ndarray
    """8-byte prefixes of every digest, sorted."""
    refs: numpy.ndarray
    """Where each digest comes from: subject number, input position, chain."""


def _index(subjects: list[Subject], region: str, salts: tuple[str, ...],
           research: bool = False) -> Index:
    """Everything KnownSubjects searches. For a large registry, other processes hash the
    digests (one per core but this one) while this one makes the spellings and automata, and
    the whole index is kept on disk, encrypted, for the next load. `research`: the whole
    research hash set, not only the hashes vendors use (hashes.HASH_SCOPES)."""
    large = len(subjects) >= _LARGE
    sealed = _sealed(subjects, region, salts, research) if large else None
    cached = _opened(sealed.read()) if sealed is not None else None
    if cached is not None:
        return cached
    identifiers = [subject.identifiers for subject in subjects]
    workers = max(1, min(os.cpu_count() or 1, 8) - 1) if large else 0
    step = max(1, -(-len(identifiers) // max(workers, 1)))
    jobs = [(identifiers[i:i + step], i, region, salts, research)
            for i in range(0, max(len(identifiers), 1), step)]
    until = len(identifiers)
    if large:
        until = max(jobs[-1][1], until - int(until * _TAIL_SHARE.get(workers, 1 / 2)))
        jobs[-1] = (*jobs[-1], until)  # where the last worker starts spelling
    children = [_start_worker(job) for job in jobs] if large else [None] * len(jobs)

    def elsewhere() -> Iterator[_Made]:
        yield from _spelled_by(children[-1], children)

    spelled = _spell(identifiers, region, until, elsewhere)
    writer = sealed.writer() if sealed is not None else None
    for part in spelled if writer is not None else ():  # while the workers still hash
        if isinstance(part, ahocorasick.Automaton):
            _write_automaton(writer, part)
        else:
            writer.add(part)
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


# Spellings per part of an automaton on disk.
_CACHED_CHUNK = 65536


def _write_automaton(writer: Writer, automaton: ahocorasick.Automaton) -> None:
    """An automaton on disk as its spellings and their numbers, in chunks, then None. Its
    pickle is made whole in memory, as large as the automaton (a third of the peak memory
    of a 100,000-subject build); the spellings are a fifth of it, and rebuilding the
    automaton from them costs a warm load about a microsecond a spelling."""
    texts: list[str] = []
    numbers = array("Q")
    for text, number in automaton.items():
        texts.append(text)
        numbers.append(number)
        if len(texts) == _CACHED_CHUNK:
            writer.add(("".join(texts), array("Q", map(len, texts)), numbers))
            texts, numbers = [], array("Q")
    if texts:
        writer.add(("".join(texts), array("Q", map(len, texts)), numbers))
    writer.add(None)


def _read_automaton(parts: Iterator[object]) -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    while (part := next(parts)) is not None:
        joined, lengths, numbers = part  # type: ignore[misc]
        start = 0
        for length, number in zip(lengths, numbers, strict=True):
            automaton.add_word(joined[start:start + length], number)
            start += length
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _opened(parts: list[object] | None) -> Index | None:
    """The index kept on disk (see _write_automaton), or None if there is none or it is not
    one this code wrote."""
    if parts is None:
        return None
    stream = iter(parts)
    try:
        plain, plain_values = _read_automaton(stream), next(stream)
        encoded, encoded_values = _read_automaton(stream), next(stream)
        rest = list(stream)
    except (StopIteration, TypeError, ValueError):
        return None
    if len(rest) != len(Index._fields) - 4:
        return None
    return Index(plain, plain_values, encoded, encoded_values, *rest)  # type: ignore[arg-type]


# Per identifier of a subject: key, category, value, canonical, its plain spellings (text,
# form number) and its base64 prefixes.
_Made = list[tuple[str, str, str, str, list[tuple[str, int]], list[str]]]


def _made(items: tuple[tuple[str, str], ...], region: str) -> _Made:
    """What a subject's identifiers add to the automata (this process or a worker makes it)."""
    made = []
    for position, (key, category, value, canon) in enumerate(
            _identified(items, region, building=True)):
        if position >= 1 << _POSITION_BITS:
            break
        spellings = [(text, _FORM_INDEX[form])
                     for text, form in _spellings(category, value, canon, region).items()
                     if len(text) <= _LENGTH_MASK]
        prefixes = [b64 for text in {value, value.lower(), canon}
                    for b64 in _base64_prefixes(text) if len(b64) <= _LENGTH_MASK]
        made.append((key, category, value, canon, spellings, prefixes))
    return made


def _spell(identifiers: list[tuple[tuple[str, str], ...]], region: str,
           until: int | None = None,
           elsewhere: Callable[[], Iterator[_Made]] | None = None) -> tuple:
    """The automata of every spelling, built as the spellings are made (no list of millions
    of them in between). Subjects from number `until` on are spelled `elsewhere` (a worker),
    and added here in their order."""
    plain, plain_values = ahocorasick.Automaton(ahocorasick.STORE_INTS), array("Q")
    encoded, encoded_values = ahocorasick.Automaton(ahocorasick.STORE_INTS), array("Q")
    shared: list[list[int]] = []
    split: dict[str, list[tuple[int, str]]] = {}
    owners: dict[str, int | list[int]] = {}
    add = partial(_add, shared=shared)
    until = len(identifiers) if until is None or elsewhere is None else until

    def subjects() -> Iterator[_Made]:
        yield from (_made(items, region) for items in identifiers[:until])
        done = until
        if elsewhere is not None:
            for made in elsewhere():
                yield made
                done += 1
        yield from (_made(items, region) for items in identifiers[done:])  # what it failed

    base64 = _FORM_INDEX["base64"]
    for number, made in enumerate(subjects()):
        for position, (key, category, value, canon, spellings, prefixes) in enumerate(made):
            owned_by(owners, key, category, value, canon, number)
            item = number << (_POSITION_BITS + 3) | position << 3
            for text, form in spellings:
                add(plain, plain_values, text, item | form)
            for b64 in prefixes:
                add(encoded, encoded_values, b64, item | base64)
            if category == "name" and key == "name" and len(parts := _name_parts(value)) >= 2:
                split.setdefault(parts[0], []).append((number, parts[-1]))
    for automaton, values in ((plain, plain_values), (encoded, encoded_values)):
        if len(values):
            automaton.make_automaton()
    shared_values = {value: tuple(held) for value, held in owners.items()
                     if isinstance(held, list)}
    return plain, plain_values, encoded, encoded_values, shared, split, shared_values


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
            "from gdpr_audit.detectors.registry_index import _worker_parts; "
            "job = pickle.load(sys.stdin.buffer)\n"
            "for part in _worker_parts(*job):\n"
            "    pickle.dump(part, sys.stdout.buffer, protocol=5); sys.stdout.buffer.flush()")
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
    return _digest_chunk(*job[:5])


def _worker_parts(identifiers: list[tuple[tuple[str, str], ...]], start: int, region: str,
                  salts: tuple[str, ...], research: bool = False,
                  spell_from: int | None = None) -> Iterator[object]:
    """What a worker sends, in order: the spellings of its subjects from number `spell_from`
    on, in chunks, then an empty chunk; then its digests (_digest_chunk)."""
    if spell_from is not None:
        tail = identifiers[spell_from - start:]
        for i in range(0, len(tail), _TAIL_CHUNK):
            yield [_made(items, region) for items in tail[i:i + _TAIL_CHUNK]]
        yield []
    yield _digest_chunk(identifiers, start, region, salts, research)


def _spelled_by(child: subprocess.Popen[bytes] | None,
                children: list[subprocess.Popen[bytes] | None]) -> Iterator[_Made]:
    """The spellings the last worker made, as they come. If it fails midway, it is stopped
    (its place in `children` emptied, so its digests are made here too) and the caller
    spells what it did not send."""
    if child is None or child.stdout is None:
        return
    try:
        while chunk := pickle.load(child.stdout):
            yield from chunk
    except (EOFError, pickle.UnpicklingError, OSError):
        child.kill()
        child.wait()
        child.stdout.close()
        children[-1] = None


def _digest_chunk(identifiers: list[tuple[tuple[str, str], ...]], start: int, region: str,
                  salts: tuple[str, ...],
                  research: bool = False) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The sorted digest prefixes of subjects number start, start + 1..., and their refs.

    Inputs that go through the same chains are hashed together, one algorithm at a time,
    so the loop over millions of digests runs in C (map) rather than in Python."""
    groups: dict[tuple[int, ...], tuple[list[bytes], list[int]]] = {}
    for number, items in enumerate(identifiers, start):
        base = number << (_CHAIN_BITS + _INPUT_BITS)
        identified = _identified(items, region, building=True)
        for position, hashed in enumerate(_hash_inputs(identified, region, research)):
            texts, bases = groups.setdefault(hashed.chains, ([], []))
            texts.append(hashed.text.encode())
            bases.append(base | position << _CHAIN_BITS)
    keys: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint64)]
    refs: list[numpy.ndarray] = [numpy.zeros(0, numpy.uint32)]
    for chains, (texts, bases) in groups.items():
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


def _sealed(subjects: list[Subject], region: str, salts: tuple[str, ...],
            research: bool = False) -> Sealed | None:
    """Where the index of exactly this registry, region, salts, hash scope and code is kept,
    if anywhere."""
    folder = cache_folder()
    if folder is None:
        return None
    code = [path.read_bytes() for path in sorted(Path(__file__).parent.glob("*.py"))]
    setting = repr((phonenumbers.__version__, metadata.version("pyahocorasick"), region, salts,
                    research))
    return Sealed(folder, (*code, setting.encode(), *(
        repr(subject.identifiers).encode() for subject in subjects)))
