"""Registry subjects, found in every form at once.

All plain spellings of every identifier of every subject sit in one Aho-Corasick automaton,
so a value is searched once whatever the size of the registry (a value that may be
URL-encoded, once more decoded: the spellings' URL encodings are not in the automaton).
Phone numbers are not spelled (14 spellings each were two thirds of the automaton): a
value's runs of digits are read as numbers and looked up in a sorted array of the
registry's. Hashes are not searched for: tokens that could be a digest (hex, base64 of
one, a decimal checksum) are looked up in a sorted array of 8-byte digest prefixes, then
verified by hashing that one subject's input again. Keeping prefixes rather than digests is
what lets every hash the research detectors search (and chains of the ones vendors use) fit
in memory for a 100,000-subject registry.
"""

import hashlib
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import NamedTuple

import hyperscan
import numpy
from ahocorasick_rs import AhoCorasick

from ..fields import Field
from ..policy import Subject, without_cycle_collection
from .attribution import Places, attribute, part_of_match
from .base import (
    LONG_TEXT,
    SEPARATOR,
    SPACE,
    Finding,
    Joined,
    canonical,
    hint_database,
    is_word_boundary,
)
from .hashes import (
    _CHAIN_BITS,
    _INPUT_BITS,
    ALGORITHMS,
    CHAINS,
    DECIMAL,
    DIGEST_HINTS,
    HASH_SCOPES,
    MAX_SUBJECTS,
    SALTED,
    _digest_candidates,
    _form_name,
    _key,
)
from .registry_index import (
    _FORMS,
    _LENGTH_BITS,
    _MAX_NAMED,
    _POSITION_BITS,
    _SHARED,
    SCREENED_SPELLINGS,
    _index,
)
from .spellings import (
    INTERNATIONAL,
    MAX_PHONE_DIGITS,
    NATIONAL,
    HashInput,
    _hash_inputs,
    _identified,
    _name_keys,
    _phone_key,
    _with_full_names,
    url_encodings,
)

__all__ = ["ALGORITHMS", "CHAINS", "SALTED", "Form", "KnownSubjects"]


