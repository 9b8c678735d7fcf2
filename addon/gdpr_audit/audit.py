"""One flow in, its findings and violations out: the pipeline that replay and the live proxy share."""

import gc
import re
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import compress
from operator import attrgetter, itemgetter

from mitmproxy import http
from mitmproxy.net.http import url

from .bodyscreen import BodyScreen
from .consent import ConsentReading, read_consent
from .detectors import PATTERN_DETECTORS, Finding, KnownSubjects
from .detectors.attribution import identifies_nobody
from .detectors.base import SEPARATOR, Detector, Joined, Screen
from .detectors.fieldnames import FIELD_NAME, FieldNameDetector, Label, label_of
from .detectors.hashes import DIGEST_HINTS
from .entities import entity_index
from .fields import (
    ARRAY_INDEX,
    MAX_FIELDS,
    MAX_MEMO_CHARS,
    Extraction,
    Field,
    array_shape,
    decompress,
    header,
    is_html,
    memoised_if_short,
    message_fields,
    raw_size,
    remember,
    remember_all,
    request_body,
    request_fields,
)
from .policy import Policy
from .recipients import Destination, public_suffixes, resolve
from .redact import Redactor
from .rules import RULES, FlowFacts, Violation

DEFAULT_MAX_BODY = 10 * 1024 * 1024
_SCREEN_FROM = 256
"""Values in a request from which screening them all at once beats looking at each."""
_SCREEN_CHARS = 1 << 16
"""...or characters: a few long values (a text log, what a hostile request decodes to) cost
every detector a pass in Python, where one scan of the hints runs at C speed (issue 19)."""
_PIECES_FROM = _SCREEN_CHARS
"""A text this long is looked at first in its first _PIECE characters (Auditor._found)..."""
_PIECE = 1 << 14
_CHARS_PER_IDENTIFIER = 256
"""...and, where they hold more than one identifier per this many characters, read a piece
at a time while it holds fewer: a MB may hold 4,096, whose finding costs about 25 ms (a
mailing list of 18,700 addresses cost 120)."""
_PROBE = 256
"""A request of more values is read first to its first _PROBE (Auditor._extracted)..."""
_PROBED = "probed"
_BYTES_PER_IDENTIFIER = 512
"""...and then on only while the values read hold fewer identifiers than one per this many
bytes of the request... A value holding one costs about 12 us (walked, decoded, screened,
found, kept): a JSON batch of 19,000 addresses cost 390 ms a MB. Twice the characters a
text's identifier is given: a text's cost less."""
_FEWEST_IDENTIFIERS = 1024
"""...and than this many at least (12 ms of them), whatever the request weighs: vendors'
APIs take batches of 100 to 1,000 records, which are read whole."""
_BYTES_PER_VALUE = 512
"""A request is read to one value per this many bytes of it as sent at most (MAX_FIELDS at
most): a value costs 5-8 us whether it holds anything or not (walked, tried for encodings,
screened, counted in its array's finding), 20-25 us where it is a token never seen before
(tried as hex, base64, lz-string and base58), and a batch's are 25-30 bytes long: a batch of
2,000 events (10,000 values, 300 KB) cost 270-700 ms a MB where SPEC 4 allows 50. One per
512 bytes is 10-16 ms a MB of values that come back, 45 of fresh tokens..."""
_FEWEST_VALUES = 4096
"""...and to this many at least (20-90 ms of them), whatever it weighs: an SDK's batch of
events, or a CRM's of 1,000 records of four fields, is read whole; from 2 MB, the budget is
by weight."""
_SCREENED = "screened"
_PHONES = "registry phones"  # the owner of KnownSubjects.phone_hint
_UNKNOWN = object()
_VALUE = attrgetter("value")
_ByValue = tuple[tuple[Finding, ...], tuple[Finding, ...]]
_NOTHING: _ByValue = ((), ())
_Seen = tuple[list[_ByValue], list[Iterable[Finding]]]
"""What _found_in found in a list of values: by value (registry, detectors), by key."""
# Alone these say nothing about who the person is; they become personal data beside an
# identifier (an id, an email, a device cookie) in the same request.
CONTEXTUAL = frozenset({"behavioural", "purchase", "location"})


@dataclass
class FlowAudit:
    flow_id: str
    method: str
    scheme: str
    host: str
    path: str
    """The path as a template (redact.py): API words, placeholders, no query value."""
    at: datetime
    destination: Destination | None = None
    findings: list[Finding] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    """Each finding's field path, through the allow-list (redact.py), in the order of
    `findings`; `forms` likewise for how each was found (`base64 -> json.email -> plain`)."""
    forms: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    error: str | None = None
    consent: dict | None = None
    """The consent signals the request carried, decoded (consent.ConsentReading.record)."""

    def field_of(self, finding: Finding) -> str:
        # By identity, not id(): an audit made in a worker process arrives as new objects.
        return next((self.fields[index] for index, item in enumerate(self.findings)
                     if item is finding), "")

    @property
    def status(self) -> str:
        return "error" if self.error else ("partial" if self.limits else "audited")


