"""What every detector shares: the Finding it reports and the canonical form of a value."""

import platform
import re
import threading
import unicodedata
from collections.abc import Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import ClassVar

import hyperscan
import numpy
import phonenumbers

from ..fields import Field
from .sealed import Sealed, cache_folder


@dataclass(slots=True)
class Finding:
    """Personal data found in one value of a flow (never changed once made: not frozen for
    the same reason as Field).

    `value` is the raw matched text and `canonical` the normalised identifier it stands for:
    both stay in memory only. The store keeps a masked preview and a keyed fingerprint of
    `canonical`, so the same person links across flows and encodings.
    """

    detector: str
    category: str
    field: Field
    value: str
    canonical: str
    form: str = "plain"
    """How the value was written: plain, url, base64, sha256(email), field name..."""
    subject: str | None = None
    count: int = 1
    """How many values of one array this finding stands for (`events[*].anonymousId`): a
    batch of 30,000 events is one finding of its shape, not 30,000 rows."""
    part: str = ""
    """For a registry match of a quasi-identifier (SPEC 3.5), which: city, postcode, street,
    first name, last name, name part, birth date; `canonical` is then that part's. Alone, it
    names nobody (attribution.py)."""

    def provenance(self) -> str:
        return " -> ".join((self.field.provenance(), self.form))

    def at(self, field: Field) -> "Finding":
        """The same finding in another field (dataclasses.replace, five times faster)."""
        return Finding(self.detector, self.category, field, self.value, self.canonical,
                       self.form, self.subject, self.count, self.part)


class Detector:
    """One kind of personal data. Subclasses in this package are registered by their `id`,
    which is stored in the audit log: never rename one."""

    id: ClassVar[str]
    category: ClassVar[str]
    reads_key: ClassVar[bool] = False
    """True when findings depend on the field's key or location, not on its value alone:
    the others' results are memoised by value."""

    hint: ClassVar[str | None] = None
    """A pattern found in every ASCII value `find` reports on, so that thousands of values
    (a batch of events) are screened in one scan of them all (see Screen), and only those it
    hits are looked at; None: every value is. Hyperscan's syntax: PCRE's without look-arounds,
    and SPACE for whitespace; a run of a class is best closed by a character outside it, so
    that the scan reports the run once rather than at every end."""

    def __init__(self, region: str = "FR", own_domains: tuple[str, ...] = ()) -> None:
        self.region = region
        self.own_domains = own_domains

    def find(self, field: Field) -> Iterator[Finding]:
        raise NotImplementedError

    def key_class(self, key: str) -> Hashable:
        """What `find` reads of a field's key, when it reads keys: its findings are memoised
        by this and the value. The whole key, unless a detector reads less of it."""
        return key


SEPARATOR = "\x00"
"""Joins the values of a batch for screening: no pattern or registry spelling matches it,
so none matches across two values, and it is a word boundary like the end of a value."""
SPACE = r"\t\n\v\f\r\x1c-\x1f "
"""What Python's `\\s` matches in ASCII text (Hyperscan's `\\s` leaves out \\x1c-\\x1f)."""


class Joined:
    """ASCII values, each between two SEPARATORs, to be screened in one scan."""

    def __init__(self, values: list[str]) -> None:
        self.values = values
        self.text = SEPARATOR + SEPARATOR.join(values) + SEPARATOR
        # Value i, and the SEPARATOR after it, from _starts[i]: a match ends in the value
        # it was found in, or on the SEPARATOR that closed it.
        lengths = numpy.fromiter(map(len, values), dtype=numpy.int64, count=len(values))
        self._starts = numpy.cumsum(lengths + 1) - lengths
        self.longest = int(lengths.max()) if len(values) else 0

    def hit(self, positions: Iterable[int]) -> set[str]:
        """The values at these positions of the text."""
        found = numpy.fromiter(positions, dtype=numpy.int64)
        indexes = numpy.searchsorted(self._starts, found, side="right") - 1
        return {self.values[index] for index in numpy.unique(indexes).tolist()}


