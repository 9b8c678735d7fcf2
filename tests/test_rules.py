"""Each rule of SPEC 3.6, through the whole audit of a real mitmproxy flow.

Strategy: for every rule, a flow that must raise it and a near-identical one that must not,
against the small policy in conftest (people: alice with newsletter consent and a withdrawn
analytics consent, bob with no consent and an IBAN, carol with an erasure request)."""

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import Policy, Subject

ALICE = {"email": "alice.martin@example.org", "first_name": "Alice"}


def rules_of(policy: Policy, flow) -> set[str]:
    audit = Auditor(policy).audit(flow)
    assert audit.error is None
    return {v.rule for v in audit.violations}


def post_json(url: str, body: dict, **kwargs):
    return make_flow(url, "POST", json.dumps(body), {"content-type": "application/json"}, **kwargs)


def test_clean_flow_to_declared_recipient(policy: Policy) -> None:
    assert rules_of(policy, post_json("https://eu.mailer.test/contacts", ALICE)) == set()


def test_no_personal_data_no_violation(policy: Policy) -> None:
    flow = post_json("http://tracker.elsewhere.test/ping", {"status": "ok", "version": 3})
    assert rules_of(policy, flow) == set()


@pytest.mark.parametrize("url, expected", [
    ("http://eu.mailer.test/contacts", {"clear-text"}),
    ("https://eu.mailer.test/contacts", set()),
    ("http://shop.test/api/account", {"clear-text"}),    # first party too
    ("https://shop.test/api/account", set()),
])
def test_clear_text(policy: Policy, url: str, expected: set[str]) -> None:
    assert rules_of(policy, post_json(url, ALICE)) == expected


def test_undeclared_recipient(policy: Policy) -> None:
    rules = rules_of(policy, post_json("https://collect.adnetwork.test/v1/e", ALICE))
    assert rules == {"undeclared-recipient"}


def test_excess_data_but_not_for_declared_categories(policy: Policy) -> None:
    body = {**ALICE, "phone": "+33612345601"}
    audit = Auditor(policy).audit(post_json("https://eu.mailer.test/contacts", body))
    [violation] = [v for v in audit.violations if v.rule == "excess-data"]
    assert {f.category for f in violation.evidence} == {"phone"}


def test_endpoint_narrows_purposes(policy: Policy) -> None:
    """bob has no newsletter consent: /contacts needs it, /smtp/ is transactional."""
    bob = {"email": "bob.durand@example.org"}
    assert rules_of(policy, post_json("https://eu.mailer.test/contacts", bob)) == {"missing-consent"}
    assert rules_of(policy, post_json("https://eu.mailer.test/smtp/send", bob)) == set()


def test_missing_consent_after_withdrawal(policy: Policy) -> None:
    before = datetime(2026, 2, 1, tzinfo=UTC)
    after = datetime(2026, 3, 2, tzinfo=UTC)
    url = "https://stats.shop.test/collect"  # first-party endpoint serving analytics
    assert rules_of(policy, post_json(url, {"uid": "C-9001"}, at=before)) == set()
    assert rules_of(policy, post_json(url, {"uid": "C-9001"}, at=after)) == {"missing-consent"}


def test_unknown_subject_deny_and_allow(policy: Policy) -> None:
    stranger = {"email": "someone.else@example.net"}
    flow = post_json("https://eu.mailer.test/contacts", stranger)
    assert rules_of(policy, flow) == {"missing-consent"}
    allowing = Policy(**{**policy.__dict__, "unknown_subject": "allow"})
    assert rules_of(allowing, flow) == set()


def test_erased_subject_even_first_party(policy: Policy) -> None:
    carol = {"email": "carol.petit@example.org"}
    assert rules_of(policy, post_json("https://shop.test/api/crm", carol)) == {"erased-subject"}
    earlier = datetime(2026, 4, 1, tzinfo=UTC)
    assert rules_of(policy, post_json("https://shop.test/api/crm", carol, at=earlier)) == set()


def test_sensitive_data(policy: Policy) -> None:
    body = {"email": "alice.martin@example.org", "iban": "FR7630006000011234567890189"}
    assert rules_of(policy, post_json("https://eu.mailer.test/smtp/x", body)) == {"sensitive-data"}
    card = {"email": "alice.martin@example.org", "card": "4111 1111 1111 1111"}
    assert rules_of(policy, post_json("https://api.payco.test/v1/pay", card)) == set()
    # a card number that fails Luhn is not a card
    fake = {"email": "alice.martin@example.org", "card": "4111 1111 1111 1112"}
    assert "sensitive-data" not in rules_of(policy, post_json("https://eu.mailer.test/smtp/x", fake))


