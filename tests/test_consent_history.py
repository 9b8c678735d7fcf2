"""`missing-consent` says what the registry's consent history says (issue 20, point 9), and
`forget` leaves no category of the forgotten person on violations kept for others.

Testing strategy: the small policy of conftest plus people whose newsletter consent was
never given, withdrawn on a date, or given only after the flow (FLOW_TIME is 2026-06-15).
The messages are checked through a real audit (a parametrize table), then through the console
script: replay a capture, `show` the violation, `forget` one of two people in one request."""

import json
import sqlite3
from pathlib import Path

import pytest
from mitmproxy import io

from conftest import POLICY, make_flow, write
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import load_policy
from test_cli import run

PEOPLE = """
  - id: dana
    identifiers: {email: dana.roux@example.org}
    consents:
      newsletter: [{granted: 2026-01-10T09:00:00Z}, {withdrawn: 2026-03-01T00:00:00Z}]
  - id: erin
    identifiers: {email: erin.blanc@example.org}
  - id: frank
    identifiers: {email: frank.noir@example.org}
    consents:
      newsletter: {granted: 2026-07-01T08:00:00Z}
  - id: gina
    identifiers: {email: gina.vert@example.org}
    consents:
      newsletter: {granted: 2026-01-10T09:00:00Z, withdrawn: 2026-02-01T00:00:00Z}
      analytics: {granted: 2026-08-01T00:00:00Z}
"""


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    return write(tmp_path / "policy.yaml", POLICY.rstrip() + "\n" + PEOPLE)


def newsletter_flow(*emails: str):
    body = {"contacts": [{"email": e} for e in emails]}
    return make_flow("https://eu.mailer.test/contacts", "POST", json.dumps(body),
                     {"content-type": "application/json"})


@pytest.mark.parametrize("email, message", [
    ("dana.roux@example.org", "dana withdrew consent to newsletter on 2026-03-01"),
    ("erin.blanc@example.org", "erin never consented to newsletter"),
    ("frank.noir@example.org",
     "frank consented to newsletter only after this flow, on 2026-07-01"),
    ("gina.vert@example.org", "gina withdrew consent to newsletter on 2026-02-01"),
])
def test_missing_consent_says_what_the_history_says(policy_path: Path, email: str,
                                                    message: str) -> None:
    audit = Auditor(load_policy(policy_path)).audit(newsletter_flow(email))
    [violation] = [v for v in audit.violations if v.rule == "missing-consent"]
    assert violation.message == message
    assert "had not consented" not in violation.message


def test_a_first_party_endpoint_names_each_state(policy_path: Path) -> None:
    flow = make_flow("https://stats.shop.test/collect", "POST",
                     json.dumps({"email": "gina.vert@example.org"}),
                     {"content-type": "application/json"})
    audit = Auditor(load_policy(policy_path)).audit(flow)
    [violation] = [v for v in audit.violations if v.rule == "missing-consent"]
    assert violation.message == "gina consented to analytics only after this flow, on 2026-08-01"


def capture(path: Path, *flows) -> Path:
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for flow in flows:
            writer.add(flow)
    return path


def test_show_says_withdrew_consent_on_the_date(policy_path: Path, tmp_path: Path) -> None:
    capture(tmp_path / "c.flow", newsletter_flow("dana.roux@example.org"))
    db = tmp_path / "audit.db"
    result = run("replay", str(tmp_path / "c.flow"), "--policy", str(policy_path),
                 "--db", str(db), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    with sqlite3.connect(db) as conn:
        [(violation_id,)] = conn.execute(
            "select id from violations where rule = 'missing-consent'").fetchall()
    shown = run("show", str(violation_id), "--db", str(db), "--policy", str(policy_path),
                cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "dana withdrew consent to newsletter on 2026-03-01" in " ".join(shown.stdout.split())
    assert "had not consented" not in shown.stdout


def test_forget_leaves_none_of_the_persons_categories_on_kept_violations(
        policy_path: Path, tmp_path: Path) -> None:
    # bob's IBAN and erin's email to an undeclared tracker: both rest on both people
    body = {"user": {"email": "erin.blanc@example.org", "iban": "FR7630006000011234567890189",
                     "contact": "bob.durand@example.org"}}
    capture(tmp_path / "c.flow", make_flow("https://collect.adnetwork.test/v1/e", "POST",
                                           json.dumps(body), {"content-type": "application/json"}))
    db = tmp_path / "audit.db"
    result = run("replay", str(tmp_path / "c.flow"), "--policy", str(policy_path),
                 "--db", str(db), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    with sqlite3.connect(db) as conn:
        before = dict(conn.execute("select rule, categories from violations"))
    assert before["undeclared-recipient"] == "email, iban"
    result = run("forget", "bob.durand@example.org", "--db", str(db), "--policy",
                 str(policy_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(db) as conn:
        kept = {rule: (category, categories, subjects, message) for rule, category, categories,
                subjects, message in conn.execute(
                    "select rule, category, categories, subjects, message from violations")}
    assert "sensitive-data" not in kept  # it rested on bob's IBAN alone
    category, categories, subjects, message = kept["undeclared-recipient"]
    assert (category, categories, subjects) == ("email", "email", "erin")
    assert "iban" not in message and "bob" not in message and message.startswith("email sent to")
    exported = run("export", "--db", str(db), "--format", "json", cwd=tmp_path)
    document = json.loads(exported.stdout)
    assert "iban" not in json.dumps(document["violations"]) and "bob" not in exported.stdout
