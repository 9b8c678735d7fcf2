"""The recipient catalogue (issue 21, point 4) and `unlawful-transfer` for undeclared third
parties (SPEC 3.6: by the country of the company in the catalogue; no country known: no verdict).

Strategy: the shipped catalogue is checked for shape (every entry a name, a legal entity, an
ISO country and a host; no host claimed twice), then real flows carrying a person's email go
to undeclared hosts whose owners we know independently of the code: US companies (catch),
EEA companies (avoid), hosts nobody registered and hosts only third-party-web knows, without a
country (avoid). A team's own `catalogue.yaml` beside the policy adds and overrides entries,
and its mistakes are named by file, line and key."""

import json
import re
from pathlib import Path

import pytest

from conftest import POLICY, ROOT, make_flow, write
from gdpr_audit.audit import Auditor
from gdpr_audit.entities import identify
from gdpr_audit.policy import Policy, PolicyError, load_policy

CATALOGUE = json.loads((ROOT / "addon" / "gdpr_audit" / "data" / "catalogue.json").read_text())
COMPANIES = CATALOGUE["companies"]
BODY = json.dumps({"email": "alice.martin@example.org", "event": "signup"})


def audit(policy: Policy, url: str):
    flow = make_flow(url, "POST", BODY, {"content-type": "application/json"})
    result = Auditor(policy).audit(flow)
    assert result.error is None
    return {v.rule: v for v in result.violations}


def test_catalogue_holds_three_hundred_companies_each_complete() -> None:
    assert len(COMPANIES) >= 300
    assert "_about" in CATALOGUE and "as_of" in CATALOGUE
    for company in COMPANIES:
        assert company["name"] and company["legal_entity"], company
        assert re.fullmatch(r"[A-Z]{2}", company["country"]), company
        assert company["hosts"], company
        assert company.get("confidence", "entity") in ("entity", "parent"), company
        if "dpf" in company:
            assert isinstance(company["dpf"], bool) and re.fullmatch(
                r"20\d\d-\d\d", company["dpf_as_of"]), company
    names = [c["name"].lower() for c in COMPANIES]
    assert len(names) == len(set(names)), "a company is listed twice"


def test_no_host_belongs_to_two_companies() -> None:
    owners: dict[str, str] = {}
    for company in COMPANIES:
        hosts = [*company["hosts"], *(h for hs in company.get("regional_hosts", {}).values()
                                      for h in hs)]
        for host in hosts:
            assert host == host.lower() and "/" not in host and "*" not in host, host
            assert owners.setdefault(host, company["name"]) == company["name"], host


def test_catalogue_covers_the_fields_teams_send_data_to() -> None:
    fields = {c["category"] for c in COMPANIES}
    for needed in ("email-delivery", "feature-flags", "push", "error-tracking",
                   "product-analytics", "search", "crm", "marketing-automation", "advertising",
                   "analytics", "support", "payment", "cdp"):
        assert needed in fields, needed
        assert sum(c["category"] == needed for c in COMPANIES) >= 5, needed


@pytest.mark.parametrize("host, name, country", [
    ("api-js.mixpanel.com", "Mixpanel", "US"),
    ("api.eu.mixpanel.com", "Mixpanel", "US"),
    ("app.launchdarkly.com", "LaunchDarkly", "US"),
    ("o123.ingest.sentry.io", "Sentry", "US"),
    ("o123.ingest.de.sentry.io", "Sentry", "US"),
    ("eu.i.posthog.com", "PostHog", "US"),
    ("api.hubapi.com", "HubSpot", "IE"),
    ("static.criteo.net", "Criteo", "FR"),
])
def test_catalogue_identifies_hosts_and_regional_hosts(host: str, name: str, country: str) -> None:
    entity = identify(host)
    assert entity is not None and (entity.name, entity.country) == (name, country)


@pytest.mark.parametrize("url", [
    "https://api-js.mixpanel.com/track",            # Mixpanel, Inc.
    "https://a.klaviyo.com/api/identify",           # Klaviyo, Inc.
    "https://api.segment.io/v1/identify",           # Twilio Inc.
    "https://events.launchdarkly.com/bulk",         # Catamorphic Co. (LaunchDarkly)
    "https://api.amplitude.com/2/httpapi",          # Amplitude, Inc.
])
def test_undeclared_us_company_is_an_unlawful_transfer(policy: Policy, url: str) -> None:
    violation = audit(policy, url).get("unlawful-transfer")
    assert violation is not None
    assert "US company (catalogue)" in violation.message
    assert "no transfer mechanism declared" in violation.message


@pytest.mark.parametrize("url", [
    "https://static.criteo.net/e",                  # Criteo SA, FR
    "https://region1.google-analytics.com/g/collect",  # Google Ireland Limited, IE
    "https://api-iam.intercom.io/messenger",        # Intercom R&D Unlimited Company, IE
    "https://api.brevo.com/v3/contacts",            # Sendinblue SAS, FR
    "https://tracker.nobody-registered-this.test/p",  # not in any catalogue: no verdict
])
def test_undeclared_eea_or_unknown_company_is_no_unlawful_transfer(policy: Policy,
                                                                   url: str) -> None:
    rules = audit(policy, url)
    assert "undeclared-recipient" in rules
    assert "unlawful-transfer" not in rules


def test_an_entity_without_a_country_gives_no_verdict(policy: Policy) -> None:
    entity = identify("cdn.yottaa.net")  # third-party-web knows it, not its country
    assert entity is not None and entity.country is None
    assert "unlawful-transfer" not in audit(policy, "https://cdn.yottaa.net/x")