def test_sensitive_data_to_first_party_is_not_a_disclosure(policy: Policy) -> None:
    body = {"email": "alice.martin@example.org", "iban": "FR7630006000011234567890189"}
    assert rules_of(policy, post_json("https://shop.test/api/pay", body)) == set()


@pytest.mark.parametrize("url, expected", [
    ("https://eu.mailer.test/smtp/lookup?email=alice.martin%40example.org", {"pii-in-url"}),
    ("https://eu.mailer.test/smtp/members/alice.martin@example.org", {"pii-in-url"}),
    # md5 of the lowercased address, as Mailchimp's member URLs carry it
    ("https://eu.mailer.test/smtp/members/d9a3c5f1e6b2d3d8d3c5e4f0a0b1c2d3", set()),
    ("https://shop.test/account?email=alice.martin%40example.org", set()),
])
def test_pii_in_url(policy: Policy, url: str, expected: set[str]) -> None:
    assert rules_of(policy, make_flow(url)) == expected


def test_pii_in_url_hashed(policy: Policy) -> None:
    import hashlib
    digest = hashlib.md5(b"alice.martin@example.org").hexdigest()
    url = f"https://eu.mailer.test/smtp/members/{digest}"
    assert rules_of(policy, make_flow(url)) == {"pii-in-url"}


def test_unlawful_transfer(policy: Policy) -> None:
    body = {"email": "alice.martin@example.org"}
    assert rules_of(policy, post_json("https://api.faraway.test/pay", body)) == {"unlawful-transfer"}
    assert rules_of(policy, post_json("https://api.payco.test/pay", body)) == set()


def test_one_violation_per_rule_with_all_evidence(policy: Policy) -> None:
    body = {"a": "alice.martin@example.org", "b": "bob.durand@example.org",
            "c": "stranger@example.net"}
    audit = Auditor(policy).audit(post_json("http://collect.adnetwork.test/e", body))
    rules = [v.rule for v in audit.violations]
    assert sorted(rules) == ["clear-text", "undeclared-recipient"]
    clear = next(v for v in audit.violations if v.rule == "clear-text")
    assert {f.subject for f in clear.evidence} == {"alice", "bob", None}


def test_behavioural_data_alone_is_not_personal(policy: Policy) -> None:
    flow = make_flow("https://collect.adnetwork.test/e?event=page_view&page=/shoes")
    assert rules_of(policy, flow) == set()
    flow = make_flow("https://collect.adnetwork.test/e?event=page_view&page=/shoes&cid=1234.5678")
    assert rules_of(policy, flow) == {"undeclared-recipient"}


def test_an_audit_bug_is_recorded_without_the_data(policy: Policy,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    auditor = Auditor(policy)

    def broken(extraction, seen=None):
        raise KeyError("alice.martin@example.org")

    monkeypatch.setattr(auditor, "detect", broken)
    audit = auditor.audit(post_json("https://eu.mailer.test/contacts", ALICE))
    assert audit.status == "error" and audit.violations == []
    assert audit.error.startswith("KeyError") and "alice.martin" not in audit.error


def test_an_identifier_two_subjects_share_names_neither_alone(policy: Policy) -> None:
    """A household's one phone does not say which of the two was sent (SPEC 3.7): it names
    nobody, unless one of them is named in the same flow, whose phone it then is."""
    sharer = Subject("alice-partner", (("phone", "+33612345601"),), {})
    shared = replace(policy, subjects=(*policy.subjects, sharer))
    flow = post_json("https://tracker.elsewhere.test/collect", {"tel": "+33612345601"})
    audit = Auditor(shared).audit(flow)
    assert {(f.subject, f.category) for f in audit.findings if f.detector == "registry"} == {
        (None, "phone")}
    flow = post_json("https://tracker.elsewhere.test/collect",
                     {"tel": "+33612345601", "email": "alice.martin@example.org"})
    audit = Auditor(shared).audit(flow)
    assert {(f.subject, f.category) for f in audit.findings if f.detector == "registry"} == {
        ("alice", "phone"), ("alice", "email")}