class Auditor:
    def __init__(self, policy: Policy, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.policy = policy
        self.max_body = max_body
        self.known = KnownSubjects(policy.subjects, policy.country, policy.hash_salts,
                                   policy.hashes)
        own_domains = tuple(h.lstrip("*.").lower() for h in policy.first_party)
        self.detectors = [cls(policy.country, own_domains) for cls in PATTERN_DETECTORS.values()]
        self._value_readers = [d for d in self.detectors if not d.reads_key]
        self._field_names = next(d for d in self.detectors if isinstance(d, FieldNameDetector))
        spellings = self.known.spellings
        hints = [(self.known, hint) for hint in self.known.hints] + [
            (d, d.hint) for d in self.detectors if d.hint is not None]
        if self.known.phone_hint is not None:
            hints.append((_PHONES, self.known.phone_hint))
        literals = [(self.known, text, caseless) for text, caseless in spellings or ()]
        # A long value is hit once by a hint: all its owner needs of it (Screen; holding_phones
        # keeps a long value whole, whatever the registry numbers' hint hit). But for the
        # registry's digests, each reported once already where its token ends: Hyperscan
        # scans BASE64_RUN reported once at two thirds of the speed (the hostile request's
        # 8 MB: 29 -> 49 ms).
        self._hints = Screen(hints, literals, once=[
            (owner, hint) for owner, hint in hints if hint not in DIGEST_HINTS])
        self._spellings_screened = spellings is not None
        self._body_screen = BodyScreen(self.known, hints, literals, self._spellings_screened)
        # A detector that reads values without a hint could find anything in any body.
        self._quiet = self._body_screen.quiet if all(
            d.hint is not None for d in self._value_readers) else None
        self._labels: dict[str, dict[str, Label | None]] = {}
        self.subjects = {s.id: s for s in policy.subjects}
        self.redactor = Redactor.for_policy(policy, self.known.tokens)
        self._by_value: dict[str, tuple[tuple[Finding, ...], tuple[Finding, ...]]] = {}
        self._by_key_class: dict[Detector, dict[tuple[Hashable, str], tuple[Finding, ...]]] = {
            d: {} for d in self.detectors if d.reads_key}
        self._by_key: dict[tuple[str, str], tuple[Finding, ...]] = {}
        self._destinations: dict[tuple[str, str], Destination] = {}

    def warm_up(self) -> None:
        """Build now what the first flows would build: the screening database, the Public
        Suffix List and the index of tracker entities (about 0.3 s). Done before workers fork,
        which then share them instead of each building its own."""
        self._hints.compile()
        public_suffixes()
        entity_index()

    def audit(self, flow: http.HTTPFlow, only: Extraction | None = None) -> FlowAudit:
        """Audit the request (and WebSocket messages and HTML page, when the flow has them);
        with `only`, just those values."""
        request = flow.request
        scheme = request.scheme
        if flow.websocket is not None:
            scheme = "wss" if scheme == "https" else "ws"
        result = FlowAudit(flow.id, self.redactor.method(request.method), scheme,
                           _pretty_host(request),
                           request.path, datetime.fromtimestamp(request.timestamp_start, UTC))
        try:
            self._audit(flow, result, only)
        except Exception as e:  # an audit bug must never lose the flow: record it instead
            result.findings, result.violations, result.fields, result.forms = [], [], [], []
            result.error = self._describe(e)
        result.path = self.redactor.path(request.path)
        result.host = self.redactor.host(result.host)
        return result

    def _describe(self, error: Exception) -> str:
        """The error for the log: its message may quote the traffic, so it is redacted."""
        try:
            return f"{type(error).__name__}: {self.redactor.message(str(error))[:200]}"
        except Exception:
            return type(error).__name__

    def audit_message(self, flow: http.HTTPFlow, content: bytes) -> FlowAudit:
        """One WebSocket message from the client, judged in its connection's context, and
        read to its budget of values as a request is (_values_budget)."""
        most, past_most = _values_budget(len(content), "a message")
        return self.audit(flow, message_fields(content, self.max_body, max_fields=most,
                                               cut=past_most))

    def _audit(self, flow: http.HTTPFlow, result: FlowAudit,
               only: Extraction | None = None) -> None:
        seen = None
        if only is not None:
            extraction = only
        else:
            extraction, seen = self._extracted(flow.request)
            sent = [m.content for m in flow.websocket.messages if m.from_client] \
                if flow.websocket else []
            if sent:  # a recorded conversation: its messages share one budget of values
                seen = None
                most, past_most = _values_budget(raw_size(flow.request) + sum(map(len, sent)),
                                                 "a conversation")
                for content in sent:
                    room = max(most - len(extraction.fields), 0)
                    extra = message_fields(content, self.max_body, max_fields=room, cut=past_most)
                    extraction.fields += extra.fields
                    for limit in extra.limits:
                        extraction.limit(limit)
        page = self._page(flow, extraction) if only is None else None
        result.limits = extraction.limits
        result.findings = self.detect(extraction, seen)
        # A city or a birth date that names nobody identifies nobody either (SPEC 3.5).
        identifying = any(f.category not in CONTEXTUAL and not identifies_nobody(f)
                          for f in result.findings)
        result.destination = self._resolve(result.host, flow.request.path)
        consent = (read_consent(extraction.fields, self.policy.signal_purposes)
                   if self.policy.read_signals else ConsentReading())
        result.consent = self.redactor.record(consent.record) if consent.record else None
        facts = FlowFacts(
            flow_id=flow.id, method=result.method, scheme=result.scheme, host=result.host,
            path=flow.request.path, at=result.at, destination=result.destination,
            findings=tuple(result.findings) if identifying else (), policy=self.policy,
            subjects=self.subjects,
            consent_signals=consent.decisions,
            page=page)
        for rule in RULES.values():
            # A message may quote the traffic (a checkbox's name): through the allow-list.
            for violation in rule.check(facts):
                message = self.redactor.message(violation.message)
                result.violations.append(violation if message == violation.message
                                         else replace(violation, message=message))
        # Through the allow-list once per key and per provenance: a text's thousands of
        # findings (call records) share one field.
        keys = {key: self.redactor.key(key) for key in {f.field.key for f in result.findings}}
        forms = {(layers, form): self.redactor.form(layers, form)
                 for layers, form in {(f.field.layers, f.form) for f in result.findings}}
        result.fields = [keys[f.field.key] for f in result.findings]
        result.forms = [forms[f.field.layers, f.form] for f in result.findings]

    def _extracted(self, request: http.Request) -> tuple[Extraction, "_Seen | None"]:
        """request_fields, within a budget of values (one per _BYTES_PER_VALUE bytes of the
        request as sent, _FEWEST_VALUES at least, MAX_FIELDS at most) and of identifiers: one
        per _BYTES_PER_IDENTIFIER bytes (a compressed batch decodes to many more),
        _FEWEST_IDENTIFIERS at least. A request of over _PROBE values (a batch of contacts, an
        import) is read first to its first _PROBE, then, while the values read hold fewer
        distinct identifiers than its budget, to as many more as would hold it at their pace
        (twice as many at least, its budget of values at most). Where they hold more, or
        where it has more values than its budget, the flow is partial: the values read are
        kept. Each reading starts again from the first value, whose findings were
        memoised: a batch sparse in identifiers reads its first _PROBE values twice, one as
        dense throughout its first values at most three times; the body is decompressed
        once. With the values, what the last reading showed, where it looked at them all
        (detect need not look again)."""
        body = request_body(request, self.max_body)
        size = raw_size(request)
        most, past_most = _values_budget(size)
        values = min(_PROBE, most)
        while True:
            extraction = request_fields(
                request, self.max_body, self._quiet, max_fields=values, body=body, size=size,
                cut=_PROBED if values < most else past_most)
            if _PROBED not in extraction.limits:
                return extraction, None  # all of it (most requests, at once), or `most`
            budget = max(_FEWEST_IDENTIFIERS, size // _BYTES_PER_IDENTIFIER)
            # Long values left out: they are not memoised, and have a budget of their own.
            short = [item for item in extraction.fields if len(item.value) <= MAX_MEMO_CHARS]
            seen = self._found_in(short, self._screen(short, True))
            shown = len(_identifiers(*seen))
            if shown > budget:
                extraction.limits[extraction.limits.index(_PROBED)] = (
                    f"a request of {size} bytes held over {budget} identifiers (one per "
                    f"{_BYTES_PER_IDENTIFIER} bytes, {_FEWEST_IDENTIFIERS} at least) in its "
                    f"first {values} values: read no further")
                return extraction, seen if len(short) == len(extraction.fields) else None
            # An eighth more than their pace says: a batch as dense throughout stops next time.
            values = min(most, max(2 * values, budget * values * 9 // (8 * max(shown, 1))))

    def _resolve(self, host: str, path: str) -> Destination:
        """resolve, memoised: the same hosts and endpoints come back in every flow."""
        where = (host, path.partition("?")[0])
        destination = self._destinations.get(where)
        if destination is None:
            destination = resolve(self.policy, host, path, self.redactor.host)
            remember(self._destinations, where, destination, host + where[1])
        return destination

    def _page(self, flow: http.HTTPFlow, extraction: Extraction) -> str | None:
        response = flow.response
        if response is None or not response.raw_content:
            return None
        if not is_html(response):
            return None
        body = decompress(response.raw_content, header(response, b"content-encoding"),
                          self.max_body, extraction)
        return body.decode("utf-8", errors="replace") if body is not None else None

    def detect(self, extraction: Extraction, seen: "_Seen | None" = None) -> list[Finding]:
        """Every finding once: registry matches win over patterns, and a field-name guess
        only stands where nothing recognised the value itself. `seen`: what _found_in found
        in all of the extraction's values already."""
        fields, found, read, pieces_of = (
            self._found(extraction) if seen is None else (extraction.fields, *seen, {}))
        kept = _Kept(self._registry_findings(fields, found))
        columns: dict[tuple[str, str], _Column] = {}
        blank: set[str] | None = None  # found for the first array, if any
        for item, (_, by_value), by_key, shape in zip(fields, found, read, _shapes_of(fields),
                                                      strict=True):
            for finding in by_value:
                kept.keep(finding, item, shape)
            if pieces_of and id(item) in pieces_of:
                # What the key names is guessed of the whole text, once its pieces were read.
                whole, last = pieces_of[id(item)]
                if last and (label := self._label(item.location, item.key, shape)) is not None \
                        and (finding := self._field_names.finding(whole, label)) is not None:
                    kept.keep(finding, whole, shape)
            elif shape == item.key:  # not in an array
                label = self._label(item.location, item.key, shape)
                if label is not None and (
                        finding := self._field_names.finding(item, label)) is not None:
                    kept.keep(finding, item, shape)
            else:
                column = columns.get((item.location, shape))
                if column is None:
                    label = self._label(item.location, item.key, shape)
                    column = columns[(item.location, shape)] = _Column(label)
                    if blank is None:
                        blank = self._field_names.blanks({item.value for item in fields})
                if column.label is not None:
                    column.items.append(item)
                    if column.key is None:
                        column.key = self._first_of(item, column.label, kept)
            for finding in by_key:
                kept.keep(finding, item, shape)
        for column in columns.values():
            if column.key is not None and (count := self._count(column, kept, blank)) > 1:
                kept.findings[column.key] = replace(kept.findings[column.key], count=count)
        for key, count in kept.counts.values():
            if count > 1:
                kept.findings[key] = replace(kept.findings[key], count=count)
        return _per_shape(kept.findings.values())

    def _found(self, extraction: Extraction) -> tuple[list[Field], list[_ByValue],
                                                       list[Iterable[Finding]],
                                                       dict[int, tuple[Field, bool]]]:
        """The fields to keep findings of; in each, what the registry and the key-blind
        detectors found (_found_by_values) and what the key readers found; and the pieces
        among the fields (by id: the text each is a piece of, and whether it is its last).

        A text of _PIECES_FROM characters or more (a log, a mailing list) is looked at first
        in its first piece. Where that shows more than one identifier per
        _CHARS_PER_IDENTIFIER characters, the text is read a piece at a time, and only while
        the pieces read show fewer: each costs microseconds of Python (found, checked, kept,
        redacted), and a MB dense in them cost 100-170 ms where SPEC 4 allows 50. Past that,
        the flow is partial and keeps what the pieces read showed. Any other text is read
        whole, with the other values: a cut could split a name or an address."""
        fields = extraction.fields
        if max(map(len, map(_VALUE, fields)), default=0) < _PIECES_FROM:
            return (fields, *self._found_in(fields, self._screen(fields)), {})
        dense = {index: pieces for index, item in enumerate(fields)
                 if len(item.value) >= _PIECES_FROM
                 and (pieces := self._read_dense(item, extraction)) is not None}
        whole = [item for index, item in enumerate(fields) if index not in dense]
        found_whole, read_whole = map(iter, self._found_in(whole, self._screen(whole)))
        in_order: list[Field] = []  # the dense texts' pieces in their place
        found: list[_ByValue] = []
        read: list[Iterable[Finding]] = []
        pieces_of: dict[int, tuple[Field, bool]] = {}
        for index, item in enumerate(fields):
            if index not in dense:
                in_order.append(item)
                found.append(next(found_whole))
                read.append(next(read_whole))
                continue
            last = dense[index][-1][0]
            for piece, in_value, by_key in dense[index]:
                pieces_of[id(piece)] = (item, piece is last)
                in_order.append(piece)
                found.append(in_value)
                read.append(by_key)
        return in_order, found, read, pieces_of

    def _read_dense(self, item: Field, extraction: Extraction,
                    ) -> list[tuple[Field, _ByValue, Iterable[Finding]]] | None:
        """The pieces of a text dense in identifiers where it starts, read within its budget
        (_found); None if its first piece is not dense."""
        budget = len(item.value) // _CHARS_PER_IDENTIFIER
        read = []
        shown: set[tuple[str, str]] = set()  # an identifier a log repeats counts once
        for end, piece in _pieces(item):
            (in_value,), (by_key,) = self._found_in([piece], self._screen([piece], True))
            read.append((piece, in_value, by_key))
            shown |= _identifiers([in_value], [by_key])
            if len(read) == 1 and end < len(item.value) and (
                    len(shown) * _CHARS_PER_IDENTIFIER <= end):
                return None
            if len(shown) > budget and end < len(item.value):
                extraction.limit(
                    f"a text of {len(item.value)} characters held over {budget} identifiers"
                    f" (one per {_CHARS_PER_IDENTIFIER} characters): read to character {end}")
                break
        return read

    def _found_in(self, fields: list[Field], needs: dict[object, set[str]]) -> _Seen:
        """_found_by_values of the fields, and their key readers' findings (needs: _screen's)."""
        found = self._found_by_values(fields, needs)
        key_readers = [(d, needs.get(d)) for d in self.detectors
                       if d.reads_key and d is not self._field_names]
        if not needs:  # a small request, not screened
            return found, [self._found_by_key_readers(item, key_readers) for item in fields]
        # The values any of them looks at; None: every value.
        looked_at = None if any(need is None for _, need in key_readers) else set().union(
            *(need for _, need in key_readers))
        return found, [self._read_by_keys(item, key_readers)
                       if looked_at is None or item.value in looked_at else ()
                       for item in fields]

    def _read_by_keys(self, item: Field, key_readers: list[tuple[Detector, set[str] | None]],
                      ) -> list[Finding]:
        """The key readers' findings in a value of a screened request."""
        found: list[Finding] = []
        for detector, need in key_readers:
            if need is None:  # a detector without a hint: every value
                found += self._found_by_key_reader(detector, item)
            elif item.value in need:  # a batch's screened few: mostly new values
                found += detector.find(item)
        return found

    def _registry_findings(self, fields: list[Field], found: list[tuple[tuple[Finding, ...],
                                                                         tuple[Finding, ...]]],
                           ) -> dict[tuple[str, ...], Finding]:
        """The registry's findings, one per subject and category at each place: the full
        name rather than the first name inside it; then names sent as first and last name;
        then named only where what matched identifies the subject (KnownSubjects.attribute)."""
        findings: dict[tuple[str, ...], Finding] = {}
        known_in = list(map(itemgetter(0), found))  # in C: a batch's 20,000 fields hold a few
        for item, known in zip(compress(fields, known_in), filter(None, known_in), strict=True):
            for finding in known:
                key = (item.location, item.key, finding.category, finding.subject or "")
                kept = findings.get(key)
                if kept is None or len(finding.canonical) > len(kept.canonical):
                    findings[key] = finding
        for finding in self.known.find_split(fields):
            findings.setdefault((finding.field.location, finding.field.key, "name",
                                 finding.subject or ""), finding)
        # Who they name is a matter of the whole flow: a city names nobody, beside an email
        # it is that person's (SPEC 3.7).
        return self.known.attribute(findings)

    def _first_of(self, item: Field, label: Label, kept: "_Kept") -> tuple[str, ...] | None:
        """The elements of an array share their key's label: what the field names say of
        `batch[*].sku` is one finding, made for the first element that holds anything where
        no value was found, and counted in its column (_count, _per_shape)."""
        finding = self._field_names.finding(item, label)
        if finding is None:
            return None
        if item.key in kept.keys and ((item.location, item.key, label.category) in kept.places
                                      or (item.location, item.key, item.value) in kept.known):
            return None
        return kept.add(finding)

    def _count(self, column: "_Column", kept: "_Kept", blank: set[str]) -> int:
        """How many elements of the column hold something where no value was found (a
        decoded value has its element's key again: counted once)."""
        label = column.label
        assert label is not None and column.key is not None
        if label.form == FIELD_NAME:
            keys = {item.key for item in column.items if item.value not in blank}
        else:
            keys = {item.key for item in column.items if self._field_names.holds(item.value, label)}
        location, first = column.key[0], column.key[1]
        taken = {key for key in keys.intersection(kept.keys)
                 if key != first and (location, key, label.category) in kept.places}
        return len(keys) - len(taken)

    def _label(self, location: str, key: str, shape: str) -> Label | None:
        """label_of, memoised by shape (the label of `batch[12].sku` is that of every
        element's `sku`): a shape comes back in every element and every batch."""
        memo = self._labels.setdefault(location, {})
        label = memo.get(shape, _UNKNOWN)
        if label is _UNKNOWN:
            label = label_of(location, key)
            remember(memo, shape, label)
        return label  # type: ignore[return-value]

    def _screen(self, fields: list[Field], always: bool = False) -> dict[object, set[str]]:
        """For a request of many values (a batch of events), the values each detector (and
        the registry) need look at: one scan of them all for every hint finds the few they
        could report on. A detector without a hint, or a value that is not screened, is
        missing or included: every value it holds is looked at. needs[_SCREENED] holds the
        values the registry and the key-blind detectors were screened for: those not
        memoised (the others' findings are known)."""
        if not always and len(fields) < _SCREEN_FROM and sum(
                len(item.value) for item in fields) < _SCREEN_CHARS:
            return {}
        values = list(dict.fromkeys(map(_VALUE, fields)))
        joined = Joined(values)
        unscreened: set[str] = set()
        if not joined.text.isascii() or joined.text.count(SEPARATOR) != len(values) + 1:
            # Non-ASCII text changes length when its case changes: looked at one by one.
            unscreened = {v for v in values if not v.isascii() or SEPARATOR in v}
            joined = Joined([v for v in values if v not in unscreened])
        needs: dict[object, set[str]] = {
            owner: unscreened | hit for owner, hit in self._hints.scan(joined).items()}
        known = needs.setdefault(self.known, set(unscreened))
        known |= self.known.holding_phones(list(needs.pop(_PHONES, ())))
        if not self._spellings_screened:
            known.update(joined.hit(self.known.automaton_hits(joined.text)))
        needs[_SCREENED] = set(joined.values).difference(self._by_value)
        return needs

    def _found_by_values(self, fields: list[Field], needs: dict[object, set[str]],
                         ) -> list[tuple[tuple[Finding, ...], tuple[Finding, ...]]]:
        """_found_by_value of each field; a screened value that no hint hit has nothing."""
        screened = needs.get(_SCREENED)
        if not screened or any(d not in needs for d in self._value_readers):
            return [self._found_by_value(item, needs) for item in fields]  # (no hint: all)
        quiet = screened.difference(needs[self.known], *(needs[d] for d in self._value_readers))
        return [_NOTHING if item.value in quiet else self._found_by_value(item, needs)
                for item in fields]

    def _found_by_value(self, item: Field, needs: dict[object, set[str]] | None = None,
                        ) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
        """The registry's and the key-blind detectors' findings in `item`: they depend on the
        value alone, and the same cookie, id or email rides in many requests, so they are
        worked out once per value (short values). The registry's are given the field they are
        in; the detectors' are given theirs where they are kept (_Kept.keep), as most of an
        array's are only counted. `needs` (from _screen) leaves out the detectors that
        cannot find anything in it."""
        value = item.value
        cached = self._by_value.get(value)
        if cached is None:
            # Not screened if it was memoised then: the memo may have been emptied since.
            if needs and value in needs[_SCREENED]:
                known = value in needs[self.known]
                detectors = [d for d in self._value_readers
                             if (need := needs.get(d)) is None or value in need]
            else:
                known, detectors = True, self._value_readers
            if known or detectors:
                probe = Field("", "", value)
                cached = (tuple(self.known.find(probe)) if known else (),
                          tuple(f for d in detectors for f in d.find(probe)))
            else:
                cached = _NOTHING
            remember(self._by_value, value, cached)
        if not cached[0]:
            return cached
        return (tuple(f.at(item) for f in cached[0]), cached[1])

    def _found_by_key_readers(self, item: Field, key_readers: list[tuple[Detector, None]],
                              ) -> tuple[Finding, ...]:
        """Every key-reading detector's findings in `item` of a request not screened, in their
        order: memoised by key and value, which come back together in every request of a kind.
        One look-up per value, where each detector's memo by key class (_found_by_key_reader)
        cost a key_class call and a look-up, and missed where this misses."""
        pair = (item.key, item.value)
        cached = self._by_key.get(pair)
        if cached is None:
            cached = tuple(finding for detector, _ in key_readers
                           for finding in detector.find(item))
            remember(self._by_key, pair, cached, item.key + item.value)
        return cached

    def _found_by_key_reader(self, detector: Detector, item: Field) -> Iterable[Finding]:
        """A key-reading detector's findings in `item`, worked out once per value and what
        the detector reads of the key (whether it is a phone's), as _found_by_value does;
        their field may be another with that value and key class."""
        memo = self._by_key_class[detector]
        pair = (detector.key_class(item.key), item.value)
        cached = memo.get(pair)
        if cached is None:
            cached = tuple(detector.find(item))
            remember(memo, pair, cached, item.value)
        return cached

class _Kept:
    """The findings of one request, each once: a value at a place (location, key and
    category) once, and a field-name guess only at a place where no value was found (by
    any category, where the registry recognised that value: `distinct_id` holding a
    customer's id is that id, not a device id besides).

    A detector's findings in the elements of an array, which _per_shape makes one finding
    of their shape, are counted as they come (`counts`): only the first is kept. A contact
    import has thousands, which each cost a finding, then its merging."""

    def __init__(self, registry: dict[tuple[str, ...], Finding]) -> None:
        self.findings = registry  # one per subject at a place: two may share an identifier
        self.values = {(f.field.location, f.field.key, f.category, f.canonical)
                       for f in registry.values()}
        self.places = {(f.field.location, f.field.key, f.category) for f in registry.values()}
        self.keys = {f.field.key for f in registry.values()}
        """The keys of the places taken: few, where a batch has thousands of keys."""
        self.known = {(f.field.location, f.field.key, f.field.value) for f in registry.values()}
        """The values the registry recognised, where they are."""
        self.counts: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
        """For each shape's group (as _per_shape groups), its first finding's key in
        `findings` and how many were found."""

    def keep(self, finding: Finding, item: Field, shape: str) -> None:
        """Keep `finding`, found in `item` (made in another field with the same value,
        its field may not be `item`); `shape` is the item's (_shapes_of)."""
        place = (item.location, item.key, finding.category)
        value = (*place, finding.canonical)
        if value in self.values or (finding.detector == "field_name" and (
                place in self.places or (*place[:2], item.value) in self.known)):
            return
        # An element's finding is counted in its group; a subject's keeps a row of its own.
        group = None if shape == item.key or finding.subject is not None else (
            item.location, shape, finding.category, finding.detector, finding.form)
        self.values.add(value)
        self.places.add(place)
        self.keys.add(item.key)
        counted = self.counts.get(group) if group else None
        if counted is not None:
            self.counts[group] = (counted[0], counted[1] + finding.count)
            return
        # `value` is the finding's key in `findings`: its field's place is item's.
        self.findings[value] = finding if finding.field is item else finding.at(item)
        if group is not None:
            self.counts[group] = (value, finding.count)

    def add(self, finding: Finding) -> tuple[str, ...]:
        field = finding.field
        key = (field.location, field.key, finding.category, finding.canonical)
        self.findings[key] = finding
        self.values.add(key)
        self.places.add(key[:3])
        self.keys.add(field.key)
        return key


@dataclass(slots=True)
class _Column:
    """The values of one array shape (`batch[*].sku`) as far as field names go: its label,
    the finding made for the first that holds anything, and its elements."""

    label: Label | None
    key: tuple[str, ...] | None = None
    items: list[Field] = field(default_factory=list)


def settle_collector() -> None:
    """For a process of ours that only audits from now on (a replay's worker, the proxy's
    audit worker), never for one we share (mitmproxy's, a test run's). What it holds by now
    (modules, policy, registry index) lives as long as it does, and is left out of every
    collection. An audit makes no cycles; reading a flow does: mitmproxy's type checks raise
    and catch a TypeError, whose traceback holds the frames that build the flow. They are
    collected young (a replay's worker collects once per chunk instead: parallel.py), every
    5,000 allocations, while few live objects (a batch's fields) are young beside them: on
    issue 19's replay corpus, collections took 150 ms of a worker's 4.2 s this way, 250 ms
    every 20,000 allocations, and a tenth of it with Python's defaults, which also scan the
    whole heap every few batches. The older generations are
    collected as often as they were, every 400,000 and 8 million allocations: a big flow's
    many live objects reach them, and scanning them oftener may cost it more."""
    gc.freeze()
    gc.set_threshold(5_000, 80, 20)


def _pretty_host(request: http.Request) -> str:
    """request.pretty_host, whose parsing of the Host header (17 us) is memoised here: the
    same few hosts come back in every flow."""
    authority = request.host_header
    return _host_in(authority) if authority else request.host


@memoised_if_short(maxsize=4096)
def _host_in(authority: str) -> str:
    return url.parse_authority(authority, check=False)[0]


def _per_shape(findings: Iterable[Finding]) -> list[Finding]:
    """Findings at the same place of every element of an array (`batch[12].anonymousId`) as
    one finding of that shape (`batch[*].anonymousId`) with their count. A registry subject
    keeps a finding of its own, so who was sent stays exact."""
    shapes: dict[tuple[str | None, ...], Finding] = {}  # each group's first
    more: dict[tuple[str | None, ...], list[Finding]] = {}  # the groups of several: all
    for finding in findings:
        key = finding.field.key
        shape = _shape_of(finding.field.location, key)
        group = (finding.field.location, shape, finding.category, finding.detector, finding.form,
                 finding.subject, finding.canonical if shape == key else None)
        if group in shapes:
            more.setdefault(group, [shapes[group]]).append(finding)
        else:
            shapes[group] = finding
    merged = []
    for group, first in shapes.items():
        together = more.get(group)
        if together is not None or first.count > 1:  # counted already: see Auditor.detect
            first = replace(first, field=replace(first.field, key=group[1]),
                            count=sum(f.count for f in together or (first,)))
        merged.append(first)
    return merged


def _values_budget(size: int, what: str = "a request") -> tuple[int, str]:
    """The values `what` (a request, a WebSocket message, a recorded conversation) of `size`
    bytes is read to at most, and the limit its flow records where it holds more."""
    most = min(MAX_FIELDS, max(_FEWEST_VALUES, size // _BYTES_PER_VALUE))
    if most == MAX_FIELDS:  # every request's cap, in the words Extraction.full has for it
        return most, f"more than {MAX_FIELDS} values"
    return most, (f"{what} of {size} bytes held over {most} values (one per "
                  f"{_BYTES_PER_VALUE} bytes, {_FEWEST_VALUES} at least): read no further")


def _identifiers(found: Iterable[_ByValue], read: Iterable[Iterable[Finding]],
                 ) -> set[tuple[str, str]]:
    """The distinct identifiers that values showed, by category and canonical form: an
    address that the registry and the email detector both found is one."""
    return {(f.category, f.canonical) for (known, by_value), by_key in zip(found, read, strict=True)
            for f in (*known, *by_value, *by_key)}


def _pieces(item: Field) -> Iterator[tuple[int, Field]]:
    """A long text in pieces, each with where it ends: the first of about _PIECE characters,
    each next twice as long as the one before (each costs a screen and every detector's
    set-up: pieces of 16 KB made a MB 15 ms dearer). Cut after a line end, else at a space
    between two lower-case words (a phone number or an IBAN holds spaces: neither is cut; a
    name or an address may be, in a text dense in identifiers), in the next half piece; a
    text holding neither there is not cut further."""
    text = item.value
    start, size = 0, _PIECE
    while start < len(text):
        end = len(text)
        if start + size < end:
            cut = text.find("\n", start + size, start + size * 3 // 2)
            if cut < 0 and (gap := _WORD_GAP.search(text, start + size,
                                                    start + size * 3 // 2)) is not None:
                cut = gap.start() + 1
            if cut >= 0:
                end = cut + 1
        yield end, Field(item.location, item.key, text[start:end], item.layers)
        start, size = end, 2 * size


_WORD_GAP = re.compile(r"[a-z] [a-z]")


def _shapes_of(fields: list[Field]) -> list[str]:
    """_shape_of of each field. A batch has thousands of keys, which come back in the next
    batch (`batch[12].sku`): their shapes are memoised, and the new ones made in one pass."""
    keys = [item.key for item in fields]
    if "[" not in SEPARATOR.join(keys):
        return keys
    shapes = list(map(_shapes.get, keys))
    if None in shapes:
        new = list(dict.fromkeys(key for key, shape in zip(keys, shapes, strict=True)
                                 if shape is None))
        joined = SEPARATOR.join(new)
        made = (ARRAY_INDEX.sub("[*]", joined).split(SEPARATOR)
                if joined.count(SEPARATOR) == len(new) - 1 else  # a key with a SEPARATOR
                [array_shape(key) for key in new])
        found = dict(zip(new, made, strict=True))
        remember_all(_shapes, found)
        shapes = [found[key] if shape is None else shape
                  for key, shape in zip(keys, shapes, strict=True)]
    return [key if item.location in ("path", "query") else shape
            for item, key, shape in zip(fields, keys, shapes, strict=True)]


_shapes: dict[str, str] = {}


def _shape_of(location: str, key: str) -> str:
    """`batch[12].anonymousId` -> `batch[*].anonymousId`. Path and query keep their keys:
    a segment's index or a parameter's name is its own."""
    return key if location in ("path", "query") else array_shape(key)