class Screen:
    """Hints of several owners (detectors, the registry) scanned over a batch of values in
    one pass of Hyperscan, which runs every pattern at once at C speed: the screening of
    20,000 values costs milliseconds, where a scan with `re` per pattern cost tens.

    `literals` (owner, text, caseless) are searched as they are: a small registry's
    spellings, which Hyperscan finds with the hints for a twentieth of what a scan of
    the registry's automata costs."""

    def __init__(self, hints: Iterable[tuple[object, str]],
                 literals: Iterable[tuple[object, str, bool]] = (), kind: str = "screen",
                 once: Collection[tuple[object, str]] = ()) -> None:
        self._kind = kind  # the cache keeps a few databases per kind: one kind per Screen's use
        patterns = [(owner, pattern, 0) for owner, pattern in hints] + [
            (owner, "".join(f"\\x{byte:02x}" for byte in text.encode()),
             hyperscan.HS_FLAG_CASELESS if caseless else 0) for owner, text, caseless in literals]
        self._owners, self._patterns, self._flags = zip(*patterns, strict=True)
        # A long value is scanned alone, and the hints `once` names are reported once in it
        # (Hyperscan's SINGLEMATCH): the value is hit, which is all their owners need, where
        # a hint of digits or of a line's end was reported, a call into Python each, at
        # every group of a log of numbers (100,000 a MB, 20 ms).
        self._once_flags = tuple(
            flags | hyperscan.HS_FLAG_SINGLEMATCH if (owner, pattern) in once else flags
            for owner, pattern, flags in zip(self._owners, self._patterns, self._flags,
                                             strict=True))
        self._once = bool(once)

    def compile(self) -> None:
        """Compile (or load) the database now rather than at the first scan."""
        hint_database(self._patterns, self._flags, self._kind)

    def scan(self, joined: Joined) -> dict[object, set[str]]:
        """For each owner, the values its hints hit."""
        values = joined.values
        if self._once and joined.longest >= LONG_TEXT:
            short = [value for value in values if len(value) < LONG_TEXT]
            found = self._scan(Joined(short)) if short else {o: set() for o in self._owners}
            hit: set[int] = set()

            def matched(index: int, start: int, end: int, flags: int, context: object) -> None:
                hit.add(index)

            database, scratch = hint_database(self._patterns, self._once_flags,
                                              "long-" + self._kind)
            for value in values:
                if len(value) >= LONG_TEXT:
                    hit.clear()
                    with scratch:  # between SEPARATORs, as in a Joined: what closes a hint
                        database.scan(f"{SEPARATOR}{value}{SEPARATOR}".encode(),
                                      match_event_handler=matched)
                    for index in hit:
                        found[self._owners[index]].add(value)
            return found
        return self._scan(joined)

    def _scan(self, joined: Joined) -> dict[object, set[str]]:
        ends: list[list[int]] = [[] for _ in self._owners]

        def matched(index: int, start: int, end: int, flags: int, context: object) -> None:
            ends[index].append(end - 1)

        database, scratch = hint_database(self._patterns, self._flags, self._kind)
        with scratch:  # one scratch space per database: one scan at a time
            database.scan(joined.text.encode(), match_event_handler=matched)
        by_owner: dict[object, list[int]] = {owner: [] for owner in self._owners}
        for owner, positions in zip(self._owners, ends, strict=True):
            by_owner[owner] += positions
        return {owner: joined.hit(positions) for owner, positions in by_owner.items()}

    def any_hit(self, data: bytes) -> bool:
        """Whether any hint or literal matches `data`: a scan that stops at the first match,
        for a whole body that is most often quiet (bodyscreen.py)."""
        def matched(index: int, start: int, end: int, flags: int, context: object) -> bool:
            return True  # stops the scan

        database, scratch = hint_database(self._patterns, self._flags, self._kind)
        with scratch:
            try:
                database.scan(data, match_event_handler=matched)
            except hyperscan.ScanTerminated:
                return True
        return False


_KEPT_DATABASES = 4
"""Per kind: two checkouts or two policies used in turn (an A/B benchmark, CI jobs of two
policies on one runner) each load theirs, where one file a kind made each of them compile
again (0.16-0.2 s in the replaying process, and the body screen's in each worker)."""


