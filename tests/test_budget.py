"""A flow's budget of decoded characters and of work (issue 19 point 1, SPEC 4).

Testing strategy: the hostile request of the issue (200 values, each base64(gzip(1 MB of
text)), 272 KB on the wire) through request_fields and the real Auditor: it must stop
decoding within its budget, be logged `partial` with that reason, keep what it found
before, and leave the process's memos bounded in characters, so that the next ordinary
request is audited as usual. Costs are measured in bench/body_cost.py, never asserted here."""

import base64
import gzip
import json

import pytest

from conftest import make_flow
from gdpr_audit import fields
from gdpr_audit.audit import Auditor
from gdpr_audit.fields import MAX_VALUE_CHARS, decode_budget, raw_size, request_fields
from gdpr_audit.policy import load_policy
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