_SPACES = re.compile(r"\s+")
_ASCII_SPACES = str.maketrans({c: " " for c in map(chr, range(128)) if _SPACES.fullmatch(c)})
_SPACE_RUNS = re.compile("  +")
_SPACE_RUN = f"[{SPACE}][{SPACE}]|[\\t\\n\\r\\f\\v\\x1c-\\x1f]"  # what _SPACES would change
# Spellings too short or too partial to count inside running text.
_WHOLE_VALUE_ONLY = frozenset({"keystroke", "birthday", "part"})
_ENCODABLE = frozenset({"plain", "url"})  # the forms whose URL encodings count (url_encodings)


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
             self._phones, self._phone_items, self._split, self._owners, self._keys, self._refs,
             self._texts, self.tokens) = _index(
                self.subjects, region, self.salts, self.research)
        self._phone_lengths = _lengths(self._phones)
        self._phone_heads = _heads(self._phones, self._phone_lengths)
        # Looked up one key at a time (bisect on an array costs a tenth of a numpy call), or
        # all of a long text's at once (_holding: in numpy, on the same memory).
        self._phones, self._phone_items = (array("Q", self._phones.tobytes()),
                                           array("Q", self._phone_items.tobytes()))
        self._phone_array = numpy.frombuffer(self._phones, numpy.uint64)
        fewest = min((length for _, length in self._phone_lengths), default=0)
        # Stretches of digits and what joins them (_JOINS), as long as the shortest number:
        # what _phone_spans reads, and more, found by `re` at a fifth of the cost of a pattern
        # that counts digits.
        self._phone_chars = re.compile(
            f"[0-9][0-9{_JOINING}]{{{fewest - 1},}}") if fewest else None
        self._digit_counts = frozenset(length for _, length in self._phone_lengths)
        self._fewest_digits = fewest
        # How many digits a number is read from: a registry number's, or 00 and one's.
        self._read_counts = sorted(self._digit_counts | {
            length + 2 for kind, length in self._phone_lengths if kind == INTERNATIONAL})
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
        # (start, end, the spelling's value or -1 for a number, whether URL-encoded)
        spans: list[tuple[int, int, int, bool]] = []
        if self.plain is not None:
            for number, start, end in _matches(self.plain, lowered):
                if _standalone(lowered, start, end):
                    spans.append((start, end, self._plain_values[number], False))
            spans += self._encoded_spans(lowered)
        phones = self._phone_spans(lowered) if self._phone_chars is not None else {}
        spans += ((start, end, -1, False) for start, end in phones)
        # Longest first, and a match inside a longer one is part of it ("martin" in an email).
        # A number and a spelling of the same text (a customer id that is the customer's
        # phone number) are both kept: neither is inside the other.
        spans.sort(key=lambda s: s[0] - s[1])
        # The spans kept, by start: none holds another, so their ends come in order too, and
        # the one that starts last at or before a span is the one that may hold it (a value
        # can hold thousands: a list of customers' emails, where looking at each kept span
        # for each was quadratic, 26 s for 40,000).
        starts: list[int] = []
        ends: list[int] = []
        for start, end, packed, encoded in spans:
            before = bisect_right(starts, start) - 1
            if before >= 0 and ends[before] >= end and (starts[before], ends[before]) != (
                    start, end):
                continue
            text = lowered[start:end]
            forms = self._forms(packed, text) if packed >= 0 else self._phone_forms(
                phones[start, end], text)
            if encoded:  # only plain spellings are found encoded, and then they are url
                forms = list(dict.fromkeys(
                    form._replace(form="url" if "%" in text else "plain")
                    for form in forms if form.form in _ENCODABLE))
                if not forms:  # a keystroke's prefix encoded: no match, none inside it hidden
                    continue
            starts.insert(before + 1, start)
            ends.insert(before + 1, end)
            for form in forms:
                if form.form in _WHOLE_VALUE_ONLY and end - start != len(lowered.strip()):
                    continue  # a prefix counts only as the whole value typed so far
                yield Finding(self.id, form.category, field, text, form.canonical,
                              "plain" if form.form == "part" else form.form, form.subject,
                              1, form.part)
        if self.encoded is not None:
            for number, start, end in _matches(self.encoded, value):
                for form in self._forms(self._encoded_values[number]):
                    yield Finding(self.id, form.category, field, value[start:end],
                                  form.canonical, form.form, form.subject, 1, form.part)
        if len(self._keys):
            yield from self._find_digests(field)

    def _encoded_spans(self, lowered: str) -> list[tuple[int, int, int, bool]]:
        """The plain spellings that `lowered` holds URL-encoded, as quote or quote_plus
        writes them (url_encodings), where they are found once it is decoded: (start, end)
        in `lowered`, their value, True."""
        decoded = _url_decoded(lowered)
        if decoded is None:
            return []
        text, at = decoded
        spans = []
        for number, start, end in _matches(self.plain, text):
            written_start, written_end = at(start), at(end)
            written = lowered[written_start:written_end]
            if (written in url_encodings(text[start:end])
                    and _standalone(lowered, written_start, written_end)):
                spans.append((written_start, written_end, self._plain_values[number], True))
        return spans

    def _phone_spans(self, text: str) -> dict[tuple[int, int], list[int]]:
        """Where `text` holds a registry number, and who holds it (Index.phone_items). A run
        of groups of digits joined by _JOINS is read from the start of every group to the end
        of each later one, as the number's spellings were matched inside it ("06 10 01 23 45
        17" holds "06 10 01 23 45"), with a '(', then a '+', before it."""
        found: dict[tuple[int, int], list[int]] = {}
        if len(text) >= LONG_TEXT and text.isascii():
            stretches = self._long_text_stretches(text)
        elif _digit_count(text) < self._fewest_digits:
            return found  # most values
        else:
            stretches = [stretch.span() for stretch in self._phone_chars.finditer(text)
                         if _digit_count(stretch[0]) >= self._fewest_digits]
        for start, end in stretches:
            digits = text[start:end]
            if digits.isdigit() and text[start - 1:start] != "%" and not self._may_be_number(
                    digits):
                continue  # one number of no registry number's length: most ids and timestamps
            # From before an escape the stretch may start in or after ("%28415%29").
            groups = [group.span(1) for group in _DIGITS.finditer(text, max(start - 3, 0), end)
                      if group[1]]
            run = groups[:1]
            for group in groups[1:]:
                if text[run[-1][1]:group[0]] not in _JOINS:
                    self._find_in_run(text, run, found)
                    run = []
                run.append(group)
            self._find_in_run(text, run, found)
        return found

    def _long_text_stretches(self, text: str) -> list[tuple[int, int]]:
        """_holding's stretches of a long ASCII text. Where phone_hint, which matches at the
        start of every registry number find() reads, hits it a few times only (a log of ids,
        dates and timings: 60 times a MB), only the runs of digits and what joins them around
        its hits are read, as one text: a stretch lies inside one (10 of 18 ms a MB)."""
        hits: list[int] = []

        def matched(index: int, start: int, end: int, flags: int, context: object) -> bool:
            hits.append(end - 2)  # in `text`, the last digit the hint read
            return len(hits) > _FEW_HINTS  # stops the scan: the whole text is read

        database, scratch = hint_database((self.phone_hint,), (0,), "phone-hint")
        try:
            with scratch:  # between SEPARATORs: the hint reads what stands before a number
                database.scan(f"{SEPARATOR}{text}{SEPARATOR}".encode(),
                              match_event_handler=matched)
        except hyperscan.ScanTerminated:
            return _holding(text, self._phone_array, self._phone_lengths, self._read_counts)
        if not hits:
            return []
        skeleton = text.encode().translate(_RUN_OF_JOINABLE)
        # Each run whole, and the character that closes it: the last of an escape ("%2b").
        runs = sorted({(skeleton.rfind(b".", 0, hit) + 1, skeleton.find(b".", hit) + 1 or
                        len(text)) for hit in hits})
        starts = list(accumulate((end - start + 1 for start, end in runs), initial=0))
        stretches = _holding(SEPARATOR.join(text[start:end] for start, end in runs),
                             self._phone_array, self._phone_lengths, self._read_counts)
        moved = []
        for start, end in stretches:
            run = bisect_right(starts, start) - 1
            moved.append((start - starts[run] + runs[run][0], end - starts[run] + runs[run][0]))
        return moved

    def _find_in_run(self, text: str, run: list[tuple[int, int]],
                     found: dict[tuple[int, int], list[int]]) -> None:
        """Adds to `found` the registry numbers of a run of groups of digits: those of as many
        digits as a registry number (or 00 and an international one), from the start of a
        group to the end of a group."""
        texts = [text[start:end] for start, end in run]
        ends = list(accumulate(map(len, texts)))  # how many digits up to each group's end
        last_of = {end: last for last, end in enumerate(ends)}
        for first, (at, _) in enumerate(run):
            before = ends[first] - len(texts[first])
            if ends[-1] - before < self._fewest_digits:
                return
            for count in self._read_counts:
                last = last_of.get(before + count)
                if last is None or (count not in self._digit_counts
                                    and not texts[first].startswith("00")):
                    continue
                digits = "".join(texts[first:last + 1])
                bare = self._phone_holders(digits, False)
                if not bare:  # nor after a '+', which reads only the international ones
                    continue
                end = run[last][1]
                for start, international in _phone_starts(text, at):
                    items = self._phone_holders(digits, True) if international else bare
                    if items and _phone_standalone(text, start, end):
                        found.setdefault((start, end), []).extend(items)

    def _may_be_number(self, digits: str) -> bool:
        """Whether a registry number has this many digits (or as many after 00)."""
        return len(digits) in self._digit_counts or (
            len(digits) in self._read_counts and digits.startswith("00"))

    def _phone_holders(self, digits: str, international: bool) -> list[int]:
        """Index.phone_items of the registry's numbers that `digits` may be: after a '+' an
        international one; else a national one, an international one without its '+', or
        after 00. Only those whose first digits a registry number has are looked up."""
        items: list[int] = []
        keys = [(digits, INTERNATIONAL)]
        if not international:
            keys.append((digits, NATIONAL))
            if digits.startswith("00"):
                keys.append((digits[2:], INTERNATIONAL))
        for number, kind in keys:
            if (kind, len(number), int(number[:_HEAD])) in self._phone_heads:
                key = _phone_key(number, kind)
                low = bisect_left(self._phones, key)
                high = low
                while high < len(self._phones) and self._phones[high] == key and (
                        high - low < _MAX_NAMED):
                    high += 1
                items += self._phone_items[low:high]
        return items

    def _phone_forms(self, items: list[int], text: str) -> list[Form]:
        """The numbers a phone span is (see _forms), URL-encoded if it holds a %-escape."""
        forms = []
        for item in items:
            subject = self.subjects[item >> _POSITION_BITS]
            identified = _identified(subject.identifiers, self.region)
            canon = identified[item & ((1 << _POSITION_BITS) - 1)][3]
            forms.append(Form(subject.id, "phone", canon, "url" if "%" in text else "plain"))
        return list(dict.fromkeys(forms))  # a subject's phone and mobile, the same number

    @property
    def hints(self) -> list[str]:
        """What `find` needs to find anything beyond the automata's spellings (which
        automaton_hits finds) and registry numbers (phone_hint): whitespace that find()
        turns into one space, and every token shaped like a digest. See Detector.hint."""
        hints = [_SPACE_RUN] if self.plain is not None or self._phone_chars is not None else []
        if len(self._keys):
            hints += DIGEST_HINTS
        return hints

    @property
    def phone_hint(self) -> str | None:
        """Where find() may find a registry number: from the start of a group of digits (or
        after 00), the first _HEAD digits of one, then as many digits as the shortest has,
        with what may join them. Which of the values it hits hold one, holding_phones tells.
        Hyperscan reports every match, each a call into Python: a hint of any digits was
        called at every group of a text of numbers ("1 2 3...": 200,000 calls a 400 KB
        body, 190 ms)."""
        if self._phone_chars is None:
            return None
        join = _JOIN_HINT
        if self._fewest_digits < _HEAD:  # too short to have a head: every group may start one
            return f"(?:[^0-9]|%2[089])[0-9](?:{join}[0-9]){{{self._fewest_digits - 1}}}"
        heads = "|".join(join.join(f"{head:0{_HEAD}d}") for head in sorted(
            {head for _, _, head in self._phone_heads}))
        return (f"(?:[^0-9]|%2[089])(?:0{join}0{join})?(?:{heads})"
                f"(?:{join}[0-9]){{{self._fewest_digits - _HEAD}}}")

    def holding_phones(self, values: list[str]) -> set[str]:
        """Of values phone_hint hit, those in which find() may find a registry number (and a
        few more): a batch's thousands of phone numbers are looked up at once, in numpy,
        rather than each by find(), whose Python costs 10 us a number. Long values (which
        find() reads so itself) and values that are not ASCII are all kept."""
        ascii_values = [value for value in values if len(value) < LONG_TEXT and value.isascii()
                        and SEPARATOR not in value]
        kept = set(values).difference(ascii_values)
        if ascii_values:
            joined = Joined(ascii_values)
            kept |= joined.hit(end - 1 for _, end in _holding(
                joined.text, self._phone_array, self._phone_lengths, self._read_counts))
        return kept

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
        # find() decodes URL-encoded text: the screen finds the encodings themselves.
        plain = {*plain, *(written for text in plain for written in url_encodings(text))}
        # Sorted: the compiled database is kept on disk under its patterns, in their order.
        literals = [(text, True) for text in sorted(plain)
                    if text.isascii() and text == text.lower()] + [
            (text, False) for text in sorted(encoded)]
        return literals if len(literals) <= SCREENED_SPELLINGS else None  # encodings count

    def automaton_hits(self, batch: str) -> Iterator[int]:
        """Where the automata match raw in `batch` (ASCII values joined by SEPARATOR)."""
        if self.plain is not None:
            lowered = batch.lower()
            yield from (end - 1 for _, _, end in _matches(self.plain, lowered))
            if (decoded := _url_decoded(lowered)) is not None:
                text, at = decoded
                yield from (at(end) - 1 for _, _, end in _matches(self.plain, text))
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