# Five kinds a policy (its screen, the screen's of long values, the registry numbers', the
# body screen's two), for two policies used in turn.
@lru_cache(maxsize=16)
def hint_database(patterns: tuple[str, ...], flags: tuple[int, ...], kind: str = "screen",
              ) -> tuple[hyperscan.Database, threading.Lock]:
    """Compiled when first needed, as most flows are too small to be screened, and kept on
    disk for the next process: compiling takes about 190 ms (50 us of it per literal),
    loading 2 ms. Kept sealed, as a small registry's spellings are among the literals."""
    setting = repr((metadata.version("hyperscan"), platform.machine(), flags)).encode()
    folder = cache_folder()
    expressions = [p.encode() for p in patterns]
    sealed = Sealed(folder, (setting, *expressions), kind, _KEPT_DATABASES) if folder else None
    kept = sealed.read() if sealed else None
    try:
        database = hyperscan.loadb(kept[0], hyperscan.HS_MODE_BLOCK) if kept else None
    except hyperscan.error:  # built for another CPU: Hyperscan checks
        database = None
    if database is None:
        database = hyperscan.Database()
        database.compile(expressions=expressions, ids=list(range(len(patterns))),
                         elements=len(patterns), flags=list(flags))
        if sealed:
            writer = sealed.writer()
            writer.add(hyperscan.dumpb(database))
            writer.close()
    else:
        database.scratch = hyperscan.Scratch(database)  # loadb makes none
    return database, threading.Lock()


def strip_accents(text: str) -> str:
    if text.isascii():  # most values: nothing to strip, and this runs on every one of them
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def canonical(category: str, text: str, region: str = "FR") -> str:
    """The one spelling of an identifier that fingerprints are computed over."""
    text = _SPACES.sub(" ", text.strip())
    if category == "phone":
        try:
            number = phonenumbers.parse(text, None if text.startswith("+") else region)
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        except phonenumbers.NumberParseException:
            return re.sub(r"\D", "", text)
    if category in ("iban", "payment_card", "national_id"):
        return re.sub(r"[\s.-]", "", text).upper()
    if category == "name":
        return strip_accents(text).lower()
    return text.lower()


LONG_TEXT = 4096
"""From this many characters, a pattern is looked for only where runs_of says it can match."""


def run_table(characters: str, joiners: str = "") -> bytes:
    """For runs_of: a bytes.translate table mapping these characters to "0", the joiners
    (what may stand between two of them: a card number's spaces) to "-", the rest to "."."""
    return bytes(0x30 if chr(byte) in characters else 0x2D if chr(byte) in joiners else 0x2E
                 for byte in range(256))


def runs_of(text: str, table: bytes, least: int) -> Iterator[tuple[int, int]]:
    """Where a pattern that matches only runs holding at least `least` of the characters of
    `table` (run_table), and its joiners, can match in `text`: (start, end) of each such run,
    `end` past the character that closes it, for the pattern's lookahead to read. Python's
    re tries a pattern at every position its first character fits (17 ms a MB of log for a
    card number, whose digits are everywhere); bytes.translate and bytes.find take 2. A
    short or non-ASCII text is one run, whole."""
    if len(text) < LONG_TEXT or not text.isascii():
        yield 0, len(text)
        return
    skeleton = text.encode().translate(table)
    if 0x2D in table:
        yield from _joined_runs(skeleton, least)
        return
    run = b"0" * least
    start = skeleton.find(run)
    while start >= 0:
        end = skeleton.find(b".", start + least)
        end = len(skeleton) if end < 0 else end
        yield skeleton.rfind(b".", 0, start) + 1, end + 1
        start = skeleton.find(run, end)


def _joined_runs(skeleton: bytes, least: int) -> list[tuple[int, int]]:
    """runs_of where joiners stand between the characters: the runs are told apart by what
    closes them, in numpy, then those as long as `least` have their characters counted. Read
    as runs of `least` characters, joiners included, a log's every `2026-06-15 10` (10
    digits) was one, each a search by the card pattern (25 ms a MB of log)."""
    closing = numpy.flatnonzero(numpy.frombuffer(skeleton, numpy.uint8) == 0x2E)
    bounds = numpy.concatenate(([-1], closing, [len(skeleton)]))
    long = numpy.flatnonzero(numpy.diff(bounds) > least)
    return [(start, end + 1) for start, end in zip((bounds[long] + 1).tolist(),
                                                    bounds[long + 1].tolist(), strict=True)
            if skeleton.count(b"0", start, end) >= least]


def is_word_boundary(text: str, start: int, end: int) -> bool:
    """True when text[start:end] is not glued to letters or digits on either side."""
    return (start == 0 or not text[start - 1].isalnum()) and (
        end >= len(text) or not text[end].isalnum())
