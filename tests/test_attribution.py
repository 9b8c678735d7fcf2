"""When a registry match names a subject (SPEC 3.7): a discriminating identifier, or a
combination only that subject has; a shared value names nobody unless it attaches to a
subject named in the same flow; common tokens match nothing.

Testing strategy: a generated registry of 1,000 fictitious people who all live in Paris and
share ten birth dates, plus a few named by hand whose first and last names are each shared
but whose combination is not. Each flow is audited end to end against a policy that makes
`missing-consent` and `erased-subject` fire for anyone named, so a wrongly named person shows
up as a violation. Catch table: what must name exactly one subject; avoid table: what must
name nobody.
"""

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from conftest import make_flow, write
from gdpr_audit.audit import Auditor
from gdpr_audit.detectors import KnownSubjects
from gdpr_audit.fields import Field
from gdpr_audit.policy import Subject, load_policy
from gdpr_audit.policy_lint import check_policy

POLICY = """
version: 1
organization:
  name: Test Shop
  first_party: [shop.test]
purposes:
  analytics: {consent_required: true}
recipients:
  - name: Tracker
    hosts: [collect.tracker.test]
    purposes: [analytics]
    data: [email, name, postal_address, birth_date, customer_id]
    country: FR
consent:
  unknown_subject: deny
subjects:
  - id: placeholder
    identifiers: {email: placeholder@example.org}
"""
DATES = [f"19{70 + n}-0{1 + n % 9}-1{n}" for n in range(10)]
ERASED = datetime(2026, 1, 1, tzinfo=UTC)


def parisian(i: int) -> Subject:
    # Every tenth person asked for erasure: naming them wrongly makes `erased-subject`.
    return Subject(f"gen-{i:04d}", (
        ("email", f"person{i:04d}@example.org"),
        ("postal_address", f"{i} rue de Rivoli, 75001 Paris"),
        ("birth_date", DATES[i % len(DATES)]),
    ), {}, ERASED if i % 10 == 0 else None)


HAND = [
    Subject("camille-duroc", (("first_name", "Camille"), ("last_name", "Duroc"),
                              ("email", "c.duroc@example.net")), {}),
    Subject("camille-lefort", (("first_name", "Camille"), ("last_name", "Lefort")), {}),
    Subject("jules-duroc", (("name", "Jules Duroc"),), {}, ERASED),
    Subject("tiny", (("name", "A"), ("customer_id", "www"), ("email", "tiny@example.org")), {}),
]


@pytest.fixture(scope="module")
def auditor(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("policy") / "policy.yaml", POLICY)
    policy = load_policy(path)
    subjects = tuple(parisian(i) for i in range(1000)) + tuple(HAND)
    return Auditor(replace(policy, subjects=subjects))


def audit(auditor, body, url="https://collect.tracker.test/e"):
    flow = make_flow(url, "POST", json.dumps(body), {"content-type": "application/json"})
    return auditor.audit(flow)


def named(result) -> set[str]:
    return {f.subject for f in result.findings if f.subject}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- avoid: shared values and quasi-identifiers name nobody -----------------------------------

@pytest.mark.parametrize("body", [
    {"city": "Paris", "birthdate": DATES[3]},
    {"city": "Paris"},
    {"zip": "75001", "dob": DATES[0]},
    {"first_name": "Camille"},
    {"last_name": "Duroc"},
    {"fn": sha("camille")},                      # Meta's hashed first name alone
    {"ct": sha("paris"), "db": sha(DATES[1].replace("-", ""))},
    {"street": "12 rue de Rivoli"},              # a street without its city
], ids=["city+birth date", "city", "postcode+birth date", "first name", "last name",
        "hashed first name", "hashed city+birth date", "street alone"])
def test_a_shared_value_names_nobody(auditor, body):
    result = audit(auditor, body)
    assert named(result) == set()
    rules = {v.rule for v in result.violations}
    assert "erased-subject" not in rules
    # Alone they identify nobody (SPEC 3.5): no verdict about a person, known or not.
    assert "missing-consent" not in rules
    assert all("gen-" not in v.message and "camille" not in v.message for v in result.violations)