_ESCAPES = re.compile("(?:%[0-9a-f]{2})+")
_UTF8_LENGTH = {**dict.fromkeys(range(0x80), 1), **dict.fromkeys(range(0xC2, 0xE0), 2),
                **dict.fromkeys(range(0xE0, 0xF0), 3), **dict.fromkeys(range(0xF0, 0xF5), 4)}


def _url_decoded(text: str) -> tuple[str, Callable[[int], int]] | None:
    """Lowercase `text` decoded as unquote_plus would, and where each of its positions is in
    `text`, or None if decoding changes nothing. A %-escape that begins no UTF-8 character
    stays as it is: a spelling encoded never holds one. None too where no spelling can be
    found encoded: without a '%', an encoding is quote_plus's of a spelling with spaces,
    each a '+' between two characters quote leaves as they are (a phone number's '+' after
    a comma or at the start is not one: call records were searched twice for nothing)."""
    if "%" not in text and not _PLUS_FOR_SPACE.search(text):
        return None
    if len(text) >= LONG_TEXT:
        try:
            return _url_decoded_whole(text)
        except UnicodeEncodeError:  # lone surrogates: a body that was not UTF-8
            pass
    return _url_decoded_pieces(text)


_PLUS_FOR_SPACE = re.compile(r"[a-z0-9_.~-]\+[a-z0-9_.~-]")  # in lowered text
_HEX_DIGITS = numpy.full(256, -1, numpy.int16)
_HEX_DIGITS[numpy.frombuffer(b"0123456789abcdef", numpy.uint8)] = numpy.arange(16)


