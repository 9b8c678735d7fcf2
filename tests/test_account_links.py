"""A password-reset, magic-login or verification link is the person's credential (SPEC 3.5).

Testing strategy: links in an email's HTML, a push payload and a query string (catch), and
links that open no account: a script, a docs page, a login page without a token (avoid); then
one transactional send through the whole audit, to a recipient not declared for credentials."""

import json

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.detectors.account_link import AccountLinkDetector
from gdpr_audit.fields import Field
from gdpr_audit.policy import Policy

DETECTOR = AccountLinkDetector()


@pytest.mark.parametrize("text", [
    '<a href="https://shop.example/account/reset-password?token=9f8e7d6c5b4a3928170">Reset</a>',
    "Sign in: https://app.example.com/auth/magic-link/eyJhbGciOiJIUzI1NiJ9abc123def456",
    "https://id.example.org/verify-email?code=Q7w8E9r0T1y2U3i4&uid=42",
    "https://shop.example/login/magic?token=mL9kQ2vX7rT4wZ1bN8cF3hJ6",
    "https://app.example.com/invite/accept/3f1c9a7e5b2d4f6a8c0e",
])
def test_catches(text: str) -> None:
    assert [f.category for f in DETECTOR.find(Field("body", "html", text))] == ["credentials"]


@pytest.mark.parametrize("text", [
    "https://cdn.example.com/js/login-widget.v2.min.js",
    "https://docs.example.com/verify-your-domain-settings-page-now",
    "https://shop.example/login",
    "https://shop.example/products/12345678901234567890",  # no account word
    "https://example.com/confirm?email=someone@example.org",
])
def test_avoids(text: str) -> None:
    assert list(DETECTOR.find(Field("body", "html", text))) == []


def test_a_reset_mail_sent_to_a_mailer_not_declared_for_credentials(policy: Policy) -> None:
    body = {"to": "alice.martin@example.org", "subject": "Reset your password",
            "html": '<a href="https://shop.test/reset-password?token=4d9f0c2b7a6e5d3c1b8a">'}
    flow = make_flow("https://eu.mailer.test/smtp/send", "POST", json.dumps(body),
                     {"content-type": "application/json"})
    audit = Auditor(policy).audit(flow)
    assert {f.category for f in audit.findings} >= {"email", "credentials"}
    assert "sensitive-data" in {v.rule for v in audit.violations}


def test_a_confirmation_page_url_with_an_email_is_no_token() -> None:
    page = "https://shop.example/compte/confirmation?email=lea.garnier%40example.com&step=2"
    assert list(DETECTOR.find(Field("query", "dl", page))) == []


def test_a_file_named_like_a_token_is_none() -> None:
    text = "https://shop.example/verify/static/logo-v2a1b2c3d4e5f6a7b8.png"
    assert list(DETECTOR.find(Field("body", "html", text))) == []


def test_a_batch_screened_at_once_keeps_every_link_the_detector_finds(policy: Policy) -> None:
    """From 256 values a request is screened by each detector's hint first: the hint must hit
    every link find() reports on, whatever its word (`passwordless`, `one-time`)."""
    links = ["https://id.example.org/passwordless/Q7w8E9r0T1y2U3i4o5",
             "https://id.example.org/a/one-time/Z9x8C7v6B5n4M3a2s1"]
    body = {"to": "alice.martin@example.org", "rows": [f"row {n}" for n in range(300)],
            "links": links}
    flow = make_flow("https://eu.mailer.test/smtp/send", "POST", json.dumps(body),
                     {"content-type": "application/json"})
    found = [f for f in Auditor(policy).audit(flow).findings if f.detector == "account_link"]
    assert sum(f.count for f in found) == 2  # one finding of the shape `links[*]`
