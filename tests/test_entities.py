"""Who a host belongs to. Strategy: hosts whose owners we know independently of the data
(the vendors' own public API hosts), and hosts nobody registered."""

import json

import pytest

from conftest import ROOT, make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.entities import identify

VENDORS = json.loads((ROOT / "addon" / "gdpr_audit" / "data" / "catalogue.json").read_text())["companies"]


@pytest.mark.parametrize("host, name, country", [
    ("api.hubapi.com", "HubSpot", "IE"),  # HubSpot Ireland Limited contracts with EU customers
    ("us21.api.mailchimp.com", "Mailchimp", "US"),
    ("api.brevo.com", "Brevo", "FR"),
    ("widget.intercom.io", "Intercom", "IE"),
    ("client.crisp.chat", "Crisp", "FR"),
    ("checkout-test.adyen.com", "Adyen", "NL"),
    ("static.criteo.net", "Criteo", "FR"),
])
def test_vendor_register(host: str, name: str, country: str) -> None:
    entity = identify(host)
    assert entity is not None and (entity.name, entity.country) == (name, country)
    assert entity.legal_entity and entity.purposes


def test_third_party_web_entities_fill_the_rest() -> None:
    entity = identify("cdn.yottaa.net")  # third-party-web only: no legal entity, no country
    assert entity is not None and entity.category == "hosting" and entity.country is None
    google = identify("securepubads.g.doubleclick.net")  # both know it: the catalogue wins
    assert google is not None and google.legal_entity == "Google Ireland Limited"
    assert identify("cdn.nobody-registered-this.example") is None
    assert identify("doubleclick.net.evil.example") is None


def test_register_covers_sixty_crm_marketing_chat_support_payment_vendors() -> None:
    kinds = {"crm", "email-marketing", "email-delivery", "marketing-automation", "push", "cdp",
             "sms", "support", "chat", "payment"}
    assert len([v for v in VENDORS if v["category"] in kinds]) >= 50
    assert len(VENDORS) >= 60
    for vendor in VENDORS:
        assert len(vendor["country"]) == 2 and vendor["legal_entity"] and vendor["hosts"]


def test_undeclared_host_is_named_in_the_violation(policy) -> None:
    flow = make_flow("https://static.criteo.net/e?email=alice.martin%40example.org")
    [violation] = [v for v in Auditor(policy).audit(flow).violations if v.rule == "undeclared-recipient"]
    assert "Criteo (criteo.net)" in violation.message and "Criteo SA, FR, advertising" in violation.message