def _url_decoded_whole(text: str) -> tuple[str, Callable[[int], int]]:
    """_url_decoded of a long text in numpy, whole, from its UTF-8 bytes: an escape-dense body
    is decoded in 15 ms a MB, not 170 escape run by escape run. Raises UnicodeEncodeError
    where the text holds lone surrogates."""
    data = numpy.frombuffer(text.encode(), numpy.uint8)
    escapes = numpy.flatnonzero(data[:-2] == ord("%"))
    high, low = _HEX_DIGITS[data[escapes + 1]], _HEX_DIGITS[data[escapes + 2]]
    hexed = (high >= 0) & (low >= 0)
    escapes, values = escapes[hexed], (high * 16 + low)[hexed]
    decoded, positions = _unescaped(data, escapes, values)
    try:
        result = decoded.tobytes().decode()
    except UnicodeDecodeError:
        # Escapes that begin no UTF-8 character (Latin-1's `caf%E9`) stay as they are, as
        # _url_decoded_pieces keeps them: each byte Python cannot decode is a lone surrogate,
        # and the character before it tells where it is.
        loose = decoded.tobytes().decode(errors="surrogateescape")
        points = numpy.frombuffer(loose.encode("utf-32-le", "surrogatepass"), numpy.uint32)
        stray = (points >= 0xDC80) & (points <= 0xDCFF)
        sizes = numpy.where(stray, 1, 1 + (points >= 0x80) + (points >= 0x800)
                            + (points >= 0x10000))
        kept_as_is = positions[(numpy.cumsum(sizes) - sizes)[stray]]  # their '%' in `data`
        decodable = ~numpy.isin(escapes, kept_as_is)
        decoded, positions = _unescaped(data, escapes[decodable], values[decodable])
        result = decoded.tobytes().decode()
    if not result.isascii():  # a character is where its first byte is
        positions = positions[(decoded & 0xC0) != 0x80]
    if len(data) != len(text):  # from bytes of `data` to characters of `text`
        positions = (numpy.cumsum((data & 0xC0) != 0x80) - 1)[positions]
    positions = numpy.append(positions, len(text))
    return result, lambda position: int(positions[position])


