"""A flow's budget of decoded characters and of work (issue 19 point 1, SPEC 4).

Testing strategy: the hostile request of the issue (200 values, each base64(gzip(1 MB of
text)), 272 KB on the wire) through request_fields and the real Auditor: it must stop
decoding within its budget, be logged `partial` with that reason, keep what it found
before, and leave the process's memos bounded in characters, so that the next ordinary
request is audited as usual. Costs are measured in bench/body_cost.py, never asserted here."""

import base64
import gzip
import hashlib
import itertools
import json
import random
import re
from dataclasses import replace
from urllib.parse import quote, urlencode

import pytest
from mitmproxy import http, websocket
from mitmproxy.test import tflow

from conftest import FLOW_TIME, make_flow
from gdpr_audit import audit, fields
from gdpr_audit.audit import Auditor
from gdpr_audit.fields import MAX_VALUE_CHARS, decode_budget, raw_size, request_fields
from gdpr_audit.policy import Subject, load_policy
from test_cli import ROOT

EMAIL = "marie.dupont@example.fr"  # cust-001 in policies/subjects.yaml
URL = "https://collect.adnetwork-example.com/e"
JSON = {"content-type": "application/json"}
MB = 1 << 20


@pytest.fixture(scope="module")
def auditor() -> Auditor:
    return Auditor(load_policy(ROOT / "policies"))


def hostile(count: int = 200) -> bytes:
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20_000)[:MB - 8]
    values = {"email": EMAIL} | {
        f"v{n}": base64.b64encode(gzip.compress(f"{text}{n:08d}".encode())).decode()
        for n in range(count)}
    return json.dumps(values).encode()


def test_budget_is_8_times_the_request_within_bounds() -> None:
    assert decode_budget(1000) == 8000
    assert decode_budget(100 * MB) == 100 * MB  # never less than the request itself
    assert decode_budget(10 * MB) == 64 * MB


def test_200_values_of_a_megabyte_each_stop_at_the_budget(auditor: Auditor) -> None:
    flow = make_flow(URL, "POST", hostile(), JSON)
    extraction = request_fields(flow.request, 10 * MB)
    assert extraction.budget == decode_budget(raw_size(flow.request)) < 8 * MB
    # One value may cross it: it is decoded before its size is known.
    assert extraction.decoded <= extraction.budget + MAX_VALUE_CHARS + 1
    assert any("decoding stopped" in reason for reason in extraction.limits)
    result = auditor.audit(flow)
    assert result.status == "partial"
    assert any("decoding stopped" in reason for reason in result.limits)
    assert any(f.subject == "cust-001" and f.category == "email" for f in result.findings)


def test_decode_memo_is_bounded_in_characters(auditor: Auditor) -> None:
    for _ in range(3):  # as the proxy's worker saw three such requests
        auditor.audit(make_flow(URL, "POST", hostile(), JSON))
    held = fields._held.get(id(fields._decoded), 0)
    assert held <= fields.MAX_MEMO_HELD
    assert sum(len(d) for found in fields._decoded.values() for _, d in found) <= held
    # and the next ordinary request still finds a registry email, encoded
    encoded = base64.b64encode(json.dumps({"em": EMAIL}).encode()).decode()
    result = auditor.audit(make_flow(f"{URL}?ud={encoded}"))
    assert result.status == "audited"
    assert any(f.subject == "cust-001" and f.category == "email" for f in result.findings)


def test_many_small_decodings_are_work_within_a_budget() -> None:
    token = base64.b64encode(b'{"k": "v"}').decode()
    body = json.dumps([token if n % 2 else f"x{n}" for n in range(10)]).encode()
    extraction = request_fields(make_flow(URL, "POST", body, JSON).request, 10 * MB)
    assert extraction.decodings >= 5 and not extraction.limits


