"""Tracker cookies that carry ids, known by name from the Open Cookie Database (issue 21,
point 5): LinkedIn's `li_sugr` went unseen while `_ga` and `_fbp` were caught by their key.

Strategy: a catch table of id-carrying marketing and analytics cookies (exact names and the
database's wildcard patterns, e.g. `_ga_<container>`, `_hjSessionUser_<site>`) and an avoid
table of cookies that carry no id about a person: the first party's session and CSRF cookies,
cookies the database lists as Functional, consent cookies, and tracker cookies whose value is
a flag. Then whole flows: the cookie makes an undeclared-recipient violation for the vendor's
host, with the vendor named in the evidence, and the shipped data keeps its licence."""

import pytest

from conftest import ROOT, make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.detectors import PATTERN_DETECTORS
from gdpr_audit.detectors.cookies import tracker_cookie
from gdpr_audit.fields import Field
from gdpr_audit.policy import Policy

UUID = "a3c1e2f4-5b6d-4e7f-8a9b-0c1d2e3f4a5b"


def found(name: str, value: str) -> list[tuple[str, str]]:
    detector = PATTERN_DETECTORS["field_name"]()
    return [(f.category, f.form) for f in detector.find(Field("cookie", name, value))]


@pytest.mark.parametrize("name, value, vendor", [
    ("li_sugr", UUID, "LinkedIn"),
    ("_ga", "GA1.1.1478523690.1768035600", "Google Analytics"),
    ("_fbp", "fb.1.1768035600123.1478523690", "Facebook"),
    ("_hjSessionUser_123", "eyJpZCI6ImEzYzFlMmY0LTViNmQiLCJjcmVhdGVkIjoxNzY4MDM1NjAwfQ==",
     "Hotjar"),
    ("_ga_ABC123XYZ", "GS1.1.1768035600.1.1.1768035700.0.0.0", "Google Analytics"),
    ("bcookie", '"v=2&' + UUID + '"', "LinkedIn"),
    ("_pk_id.1.1fff", "3a6f1b2c4d5e6f70.1768035600.", "Piwik"),  # Matomo's former name
    ("ajs_user_id", "C-9001-synthetic", None),  # caught by its key already
])
def test_id_carrying_tracker_cookies_are_device_ids(name: str, value: str,
                                                    vendor: str | None) -> None:
    assert [category for category, _ in found(name, value)] == ["device_id"]
    if vendor:
        assert tracker_cookie(name) is not None and tracker_cookie(name).vendor == vendor


@pytest.mark.parametrize("name, value", [
    ("csrftoken", "Xk3lq0Zp7nV2bT9wQeRr5sYu1iOp8aSd"),   # the first party's CSRF token
    ("sessionid", "q8x2k4m6n8p0r2t4v6x8z0b2d4f6h8j0"),   # its session
    ("PHPSESSID", "9c1f6a0e7d2b4c3a8f5e6d7c8b9a0f1e"),   # Functional in the database
    ("JSESSIONID", "node0abc123def456.node0"),
    ("__cf_bm", "f2Zr4x_synthetic_bot_management_token_value-1768035600"),  # Functional
    ("_hjTLDTest", "1"),                                  # Functional
    ("cookiePreferences", "analytics=0,marketing=0"),     # Functional
    ("euconsent-v2", "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"),  # the consent itself
    ("_gat", "1"),                                        # analytics, but a throttle flag
    ("_hjIncludedInSessionSample_123", "0"),
    ("theme", "dark"),
])
def test_cookies_that_carry_no_id_of_a_person_are_not(name: str, value: str) -> None:
    assert [c for c, _ in found(name, value) if c == "device_id"] == []


def test_short_and_generic_wildcards_do_not_swallow_other_names() -> None:
    # the database has wildcard names such as `_s`, `CT`, `SR`, `data-`: a first-party
    # `_session` or `CTX` cookie is none of them
    for name in ("_session", "_shop_session", "CTX", "SRVNAME", "data-theme", "token"):
        assert tracker_cookie(name) is None, name


def test_li_sugr_makes_a_finding_for_linkedin(policy: Policy) -> None:
    flow = make_flow("https://px.ads.linkedin.com/collect?pid=123&fmt=gif",
                     headers={"cookie": f"li_sugr={UUID}"})
    result = Auditor(policy).audit(flow)
    assert result.error is None
    assert [f.category for f in result.findings] == ["device_id"]
    [violation] = [v for v in result.violations if v.rule == "undeclared-recipient"]
    assert "LinkedIn" in violation.message


def test_the_database_ships_with_its_licence_and_attribution() -> None:
    data = ROOT / "addon" / "gdpr_audit" / "data"
    licence = (data / "open-cookie-database.LICENSE.txt").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence
    notice = (data / "open-cookie-database.NOTICE.md").read_text()
    assert "github.com/jkwakman/Open-Cookie-Database" in notice
    assert "open-cookie-database" in (ROOT / "pyproject.toml").read_text()