def _unescaped(data: numpy.ndarray, escapes: numpy.ndarray, values: numpy.ndarray,
               ) -> tuple[numpy.ndarray, numpy.ndarray]:
    """`data` with each escape at `escapes` made the byte of `values` it writes and each '+'
    a space, and where each byte of that is in `data`."""
    decoded = data.copy()
    decoded[decoded == ord("+")] = ord(" ")  # not a '+' that an escape writes
    decoded[escapes] = values
    kept = numpy.ones(len(data), bool)
    kept[escapes + 1] = kept[escapes + 2] = False
    positions = numpy.flatnonzero(kept)
    return decoded[kept], positions


def _url_decoded_pieces(text: str) -> tuple[str, Callable[[int], int]]:
    """_url_decoded, escape run by escape run."""
    # Where each piece of the decoded text begins, there and in `text`: within a piece,
    # positions in both advance together.
    pieces, starts, written = [], [], []
    done = length = 0

    def add(piece: str, at: int) -> None:
        nonlocal length
        pieces.append(piece)
        starts.append(length)
        written.append(at)
        length += len(piece)

    for run in _ESCAPES.finditer(text):
        add(text[done:run.start()].replace("+", " "), done)
        data = bytes.fromhex(run[0].replace("%", ""))
        at = 0
        while at < len(data):
            size = _UTF8_LENGTH.get(data[at], 0)
            try:
                character = data[at:at + size].decode() if size else None
            except UnicodeDecodeError:
                character = None
            if character is None:  # no character begins here: the escape stays as it is
                size, character = 1, run[0][3 * at:3 * at + 3]
            add(character, run.start() + 3 * at)
            at += size
        done = run.end()
    add(text[done:].replace("+", " "), done)
    add("", len(text))  # the end

    def at_in_text(position: int) -> int:
        piece = bisect_right(starts, position) - 1
        return written[piece] + position - starts[piece]

    return "".join(pieces), at_in_text