def test_a_few_long_values_are_screened_at_c_speed(auditor: Auditor) -> None:
    """Point 3: what a hostile request decodes to (a few values of a MB) goes through one
    scan of the hints, not a pass of every detector each: a quiet value is looked at by none."""
    from gdpr_audit.fields import Extraction, Field
    quiet = "Lorem ipsum dolor sit amet " * 4_000
    fields = [Field("body", f"v{n}", quiet + str(n)) for n in range(3)]
    needs = auditor._screen(fields)
    assert needs, "not screened: every detector would read 300 KB in Python"
    assert all(not needs[d] for d in auditor._value_readers if d in needs)
    assert not auditor.detect(Extraction(fields=fields))


def test_short_values_past_the_budget_are_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short value (a 1.4 KB token that inflates to a MB) is decoded once, and none after
    the budget is spent: the JSON walk used to decode every short value before asking the
    budget, and a value it found encoded a second time."""
    tokens = [base64.b64encode(gzip.compress(f"{'a' * 1_000_000}{n:08d}".encode())).decode()
              for n in range(50)]
    assert all(len(token) <= fields.MAX_MEMO_CHARS for token in tokens)
    calls: list[str] = []
    decode = fields._decode
    monkeypatch.setattr(fields, "_decode", lambda value: calls.append(value) or decode(value))
    body = json.dumps({f"v{n}": token for n, token in enumerate(tokens)}).encode()
    extraction = request_fields(make_flow(URL, "POST", body, JSON).request, 10 * MB)
    assert any("decoding stopped" in reason for reason in extraction.limits)
    assert [value for value in calls if value in tokens] == tokens[:1]


def test_a_text_dense_in_identifiers_is_read_until_its_budget(auditor: Auditor) -> None:
    """A mailing list of 10,000 addresses in 360 KB: one per 36 characters where the budget
    is one per 256. Reading stops after a piece past the budget, the flow is partial with
    the reason, and what the pieces read showed is kept: the first lines, the registry's
    subject among them, not the last."""
    rows = [f"{n},client{n}@example{n % 50}.fr,Jean,Dupont{n}" for n in range(10_000)]
    rows[3] = f"3,{EMAIL},Marie,Dupont"
    text = "\n".join(rows)
    result = auditor.audit(make_flow("https://api.example-mail.com/lists/import", "POST",
                                     text.encode(), {"content-type": "text/csv"}))
    budget = len(text) // audit._CHARS_PER_IDENTIFIER
    assert result.status == "partial"
    [reason] = [r for r in result.limits if "identifiers" in r]
    read_to = int(reason.rpartition(" ")[2])
    assert reason.startswith(f"a text of {len(text)} characters held over {budget} identifiers")
    emails = {f.canonical for f in result.findings if f.category == "email"}
    assert EMAIL in emails and "client0@example0.fr" in emails
    assert "client9999@example49.fr" not in emails
    # Every address before where reading stopped, none after it.
    assert emails - {EMAIL} == {f"client{n}@example{n % 50}.fr" for n, row in enumerate(rows)
                                if n != 3 and text.index(row) + len(row) <= read_to}
    assert budget < len(emails) < 4 * budget  # stopped within a piece of the budget
    assert any(f.subject == "cust-001" for f in result.findings)


def _texts(seed: int) -> list[str]:
    """Long texts sparse in identifiers of every kind (the registry's among them, plain,
    encoded and hashed, names and addresses that a cut would split), some in lines and some
    in one line."""
    rng = random.Random(seed)
    registry = [EMAIL, "+33612345678", "+33 6 12 34 56 78", "06 12 34 56 78", "Marie Dupont",
                "marie dupont", "Marie\nDupont", "C-1001", "12 rue de la Paix, 75002 Paris",
                "12 rue de la Paix,\n75002 Paris", "Jean-Luc Lefèvre", "Lefèvre",
                "marie.dupont%40example.fr", hashlib.sha256(EMAIL.encode()).hexdigest(),
                base64.b64encode(b"amelie.rousseau@example.org").decode()]
    others = ["user{}@mail.com", "+33 6 {0:02d} 45 67 89", "FR76 3000 6000 0112 3456 7890 189",
              "4111 1111 1111 1111", "81.{0}.12.7", "1 85 05 78 006 084 36", "+4915{0:09d}"]
    words = "commande client livraison paiement erreur session panier 200 GET é à".split()
    texts = []
    for n in range(6):
        lines, size = [], 0
        while size < 70_000 + 40_000 * n:
            line = " ".join(rng.choice(words) for _ in range(rng.randrange(3, 30)))
            if rng.random() < 0.12:
                line += " " + (rng.choice(registry) if rng.random() < 0.5 else
                               rng.choice(others).format(rng.randrange(100))) + rng.choice(" ,;")
            lines.append(line)
            size += len(line) + 1
        texts.append((" " if n % 3 == 0 else "\n").join(lines))
    return texts


@pytest.mark.parametrize("seed", [1, 2])
def test_a_long_text_sparse_in_identifiers_is_read_whole(
        auditor: Auditor, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its first piece says it is not dense: it shows what it shows without any piece."""
    def found(text: str, key: str) -> set[tuple[str, ...]]:
        result = auditor.audit(make_flow(URL, "POST", json.dumps({key: text}).encode(), JSON))
        assert result.status == "audited"
        return {(f.detector, f.category, f.canonical, f.subject or "", f.field.key, f.form,
                 str(f.count)) for f in result.findings}

    texts = _texts(seed)
    probed = [found(text, f"log{n}") for n, text in enumerate(texts)]
    monkeypatch.setattr(audit, "_PIECES_FROM", 10 ** 9)
    whole = [found(text, f"log{n}") for n, text in enumerate(texts)]
    assert all(any(f[3] for f in found_in) for found_in in whole)  # a subject in each
    assert probed == whole