def test_city_and_birth_date_still_make_findings_of_their_category(auditor):
    result = audit(auditor, {"city": "Paris", "birthdate": DATES[3]})
    categories = {(f.category, f.subject) for f in result.findings if f.detector == "registry"}
    assert categories == {("postal_address", None), ("birth_date", None)}


# --- catch: a discriminating identifier, or a combination only one subject has ----------------

@pytest.mark.parametrize(("body", "subject"), [
    ({"email": "person0777@example.org", "city": "Paris"}, "gen-0777"),
    ({"email": "person0777@example.org", "city": "Paris", "dob": DATES[7]}, "gen-0777"),
    ({"first_name": "Camille", "last_name": "Duroc"}, "camille-duroc"),
    ({"fn": sha("camille"), "ln": sha("duroc")}, "camille-duroc"),
    ({"name": "Camille Duroc"}, "camille-duroc"),
    ({"street": "12 rue de Rivoli", "city": "Paris"}, "gen-0012"),
    ({"address": "12 rue de Rivoli, 75001 Paris"}, "gen-0012"),
], ids=["email+city", "email+city+dob", "first+last", "hashed first+last", "full name",
        "street+city", "full address"])
def test_a_discriminating_value_names_exactly_one(auditor, body, subject):
    assert named(audit(auditor, body)) == {subject}


def test_a_shared_value_attaches_to_the_subject_named_in_the_flow(auditor):
    """gen-0777 is far beyond the first sixteen Parisians the index keeps per spelling."""
    result = audit(auditor, {"email": "person0777@example.org", "city": "Paris",
                             "dob": DATES[7]})
    found = {(f.category, f.subject) for f in result.findings if f.detector == "registry"}
    assert found == {("email", "gen-0777"), ("postal_address", "gen-0777"),
                     ("birth_date", "gen-0777")}
    consent = [v for v in result.violations if v.rule == "missing-consent"]
    assert len(consent) == 1 and "gen-0777" in consent[0].message
    assert "gen-0001" not in consent[0].message


def test_a_birth_date_the_named_subject_does_not_have_stays_unattached(auditor):
    result = audit(auditor, {"email": "person0777@example.org", "dob": DATES[3]})
    assert {(f.category, f.subject) for f in result.findings if f.detector == "registry"} == {
        ("email", "gen-0777"), ("birth_date", None)}


def test_an_erased_subject_named_by_a_shared_city_only_is_not_reported(auditor):
    assert "erased-subject" not in {v.rule for v in audit(auditor, {"city": "Paris"}).violations}
    # ...but named by their own email, they are
    rules = {v.rule for v in audit(auditor, {"email": "person0010@example.org"}).violations}
    assert "erased-subject" in rules


# --- common tokens match nothing ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["https://www.example.com/a", "www", "A", "a", "WWW.shop.test",
                                   sha("a"), sha("www")])
def test_common_tokens_in_the_registry_match_nothing(value):
    known = KnownSubjects([HAND[3]])
    assert [f for f in known.find(Field("body", "v", value))] == []


def test_the_rest_of_a_subject_with_a_common_token_still_matches():
    known = KnownSubjects([HAND[3]])
    assert {f.subject for f in known.find(Field("body", "v", "tiny@example.org"))} == {"tiny"}


def test_policy_check_warns_about_common_tokens(tmp_path):
    path = write(tmp_path / "policy.yaml", POLICY.replace(
        "{email: placeholder@example.org}",
        "{email: placeholder@example.org, name: A, customer_id: www}"))
    policy, problems = check_policy(path)
    assert policy is not None
    warnings = [str(p) for p in problems if p.level == "warning"]
    assert any("identifiers.name" in w for w in warnings)
    assert any("identifiers.customer_id" in w for w in warnings)
    assert all("placeholder@" not in w for w in warnings)  # the lint never quotes the value