def _matches(automaton: AhoCorasick, text: str) -> list[tuple[int, int, int]]:
    """(pattern number, start, end) of every match, overlapping. Rust reads UTF-8 only: a
    body that was not valid UTF-8 holds lone surrogates (surrogateescape), which become
    U+FFFD, one character for one, so that positions stay the same."""
    try:
        return automaton.find_matches_as_indexes(text, True)
    except UnicodeEncodeError:
        return automaton.find_matches_as_indexes(text.translate(_NO_SURROGATES), True)


_NO_SURROGATES = dict.fromkeys(range(0xD800, 0xE000), 0xFFFD)


# What find() reads as one number: groups of digits, and between two at most one separator
# (a space, '.', '-', '+' or an encoded space) and brackets ("(415) 555-2671").
_JOINS = frozenset(close + separator + bracket for close in ("", ")", "%29")
                   for separator in ("", " ", ".", "+", "-", "%20") for bracket in ("", "(", "%28"))
_JOINING = r" .+()%-"  # the characters of _JOINS
# _JOINS in raw text, for Hyperscan: any one space character (find() reads it as a space).
_JOIN_HINT = rf"(?:\)|%29)?(?:[{SPACE}.+-]|%20)?(?:\(|%28)?"
_NOT_DIGITS = bytes(byte for byte in range(256) if byte not in b"0123456789")


def _digit_count(text: str) -> int:
    """How many ASCII digits `text` holds, counted in C."""
    return len(text.encode(errors="ignore").translate(None, _NOT_DIGITS))


_DIGITS = re.compile("%2[089b]|([0-9]+)")  # the groups of digits, not those of an escape


def _phone_starts(text: str, at: int) -> list[tuple[int, bool]]:
    """Where a number whose first digit is at `at` may start, and whether it is then
    international: there, before a bracket, and before a '+'."""
    starts = [(at, False)]
    for bracket in ("(", "%28"):
        if text.endswith(bracket, 0, at):
            at -= len(bracket)
            starts.append((at, False))
            break
    for plus in ("+", "%2b"):
        if text.endswith(plus, 0, at):
            starts.append((at - len(plus), True))
            break
    return starts


_ESCAPED = numpy.zeros(256, bool)  # "%2_": an escape _DIGITS skips
_ESCAPED[list(b"089bB")] = True
_JOINABLE = numpy.zeros(256, bool)  # what may stand between two digits of a number
_JOINABLE[list(_JOINING.encode())] = True
_JOINABLE[list(b"0123456789")] = True  # an escape's