def _around_the_first_cut(middle: str) -> str:
    """`middle` where the first piece of a sparse text ends, after 16,384 characters."""
    filler = "ABCD\n" * (audit._PIECE // 5)
    return filler[:audit._PIECE - 8] + middle + filler * 4


@pytest.mark.parametrize("written", ["12 rue de la Paix,\n75002 Paris", "marie dupont",
                                     "Marie\nDupont"])
def test_a_name_or_an_address_across_the_first_cut_is_found(auditor: Auditor,
                                                             written: str) -> None:
    text = _around_the_first_cut(f" {written} ")
    result = auditor.audit(make_flow(URL, "POST", json.dumps({"log": text}).encode(), JSON))
    assert result.status == "audited"
    assert {f.subject for f in result.findings if f.part == ""} == {"cust-001"}


def test_a_long_text_sent_again_is_read_with_each_key(auditor: Auditor) -> None:
    """A national number is a phone's under a phone's key only: the copy under `notes` holds
    none, the one under `mobile` does, whichever comes first."""
    text = _around_the_first_cut(" 0698123457 ")
    for keys in (("notes", "mobile"), ("mobile", "notes")):
        body = json.dumps(dict.fromkeys(keys, text)).encode()
        phones = {f.field.key for f in auditor.audit(make_flow(URL, "POST", body, JSON)).findings
                  if f.category == "phone"}
        assert phones == {"mobile"}


def test_a_log_repeating_one_identifier_is_within_its_budget(auditor: Auditor) -> None:
    text = f"{EMAIL}\n" * 3000
    result = auditor.audit(make_flow(URL, "POST", json.dumps({"log": text}).encode(), JSON))
    assert result.status == "audited"
    assert any(f.subject == "cust-001" for f in result.findings)


def test_pieces_are_cut_at_line_ends_or_between_words() -> None:
    text = ("word " * 5000 + "\n") * 40 + "+33 6 12 34 56 78 " * 8000 + "jean dupont " * 9000
    pieces = list(audit._pieces(fields.Field("body", "", text)))
    assert "".join(piece.value for _, piece in pieces) == text
    assert [end for end, _ in pieces] == list(itertools.accumulate(
        len(piece.value) for _, piece in pieces))
    assert len(pieces) > 4
    for _, piece in pieces[:-1]:
        assert piece.value.endswith(("\n", "jean ", "word "))


def test_a_long_text_sent_twice_is_found_in_both_places(auditor: Auditor) -> None:
    rows = [f"{n},client{n}@example{n % 50}.fr" for n in range(4000)]
    text = "\n".join([f"0,{EMAIL}", *rows])  # dense: read in pieces, each copy
    flow = make_flow(URL, "POST", json.dumps({"first": text, "again": text}).encode(), JSON)
    result = auditor.audit(flow)
    assert result.status == "partial"
    found = {(f.field.key, f.category, f.subject, f.canonical) for f in result.findings}
    for key in ("first", "again"):
        assert (key, "email", "cust-001", EMAIL) in found
        assert (key, "email", None, "client0@example0.fr") in found


ERASED = "sophie.martin@example.com"  # cust-005: erasure requested before FLOW_TIME
MAILING = "https://api.example-mail.com/lists/batch"


def _members(count: int, at: dict[int, str]) -> bytes:
    """A mailing list's batch: `count` members, each an address and a status; `at` puts a
    registry subject's address at that index."""
    return json.dumps({"members": [
        {"email": at.get(n, f"client{n}@example{n % 50}.fr"), "status": "subscribed"}
        for n in range(count)]}).encode()


def test_a_batch_dense_in_identifiers_is_read_until_its_budget(
        auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    """9,500 addresses in 590 KB, one per 60 bytes where the budget is one per 512 (about
    1,150): reading stops past the budget, the flow is partial with the reason, and it keeps
    what the values read showed (the subject among the first, not the one at the end) and
    its verdicts."""
    body = _members(9_500, {3: EMAIL, 9_499: ERASED})
    result = auditor.audit(make_flow(MAILING, "POST", body, JSON))
    assert result.status == "partial"
    [reason] = [r for r in result.limits if "identifiers" in r]
    budget = int(re.fullmatch(r"a request of \d+ bytes held over (\d+) identifiers .*",
                              reason).group(1))
    assert abs(budget - len(body) / 512) < 2
    [addresses] = [f for f in result.findings if f.category == "email" and not f.subject]
    assert budget < addresses.count < 2 * budget
    assert {f.subject for f in result.findings if f.subject} == {"cust-001"}
    assert "undeclared-recipient" in {v.rule for v in result.violations}
    # What the last reading showed is what looking at its values again finds.
    extraction, seen = auditor._extracted(make_flow(MAILING, "POST", body, JSON).request)
    assert seen is not None and auditor.detect(extraction, seen) == auditor.detect(extraction)

    monkeypatch.setattr(audit, "_BYTES_PER_IDENTIFIER", 1)  # the same batch, unbudgeted
    monkeypatch.setattr(audit, "_BYTES_PER_VALUE", 1)
    whole = auditor.audit(make_flow(MAILING, "POST", body, JSON))
    assert whole.status == "audited"
    assert {f.subject for f in whole.findings if f.subject} == {"cust-001", "cust-005"}
    assert "erased-subject" in {v.rule for v in whole.violations}


def _events(count: int, last: dict[str, str], first: dict[str, object] | None = None) -> bytes:
    """`count` product views, `last` in the last one, `first` before them all."""
    events = [{"event": "product_viewed", "sku": f"SKU-{n:06d}", "page": f"/p/{n}"}
              for n in range(count)]
    events[-1] |= last
    return json.dumps(({"profile": first} if first else {}) | {"batch": events}).encode()


@pytest.mark.parametrize("where", ["query", "profile"])
def test_identifiers_at_the_start_of_a_sparse_batch_do_not_stop_its_reading(
        auditor: Auditor, where: str) -> None:
    """A batch whose first values hold ten identifiers, then 3,600 that hold none (within
    its budget of values), then an erased subject's address: it holds fewer identifiers
    than its budget, so it is read to the end, however dense its start."""
    people = [f"first{n}@example{n}.fr" for n in range(10)]
    query = "?" + "&".join(f"to{n}={quote(p)}" for n, p in enumerate(people))
    body = _events(1_200, {"email": ERASED},
                   {f"contact{n}": p for n, p in enumerate(people)} if where == "profile" else None)
    result = auditor.audit(make_flow("https://api.segment.io/v1/batch"
                                     + (query if where == "query" else ""), "POST", body, JSON))
    assert result.status == "audited", result.limits
    assert "cust-005" in {f.subject for f in result.findings}
    assert "erased-subject" in {v.rule for v in result.violations}


def test_a_sync_of_registry_subjects_counts_each_address_once(tmp_path) -> None:
    """800 registry subjects' addresses in 50 KB: 800 identifiers, which the registry and the
    email detector both find, against a budget of 1,024: all read, all named."""
    policy = load_policy(ROOT / "policies")
    people = tuple(Subject(f"member-{n}", (("email", f"member{n}@example.org"),), {})
                   for n in range(800))
    members = replace(policy, subjects=policy.subjects + people)
    body = json.dumps({"contacts": [{"email": f"member{n}@example.org", "status": "active"}
                                    for n in range(800)]}).encode()
    result = Auditor(members).audit(make_flow(MAILING, "POST", body, JSON))
    assert result.status == "audited", result.limits
    assert len({f.subject for f in result.findings if f.subject}) == 800


def test_a_compressed_batch_is_budgeted_by_what_it_weighs_on_the_wire(auditor: Auditor) -> None:
    """20,000 addresses gzipped into 52 KB, a hundred per 512 bytes on the wire: the request
    is given its floor of 1,024 identifiers, not one per 512 bytes of its 1.2 MB once
    decompressed."""
    flow = make_flow(MAILING, "POST", b"", JSON | {"content-encoding": "gzip"})
    flow.request.raw_content = gzip.compress(_members(20_000, {3: EMAIL}))
    assert len(flow.request.raw_content) < 60_000
    result = auditor.audit(flow)
    assert result.status == "partial"
    [reason] = [r for r in result.limits if "identifiers" in r]
    assert "held over 1024 identifiers" in reason
    [addresses] = [f for f in result.findings if f.category == "email" and not f.subject]
    assert 1024 <= addresses.count <= 2 * 1024
    assert {f.subject for f in result.findings if f.subject} == {"cust-001"}


def test_a_small_batch_is_read_whole(auditor: Auditor) -> None:
    """1,000 addresses in 50 KB, a vendor API's largest batch: more values than the first
    reading takes, fewer identifiers than any request may hold."""
    result = auditor.audit(make_flow(MAILING, "POST", _members(1_000, {999: ERASED}), JSON))
    assert result.status == "audited"
    [addresses] = [f for f in result.findings if f.category == "email" and not f.subject]
    assert addresses.count == 999
    assert "erased-subject" in {v.rule for v in result.violations}


def test_a_form_dense_in_identifiers_is_read_until_its_budget(auditor: Auditor) -> None:
    """15,000 addresses as form fields: read, and parsed, only to past the budget."""
    pairs = [(f"e{n}", EMAIL if n == 2 else f"client{n}@example{n % 50}.fr") for n in range(15_000)]
    result = auditor.audit(make_flow(MAILING, "POST", urlencode(pairs),
                                     {"content-type": "application/x-www-form-urlencoded"}))
    assert result.status == "partial"
    assert any("identifiers" in r for r in result.limits)
    assert "cust-001" in {f.subject for f in result.findings}
    keys = {f.field.key for f in result.findings if f.category == "email"}
    assert "e2" in keys and "e14999" not in keys


def test_a_batch_of_many_values_is_read_to_its_budget_of_values(
        auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 product views (9,000 values) in 200 KB, a registry subject's address in the
    first and an erased subject's in the last: none holds an identifier but those two, and the
    request is read to its floor of 4,096 values. The flow is partial, says why, and keeps
    what those values showed."""
    events = json.loads(_events(3_000, {"email": ERASED}))
    events["batch"][0]["email"] = EMAIL
    body = json.dumps(events).encode()
    flow = make_flow("https://api.segment.io/v1/batch", "POST", body, JSON)
    assert _on_the_wire(flow) // 512 < 4096
    result = auditor.audit(flow)
    assert result.status == "partial"
    assert (f"a request of {_on_the_wire(flow)} bytes held over 4096 values (one per 512 bytes,"
            " 4096 at least): read no further") in result.limits
    assert {f.subject for f in result.findings if f.subject} == {"cust-001"}
    monkeypatch.setattr(audit, "_FEWEST_VALUES", 20_000)  # the same batch, read whole
    whole = auditor.audit(make_flow("https://api.segment.io/v1/batch", "POST", body, JSON))
    assert whole.status == "audited", whole.limits
    assert "erased-subject" in {v.rule for v in whole.violations}


def test_a_heavy_request_is_given_one_value_per_512_bytes(auditor: Auditor) -> None:
    """2.8 MB of product views: about 5,500 values, more than the floor."""
    flow = make_flow("https://api.segment.io/v1/batch", "POST", _events(40_000, {}), JSON)
    result = auditor.audit(flow)
    [reason] = [r for r in result.limits if "values" in r]
    most = int(re.search(r"held over (\d+) values", reason).group(1))
    assert most == _on_the_wire(flow) // 512 > 4096
    assert len(result.findings) > 0  # its field names were read (an event's page, its sku)


def _on_the_wire(flow) -> int:  # type: ignore[no-untyped-def]
    """The request line's target, the headers (name, value, ": " and CRLF) and the body."""
    request = flow.request
    return (len(request.path) + sum(len(k) + len(v) + 4 for k, v in request.headers.fields)
            + len(request.raw_content))


def test_a_websocket_message_of_many_values_is_read_to_its_budget(
        auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chat client's message of 3,000 events (9,000 values, 200 KB), a registry subject's
    address in the first: read to its floor of 4,096 values, like a request."""
    events = json.loads(_events(3_000, {"email": ERASED}))
    events["batch"][0]["email"] = EMAIL
    message = json.dumps(events).encode()
    flow = make_flow("wss://chat.example-support.com/ws", "GET")
    result = auditor.audit_message(flow, message)
    assert result.status == "partial"
    assert (f"a message of {len(message)} bytes held over 4096 values (one per 512 bytes, 4096"
            " at least): read no further") in result.limits
    assert {f.subject for f in result.findings if f.subject} == {"cust-001"}
    monkeypatch.setattr(audit, "_FEWEST_VALUES", 20_000)  # the same message, read whole
    assert "erased-subject" in {v.rule for v in auditor.audit_message(flow, message).violations}


def test_a_recorded_conversation_shares_one_budget_of_values(
        auditor: Auditor, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two client messages of 3,000 events each (18,000 values, 400 KB) in a recorded flow:
    read, together, to the floor of 4,096 values."""
    first = json.loads(_events(3_000, {}))
    first["batch"][0]["email"] = EMAIL
    sent = [json.dumps(first).encode(), _events(3_000, {"email": ERASED})]
    flow = tflow.twebsocketflow(messages=False)
    flow.request.host = "chat.example-support.com"
    flow.request.timestamp_start = FLOW_TIME.timestamp()
    for content in sent:
        flow.websocket.messages.append(websocket.WebSocketMessage(1, True, content))
    flow.websocket.messages.append(websocket.WebSocketMessage(1, False, _events(3_000, {})))
    result = auditor.audit(flow)
    assert result.status == "partial"
    [reason] = [r for r in result.limits if "values" in r]
    assert re.fullmatch(r"a conversation of \d+ bytes held over 4096 values \(one per 512 "
                        r"bytes, 4096 at least\): read no further", reason)
    assert {f.subject for f in result.findings if f.subject} == {"cust-001"}
    monkeypatch.setattr(audit, "_FEWEST_VALUES", 20_000)  # the same conversation, read whole
    whole = auditor.audit(flow)
    assert whole.status == "audited", whole.limits
    assert "erased-subject" in {v.rule for v in whole.violations}


def test_a_request_of_as_many_values_as_its_budget_is_read_whole(auditor: Auditor) -> None:
    """4,096 values in all (the floor), then one more: only the second is partial."""
    def flow(values: int) -> http.HTTPFlow:
        return make_flow(MAILING, "POST", json.dumps([f"x{n}" for n in range(values)]), JSON)

    around_the_body = len(auditor._extracted(flow(0).request)[0].fields)  # path, headers
    assert auditor.audit(flow(4096 - around_the_body)).status == "audited"
    assert auditor.audit(flow(4097 - around_the_body)).status == "partial"
