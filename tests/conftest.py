pytest_plugins = ["pytester"]

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from gdpr_audit.policy import Policy, load_policy

ROOT = Path(__file__).resolve().parents[1]
FLOW_TIME = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)

# A small policy for rule tests: fictitious organisation and people.
POLICY = """
version: 1
organization:
  name: Test Shop
  first_party: [shop.test, "*.shop.test"]
  endpoints:
    - {hosts: [stats.shop.test], purposes: [analytics]}
purposes:
  service: {consent_required: false}
  newsletter: {consent_required: true}
  transactional: {consent_required: false}
  analytics: {consent_required: true}
  payment: {consent_required: false}
recipients:
  - name: Mailer
    hosts: ["*.mailer.test"]
    purposes: [newsletter]
    data: [email, name]
    country: FR
    endpoints:
      - {paths: ["/smtp/*"], purposes: [transactional]}
  - name: PayCo
    hosts: [api.payco.test]
    purposes: [payment]
    data: [email, name, payment_card]
    country: US
    transfer: dpf
  - name: FarAway
    hosts: [api.faraway.test]
    purposes: [payment]
    data: [email]
    country: IN
    transfer: none
consent:
  unknown_subject: deny
subjects:
  - id: alice
    identifiers: {email: alice.martin@example.org, phone: "+33612345601",
                  first_name: Alice, last_name: Martin, customer_id: C-9001}
    consents:
      newsletter: {granted: 2026-01-01T00:00:00Z}
      analytics: {granted: 2026-01-01T00:00:00Z, withdrawn: 2026-03-01T00:00:00Z}
  - id: bob
    identifiers: {email: bob.durand@example.org, iban: FR7630006000011234567890189}
  - id: carol
    identifiers: {email: carol.petit@example.org}
    consents:
      newsletter: {granted: 2026-01-01T00:00:00Z}
    erasure_requested: 2026-05-01T00:00:00Z
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    return write(tmp_path / "policy.yaml", POLICY)


@pytest.fixture
def policy(policy_file: Path) -> Policy:
    return load_policy(policy_file)


def make_flow(url: str, method: str = "GET", content: bytes | str = b"",
              headers: dict[str, str] | None = None, at: datetime = FLOW_TIME) -> http.HTTPFlow:
    """A real mitmproxy flow; the URL is set explicitly (treq defaults to http://address:22)."""
    flow = tflow.tflow(req=tutils.treq(method=method.encode(), content=b""), resp=True)
    flow.request.url = url
    flow.request.headers.clear()
    flow.request.headers["host"] = flow.request.host
    for name, value in (headers or {}).items():
        flow.request.headers[name] = value
    flow.request.content = content.encode() if isinstance(content, str) else content
    flow.request.timestamp_start = at.timestamp()
    return flow