def _holding(text: str, keys: numpy.ndarray, lengths: frozenset[tuple[str, int]],
             counts: list[int]) -> list[tuple[int, int]]:
    """The stretches of an ASCII text that _phone_spans reads (digits, at most 9 characters
    of _JOINS between two) in which some groups of digits, as many as a registry number,
    are one of the registry's `keys` (with 00 before an international one, or none), in
    numpy: a 1 MB log holds thousands of ids and dates, each a few microseconds in Python.
    Whether the groups are joined as _JOINS joins them, and where the number stands, is
    left to _phone_spans: what this keeps is all it can find, and a little more."""
    raw = numpy.frombuffer(text.encode("ascii"), numpy.uint8)
    digit = (raw - numpy.uint8(48)) < 10
    escapes = numpy.flatnonzero((raw[:-2] == ord("%")) & (raw[1:-1] == ord("2")))
    escapes = escapes[_ESCAPED[raw[escapes + 2]]]
    digit[escapes + 1] = digit[escapes + 2] = False  # as _DIGITS reads them
    positions = numpy.flatnonzero(digit)
    if not len(positions):
        return []
    gaps = numpy.diff(positions)
    linked = gaps <= 10
    # What stands between two digits, a character at a time, where something does (between
    # groups: a fraction of the digits), and as long as each may still join them.
    between = numpy.flatnonzero(linked & (gaps > 1))
    for offset in range(1, 10):
        between = between[gaps[between] > offset]
        joinable = _JOINABLE[raw[positions[between] + offset]]
        linked[between[~joinable]] = False
        between = between[joinable]
    stretch = numpy.concatenate(([0], numpy.cumsum(~linked, dtype=numpy.int32)))  # of each digit
    starts = numpy.flatnonzero(numpy.concatenate(([True], gaps > 1)))  # of groups of digits
    ends = numpy.zeros(len(positions) + 1, bool)  # ends[k]: a group ends before digit k
    ends[numpy.concatenate((starts[1:], [len(positions)]))] = True
    values = (raw[positions] - numpy.uint8(48)).astype(numpy.uint64)
    hit = numpy.zeros(len(positions), bool)
    for count in counts:
        first = starts[starts + count <= len(positions)]
        first = first[ends[first + count] & (stretch[first + count - 1] == stretch[first])]
        if not len(first):
            continue
        number = numpy.zeros(len(first), numpy.uint64)
        for column in range(count):  # Horner, a column of digits at a time
            number = number * numpy.uint64(10) + values[first + column]
        wanted = [numpy.uint64(int(kind + "0" * length)) + number % numpy.uint64(10 ** length)
                  for kind, length in ((NATIONAL, count), (INTERNATIONAL, count),
                                       (INTERNATIONAL, count - 2)) if (kind, length) in lengths]
        for candidates in wanted:
            at = numpy.minimum(keys.searchsorted(candidates), len(keys) - 1)
            hit[first[keys[at] == candidates]] = True
    held = numpy.unique(stretch[hit])
    if not len(held):
        return []
    bounds = numpy.flatnonzero(numpy.concatenate(([True], stretch[1:] != stretch[:-1], [True])))
    return [(int(positions[bounds[n]]), int(positions[bounds[n + 1] - 1]) + 1)
            for n in held.tolist()]


_FEW_HINTS = 1000
"""Up to this many hits of phone_hint in a long text, only the runs around them are read
(KnownSubjects._long_text_stretches); past it (call records), the whole text."""
_RUN_OF_JOINABLE = bytes(0x30 if _JOINABLE[byte] else 0x2E for byte in range(256))


def _phone_standalone(text: str, start: int, end: int) -> bool:
    """_standalone, where an escape just before the number is the character it encodes: in
    URL-encoded text a number follows "%20"."""
    escape = _ESCAPE.fullmatch(text, max(start - 3, 0), start)
    if escape is None:
        return _standalone(text, start, end)
    return _standalone(chr(int(escape[1], 16)) + text[start:end + 1], 1, 1 + end - start)


_ESCAPE = re.compile("%([0-9a-f]{2})")


_HEAD = 3  # digits


def _heads(phones: numpy.ndarray, lengths: frozenset[tuple[str, int]],
           ) -> frozenset[tuple[str, int, int]]:
    """(kind, length, first _HEAD digits) of the sorted phone keys: most runs of digits are
    told from every registry number by them, without a search (a few hundred at most)."""
    heads = set()
    for kind, length in lengths:
        low, high = numpy.searchsorted(phones, [numpy.uint64(int(kind) * 10 ** length),
                                                numpy.uint64((int(kind) + 1) * 10 ** length)])
        below = numpy.uint64(10 ** max(length - _HEAD, 0))
        heads.update((kind, length, head % 10 ** _HEAD)
                     for head in numpy.unique(phones[low:high] // below).tolist())
    return frozenset(heads)


def _lengths(phones: numpy.ndarray) -> frozenset[tuple[str, int]]:
    """The (kind, number of digits) of the sorted phone keys: those of a kind and a length lie
    between the kind's digit followed by as many zeros and the next kind's."""
    return frozenset((kind, length) for length in range(1, MAX_PHONE_DIGITS + 1)
                     for kind in (NATIONAL, INTERNATIONAL)
                     if numpy.searchsorted(phones, numpy.uint64(int(kind) * 10 ** length))
                     < numpy.searchsorted(phones, numpy.uint64((int(kind) + 1) * 10 ** length)))


# A word inside an address or a dotted id (`jean.martin@`, `martin_shop`) is not a name.
_GLUE = frozenset("@._-+")


def _standalone(text: str, start: int, end: int) -> bool:
    if not is_word_boundary(text, start, end):
        return False
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    return not (before in _GLUE and after in _GLUE) and before not in "@" and after not in "@"