TEAM_CATALOGUE = """
companies:
  - name: Acme Pixel
    legal_entity: Acme Pixel, Inc.
    country: US
    category: advertising
    hosts: [acme-pixel.test]
  - name: Criteo
    legal_entity: Criteo Corp.
    country: US
    category: advertising
    hosts: [criteo.com, criteo.net]
"""


def test_catalogue_beside_the_policy_adds_and_overrides(tmp_path: Path) -> None:
    write(tmp_path / "policy.yaml", POLICY)
    before = load_policy(tmp_path)
    assert "unlawful-transfer" not in audit(before, "https://t.acme-pixel.test/p")
    assert "unlawful-transfer" not in audit(before, "https://static.criteo.net/e")
    write(tmp_path / "catalogue.yaml", TEAM_CATALOGUE)
    after = load_policy(tmp_path)
    assert "unlawful-transfer" in audit(after, "https://t.acme-pixel.test/p")
    assert "unlawful-transfer" in audit(after, "https://static.criteo.net/e")
    assert "Acme Pixel" in audit(after, "https://t.acme-pixel.test/p")["undeclared-recipient"].message
    # the shipped catalogue is untouched for policies without one
    assert identify("static.criteo.net").country == "FR"  # type: ignore[union-attr]


@pytest.mark.parametrize("text, line, key, message", [
    ("companies:\n  - name: X\n    legal_entity: X Ltd\n    country: usa\n    hosts: [x.test]\n",
     4, "companies[0].country", "ISO 3166"),
    ("companies:\n  - name: X\n    legal_entity: X Ltd\n    country: US\n    hosts: [x.test]\n"
     "    contry: US\n", 6, "companies[0].contry", "did you mean 'country'"),
    ("companies:\n  - name: X\n    country: US\n    hosts: [x.test]\n",
     2, "companies[0]", "legal_entity"),
    ("companies:\n  - name: X\n    legal_entity: X Ltd\n    country: US\n    hosts: []\n",
     5, "companies[0].hosts", "at least one host"),
    ("companies:\n  - name: X\n    legal_entity: X Ltd\n    country: US\n    hosts: [x.test]\n"
     "    dpf: maybe\n", 6, "companies[0].dpf", "true or false"),
    ("vendors: []\n", 1, "vendors", "companies"),
])
def test_a_bad_team_catalogue_is_named_by_file_line_and_key(tmp_path: Path, text: str, line: int,
                                                           key: str, message: str) -> None:
    write(tmp_path / "policy.yaml", POLICY)
    (tmp_path / "catalogue.yaml").write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    error = caught.value
    assert error.file.endswith("catalogue.yaml") and error.line == line and error.key == key
    assert message in error.message


def _log(tmp_path: Path, hosts: list[str]):
    import sqlite_utils

    db = sqlite_utils.Database(tmp_path / "audit.db")
    db.table("flows").insert_all([{"id": i, "host": h, "recipient_kind": "undeclared",
                                   "recipient": h, "purposes": ""}
                                  for i, h in enumerate(hosts)], pk="id")
    db.table("findings").insert_all([{"flow_id": i, "category": "email"}
                                     for i in range(len(hosts))])
    return db


def test_policy_draft_takes_country_and_dpf_from_the_catalogue(tmp_path: Path) -> None:
    import yaml

    from gdpr_audit.draft import draft_policy

    write(tmp_path / "policy.yaml", POLICY)
    write(tmp_path / "catalogue.yaml", TEAM_CATALOGUE)
    policy = load_policy(tmp_path)
    text = draft_policy(_log(tmp_path, ["api-js.mixpanel.com", "t.acme-pixel.test"]), policy)
    drafted = {e["name"]: e for e in yaml.safe_load(text)["recipients"]}
    mixpanel, acme = drafted["Mixpanel"], drafted["Acme Pixel"]  # ours, and the team's
    assert (mixpanel["country"], mixpanel["transfer"]) == ("US", "none")  # never permissive
    assert any("Data Privacy Framework (as of 2024-06)" in r for r in mixpanel["review"])
    assert acme["country"] == "US" and "# Acme Pixel, Inc., US, advertising" in text


def test_map_names_undeclared_owners_by_the_policy_catalogue(tmp_path: Path) -> None:
    from gdpr_audit.review import owner, register

    write(tmp_path / "policy.yaml", POLICY)
    write(tmp_path / "catalogue.yaml", TEAM_CATALOGUE)
    policy = load_policy(tmp_path)
    rows = {r.recipient: r for r in register(_log(tmp_path, ["t.acme-pixel.test",
                                                             "api.hubapi.com"]), policy)}
    assert rows["t.acme-pixel.test"].who == "Acme Pixel, Inc., US, advertising"
    assert rows["api.hubapi.com"].who == "HubSpot Ireland Limited, IE, crm, DPF as of 2024-06"
    assert owner("api.segment.io") == "Twilio Inc., US, cdp, DPF as of 2024-06"
    assert owner("api.salesforce.com").startswith("Salesforce, Inc., US (group's country)")


def test_policy_check_reports_the_team_catalogue_problems(tmp_path: Path) -> None:
    from gdpr_audit.policy_lint import check_policy

    write(tmp_path / "policy.yaml", POLICY)
    (tmp_path / "catalogue.yaml").write_text(
        "companies:\n  - name: X\n    legal_entity: X Ltd\n    country: usa\n    hosts: [x.test]\n")
    policy, problems = check_policy(tmp_path)
    assert policy is None
    assert [(p.error.line, p.error.key) for p in problems
            if p.error.file.endswith("catalogue.yaml")] == [(4, "companies[0].country")]


def test_the_shipped_catalogue_passes_the_team_checks() -> None:
    from gdpr_audit.catalogue import catalogue_errors

    assert list(catalogue_errors(CATALOGUE, {}, "catalogue.json")) == []
