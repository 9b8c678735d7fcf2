#!/usr/bin/env python3
"""Regenerate the sample captures of gdpr-flow-audit.

    python captures/generate.py        (Python >= 3.12 with mitmproxy 12 installed)

Writes, next to this script:

    backend.flow   server-to-server calls (CRM, e-mailing, payment, monitoring,
                   support desk, webhooks, conversion APIs), mitmproxy's native format
    browser.har    calls made by the shop's web pages (first-party API, audience
                   measurement, tags and pixels), as HAR 1.2
    expected.json  for every flow: the rules it violates BY CONSTRUCTION
    README.md      the table of cases

Everything is built with mitmproxy's own API and is deterministic: fixed flow and
connection ids (uuid5 of the case name), fixed timestamps (2026-06-15, from 10:00 UTC),
gzip with mtime 0, a fixed multipart boundary. Running the script twice gives
byte-identical files.

The expected rules are written by hand next to each case (``expect=...``, with the
reason in ``why=...``) from what the case puts in the request and what
policies/policy.yaml and policies/subjects.yaml declare. They are never computed by a
detector. When you add a case, keep its content deliberate: every piece of personal
data in a flow should be there on purpose, so that its expectation is unambiguous.

All people, identifiers and the company are fictitious (see policies/subjects.yaml).
API keys and tokens below are placeholders.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from pathlib import Path
from urllib.parse import quote
from urllib.parse import urlencode

from mitmproxy import connection
from mitmproxy import http
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.connection import ConnectionState
from mitmproxy.io import FlowWriter
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test.tflow import tflow

HERE = Path(__file__).resolve().parent
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "captures.gdpr-flow-audit.shop.example")
# All flows happen on 2026-06-15 from 10:00:00 UTC, one every 20 seconds.
T0 = datetime(2026, 6, 15, 10, 0, 0, tzinfo=timezone.utc).timestamp()
STEP = 20.0

BACKEND = "backend.flow"
BROWSER = "browser.har"

RULES = {
    "clear-text",
    "undeclared-recipient",
    "excess-data",
    "missing-consent",
    "erased-subject",
    "sensitive-data",
    "pii-in-url",
    "unlawful-transfer",
}

# ---------------------------------------------------------------------------------
# The registry subjects used below (a copy of policies/subjects.yaml, kept in sync by
# check_registry() when PyYAML is available).
# ---------------------------------------------------------------------------------
SUBJECTS = {
    "cust-001": dict(email="marie.dupont@example.fr", phone="+33612345678",
                     first="Marie", last="Dupont", customer_id="C-1001",
                     street="12 rue de la Paix", zip="75002", city="Paris",
                     ga_cid="1478523690.1768035600", fbp="fb.1.1768035600123.1478523690"),
    "cust-002": dict(email="jean-luc.lefevre@example.com", phone="+33698765432",
                     first="Jean-Luc", last="Lefèvre", customer_id="C-1002",
                     street="8 avenue Jean Médecin", zip="06000", city="Nice",
                     ga_cid="2094857361.1769990400"),
    "cust-003": dict(email="amelie.rousseau@example.org", phone="+33745123456",
                     first="Amélie", last="Rousseau", customer_id="C-1003"),
    "cust-004": dict(email="thomas.bernard@example.fr", phone="+33687654321",
                     first="Thomas", last="Bernard", customer_id="C-1004"),
    "cust-005": dict(email="sophie.martin@example.com", phone="+33611223344",
                     first="Sophie", last="Martin", customer_id="C-1005"),
    "cust-006": dict(email="karim.benali@example.fr", phone="+33755667788",
                     first="Karim", last="Benali", customer_id="C-1006",
                     iban="FR7630006000011234567890189"),
    "cust-007": dict(email="chloe.petit@example.org", phone="+33644556677",
                     first="Chloé", last="Petit", customer_id="C-1007",
                     street="27 rue Sainte-Catherine", zip="33000", city="Bordeaux",
                     card="5555555555554444"),
    "cust-008": dict(email="lucas.moreau@example.com", phone="+33766778899",
                     first="Lucas", last="Moreau", customer_id="C-1008",
                     nir="179066912304583"),
    "cust-009": dict(email="lea.garnier@example.com", phone="+33622334455",
                     first="Léa", last="Garnier", customer_id="C-1009",
                     ip="198.51.100.23", ga_cid="1357924680.1770000000",
                     segment_anon="a3f1c2d4-5b6e-4f70-8a91-b2c3d4e5f607"),
    "cust-010": dict(email="hugo.fontaine@example.fr", phone="+33633445566",
                     first="Hugo", last="Fontaine", customer_id="C-1010"),
}
S1, S2, S3, S4, S5, S6, S7, S8, S9, S10 = (SUBJECTS[f"cust-{i:03d}"] for i in range(1, 11))

# Someone who is NOT in the registry (an unknown data subject).
UNKNOWN_PERSON = dict(email="paul.durand@example.org", first="Paul", last="Durand")
UNKNOWN_GA_CID = "987654321.1781510000"


def full_name(s: dict) -> str:
    return f"{s['first']} {s['last']}"


def norm_email(e: str) -> str:
    return e.strip().lower()


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def sha256_email(s: dict) -> str:
    """Meta/TikTok/Criteo normalisation: trimmed, lowercased e-mail."""
    return sha256(norm_email(s["email"]))


def sha256_phone(s: dict) -> str:
    """Meta normalisation: E.164 digits without the '+'."""
    return sha256(s["phone"].lstrip("+"))


# ---------------------------------------------------------------------------------
# Request / response helpers
# ---------------------------------------------------------------------------------
BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
BROWSER_HEADERS = [
    ("User-Agent", BROWSER_UA),
    ("Accept", "*/*"),
    ("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.5"),
    # Cross-site requests only carry the origin (strict-origin-when-cross-origin).
    ("Origin", "https://shop.example"),
    ("Referer", "https://shop.example/"),
]


def qs(params: list[tuple[str, str]]) -> str:
    """Query string encoded like JavaScript's encodeURIComponent."""
    return urlencode(params, quote_via=quote, safe="")


def jdump(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Body:
    content: bytes = b""
    content_type: str | None = None
    gzip: bool = False


def json_body(obj, content_type="application/json", gzip=False) -> Body:
    return Body(jdump(obj), content_type, gzip)


def form_body(pairs: list[tuple[str, str]]) -> Body:
    return Body(urlencode(pairs).encode(), "application/x-www-form-urlencoded")


def text_body(text: str) -> Body:
    return Body(text.encode(), "text/plain; charset=utf-8")


MULTIPART_BOUNDARY = "----gdprflowauditBoundary7MA4YWxkTrZu0gW"


def multipart_body(fields: list[tuple[str, str]]) -> Body:
    lines = []
    for name, value in fields:
        lines += [f"--{MULTIPART_BOUNDARY}",
                  f'Content-Disposition: form-data; name="{name}"', "", value]
    lines += [f"--{MULTIPART_BOUNDARY}--", ""]
    return Body("\r\n".join(lines).encode(),
                f"multipart/form-data; boundary={MULTIPART_BOUNDARY}")


@dataclass
class Resp:
    status: int = 200
    content: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"


def json_resp(obj, status=200) -> Resp:
    return Resp(status, jdump(obj))


# 1x1 transparent GIF, as returned by tracking pixels.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@dataclass
class Case:
    name: str
    file: str
    method: str
    url: str
    subjects: list[str]          # registry subjects whose data the flow carries
    expect: set[str]             # rules violated by construction
    why: str                     # why exactly these rules (and not the others)
    vendor: str
    carries: str                 # short description for the README table
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Body = field(default_factory=Body)
    resp: Resp = field(default_factory=lambda: json_resp({"ok": True}))


CASES: list[Case] = []


def case(**kw) -> None:
    c = Case(**kw)
    assert c.expect <= RULES, c.expect - RULES
    assert all(s in SUBJECTS for s in c.subjects)
    assert c.name not in {x.name for x in CASES}, c.name
    CASES.append(c)


# =================================================================================
# backend.flow: server-to-server integrations
# =================================================================================

# --- HubSpot: newsletter (consent), data [email, name, phone, customer_id], US/dpf ---
HUBSPOT_UPSERT = "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert"
HUBSPOT_HEADERS = [("Authorization", "Bearer pat-eu1-00000000-0000-0000-0000-000000000000"),
                   ("User-Agent", "hubspot-api-client-python; 11.1.0")]


def hubspot_contact(s: dict, **extra) -> dict:
    props = {"email": s["email"], "firstname": s["first"], "lastname": s["last"],
             "phone": s["phone"], "customer_id": s["customer_id"], **extra}
    return {"inputs": [{"idProperty": "email", "id": s["email"], "properties": props}]}


HUBSPOT_RESP = json_resp({"status": "COMPLETE", "results": [{"id": "51234001", "new": False}],
                          "startedAt": "2026-06-15T10:00:00.120Z",
                          "completedAt": "2026-06-15T10:00:00.310Z"})

case(name="hubspot-upsert-consented", file=BACKEND, vendor="HubSpot",
     method="POST", url=HUBSPOT_UPSERT, headers=HUBSPOT_HEADERS,
     body=json_body(hubspot_contact(S1)), resp=HUBSPOT_RESP,
     subjects=["cust-001"], expect=set(),
     carries="email, name, phone, customer id",
     why="Declared recipient, declared categories, HTTPS, newsletter consent granted "
         "2026-01-10, data only in the body.")

case(name="hubspot-upsert-never-consented", file=BACKEND, vendor="HubSpot",
     method="POST", url=HUBSPOT_UPSERT, headers=HUBSPOT_HEADERS,
     body=json_body(hubspot_contact(S3)), resp=HUBSPOT_RESP,
     subjects=["cust-003"], expect={"missing-consent"},
     carries="email, name, phone, customer id",
     why="HubSpot serves newsletter (consent required); cust-003 has no consent event "
         "at all, so newsletter is not granted.")

case(name="hubspot-upsert-after-withdrawal", file=BACKEND, vendor="HubSpot",
     method="POST", url=HUBSPOT_UPSERT, headers=HUBSPOT_HEADERS,
     body=json_body(hubspot_contact(S4)), resp=HUBSPOT_RESP,
     subjects=["cust-004"], expect={"missing-consent"},
     carries="email, name, phone, customer id",
     why="cust-004 granted newsletter on 2026-01-10 and withdrew it on 2026-04-02: "
         "withdrawn at the flow time (2026-06-15).")

case(name="hubspot-upsert-postal-address", file=BACKEND, vendor="HubSpot",
     method="POST", url=HUBSPOT_UPSERT, headers=HUBSPOT_HEADERS,
     body=json_body(hubspot_contact(S2, address=S2["street"], zip=S2["zip"], city=S2["city"])),
     resp=HUBSPOT_RESP,
     subjects=["cust-002"], expect={"excess-data"},
     carries="email, name, phone, customer id + postal address",
     why="postal_address is not in HubSpot's data list (minimisation); cust-002 did "
         "grant newsletter, so no missing-consent.")

# --- Mailchimp: newsletter (consent), data [email, name], US/dpf ---
MAILCHIMP_LIST = "https://us21.api.mailchimp.com/3.0/lists/a1b2c3d4e5/members"
MAILCHIMP_HEADERS = [("Authorization", "Bearer placeholder-mailchimp-key-us21"),
                     ("User-Agent", "MailchimpMarketing/3.0.80/python")]


def mailchimp_member(p: dict, status_key="status") -> dict:
    return {"email_address": p["email"], status_key: "subscribed",
            "merge_fields": {"FNAME": p["first"], "LNAME": p["last"]}}


MAILCHIMP_RESP = json_resp({"status": "subscribed", "list_id": "a1b2c3d4e5"})

case(name="mailchimp-member-put-hash-in-path", file=BACKEND, vendor="Mailchimp",
     method="PUT", url=f"{MAILCHIMP_LIST}/{md5(norm_email(S1['email']))}",
     headers=MAILCHIMP_HEADERS, body=json_body(mailchimp_member(S1, "status_if_new")),
     resp=MAILCHIMP_RESP,
     subjects=["cust-001"], expect={"pii-in-url"},
     carries="email, name; md5(email) in the URL path",
     why="Mailchimp's upsert puts md5(lowercased email) in the path: a hashed direct "
         "identifier in a third-party URL. Recipient, data and consent are all fine.")

case(name="mailchimp-member-post", file=BACKEND, vendor="Mailchimp",
     method="POST", url=MAILCHIMP_LIST, headers=MAILCHIMP_HEADERS,
     body=json_body(mailchimp_member(S10)), resp=MAILCHIMP_RESP,
     subjects=["cust-010"], expect=set(),
     carries="email, name",
     why="Member creation carries the e-mail only in the body; cust-010 granted newsletter.")

case(name="mailchimp-unknown-subscriber", file=BACKEND, vendor="Mailchimp",
     method="POST", url=MAILCHIMP_LIST, headers=MAILCHIMP_HEADERS,
     body=json_body(mailchimp_member(UNKNOWN_PERSON)), resp=MAILCHIMP_RESP,
     subjects=[], expect={"missing-consent"},
     carries="email, name of someone not in the registry",
     why="Personal data of an unknown person for newsletter (consent required); no "
         "consent signal in the flow and unknown_subject: deny.")

# --- Brevo (FR): /v3/smtp/* transactional [email,name,purchase];
#                 /v3/contacts* newsletter [email,name,phone] ---
BREVO_HEADERS = [("api-key", "xkeysib-placeholder-not-a-real-key"),
                 ("User-Agent", "brevo-python/1.1.0")]

case(name="brevo-smtp-order-confirmation", file=BACKEND, vendor="Brevo",
     method="POST", url="https://api.brevo.com/v3/smtp/email", headers=BREVO_HEADERS,
     body=json_body({"to": [{"email": S3["email"], "name": full_name(S3)}],
                     "templateId": 12,
                     "params": {"ORDER_ID": "CMD-2026-0415", "ORDER_TOTAL": "89.90 EUR"}}),
     resp=json_resp({"messageId": "202606151000.1234567890"}, 201),
     subjects=["cust-003"], expect=set(),
     carries="email, name, order id and total",
     why="The /v3/smtp/* endpoint narrows Brevo to transactional (no consent needed) "
         "with data [email, name, purchase]: cust-003's lack of consent does not matter.")

case(name="brevo-contact-purchase-attributes", file=BACKEND, vendor="Brevo",
     method="POST", url="https://api.brevo.com/v3/contacts", headers=BREVO_HEADERS,
     body=json_body({"email": S10["email"],
                     "attributes": {"FIRSTNAME": S10["first"], "LASTNAME": S10["last"],
                                    "ORDER_ID": "CMD-2026-0402", "ORDER_TOTAL": 129.5},
                     "listIds": [7], "updateEnabled": True}),
     resp=json_resp({"id": 4211}, 201),
     subjects=["cust-010"], expect={"excess-data"},
     carries="email, name + last order id and amount",
     why="/v3/contacts* is narrowed to newsletter with data [email, name, phone]: purchase "
         "data is excess there even though Brevo as a whole may receive it. cust-010 "
         "granted newsletter.")

case(name="brevo-contact-lookup-email-in-path", file=BACKEND, vendor="Brevo",
     method="GET", url=f"https://api.brevo.com/v3/contacts/{quote(S1['email'], safe='')}",
     headers=BREVO_HEADERS,
     resp=json_resp({"id": 4101, "listIds": [7], "emailBlacklisted": False}),
     subjects=["cust-001"], expect={"pii-in-url"},
     carries="email (URL-encoded) in the URL path",
     why="Contact lookup by e-mail puts the address in the path of a third-party URL. "
         "Newsletter consent is granted for cust-001.")

# --- Salesforce: service (no consent), [email,name,phone,postal_address,customer_id], US/scc ---
SF_BASE = "https://boutique-exemple.my.salesforce.com/services/data/v60.0/sobjects/Contact"
SF_HEADERS = [("Authorization", "Bearer 00Dexample!placeholder-session-token"),
              ("User-Agent", "simple-salesforce/1.12.6")]

case(name="salesforce-contact-create", file=BACKEND, vendor="Salesforce",
     method="POST", url=SF_BASE, headers=SF_HEADERS,
     body=json_body({"FirstName": S7["first"], "LastName": S7["last"], "Email": S7["email"],
                     "Phone": S7["phone"], "MailingStreet": S7["street"],
                     "MailingPostalCode": S7["zip"], "MailingCity": S7["city"],
                     "MailingCountry": "France", "Customer_Id__c": S7["customer_id"]}),
     resp=json_resp({"id": "003Qy00000ExAmP1AB", "success": True, "errors": []}, 201),
     subjects=["cust-007"], expect=set(),
     carries="name, email, phone, postal address, customer id",
     why="Service purpose needs no consent; every category is declared; SCC covers the "
         "US transfer.")

case(name="salesforce-contact-after-erasure", file=BACKEND, vendor="Salesforce",
     method="PATCH", url=f"{SF_BASE}/Customer_Id__c/{S5['customer_id']}", headers=SF_HEADERS,
     body=json_body({"FirstName": S5["first"], "LastName": S5["last"], "Email": S5["email"]}),
     resp=json_resp({"id": "003Qy00000ExAmP5AB", "created": False, "success": True,
                     "errors": []}),
     subjects=["cust-005"], expect={"erased-subject"},
     carries="name, email; customer id in the path",
     why="cust-005 asked for erasure on 2026-05-20, before the flow. Service needs no "
         "consent; customer_id is not a direct identifier, so no pii-in-url.")

case(name="salesforce-contact-nir", file=BACKEND, vendor="Salesforce",
     method="POST", url=SF_BASE, headers=SF_HEADERS,
     body=json_body({"FirstName": S8["first"], "LastName": S8["last"], "Email": S8["email"],
                     "Customer_Id__c": S8["customer_id"], "NIR__c": S8["nir"]}),
     resp=json_resp({"id": "003Qy00000ExAmP8AB", "success": True, "errors": []}, 201),
     subjects=["cust-008"], expect={"sensitive-data"},
     carries="name, email, customer id + French social security number (NIR)",
     why="national_id is sensitive and Salesforce is not declared for it.")

# --- Stripe: payment (no consent), [email, name, payment_card, postal_address], US/dpf ---
STRIPE_PM = "https://api.stripe.com/v1/payment_methods"


def stripe_headers(name: str) -> list[tuple[str, str]]:
    return [("Authorization", "Bearer sk_test_placeholder_not_a_real_key"),
            ("Stripe-Version", "2024-06-20"),
            ("Idempotency-Key", str(uuid.uuid5(NAMESPACE, "idempotency/" + name))),
            ("User-Agent", "Stripe/v1 PythonBindings/10.12.0")]


case(name="stripe-card-payment-method", file=BACKEND, vendor="Stripe",
     method="POST", url=STRIPE_PM, headers=stripe_headers("card"),
     body=form_body([("type", "card"), ("card[number]", S7["card"]),
                     ("card[exp_month]", "12"), ("card[exp_year]", "2028"),
                     ("billing_details[name]", full_name(S7)),
                     ("billing_details[email]", S7["email"])]),
     resp=json_resp({"id": "pm_1ExampleCard000000000000", "object": "payment_method",
                     "type": "card", "card": {"brand": "mastercard", "last4": "4444"}}),
     subjects=["cust-007"], expect=set(),
     carries="card number, name, email (form-urlencoded)",
     why="Stripe is declared for payment_card: sensitive but allowed. Payment needs no "
         "consent.")

case(name="stripe-sepa-iban", file=BACKEND, vendor="Stripe",
     method="POST", url=STRIPE_PM, headers=stripe_headers("sepa"),
     body=form_body([("type", "sepa_debit"), ("sepa_debit[iban]", S6["iban"]),
                     ("billing_details[name]", full_name(S6)),
                     ("billing_details[email]", S6["email"])]),
     resp=json_resp({"id": "pm_1ExampleSepa000000000000", "object": "payment_method",
                     "type": "sepa_debit", "sepa_debit": {"country": "FR", "last4": "0189"}}),
     subjects=["cust-006"], expect={"sensitive-data"},
     carries="IBAN, name, email (form-urlencoded)",
     why="iban is sensitive and not in Stripe's data list (only payment_card is).")

# --- Sentry: service (no consent), [ip_address, device_id], US/scc ---
SENTRY = "https://o450000.ingest.sentry.io/api/4500000"
SENTRY_HEADERS = [("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=sentry.python/2.19.0, "
                                    "sentry_key=examplePublicKeyPlaceholder00000"),
                  ("User-Agent", "sentry.python/2.19.0")]


def sentry_event(name: str, **extra) -> dict:
    return {"event_id": uuid.uuid5(NAMESPACE, "sentry/" + name).hex,
            "timestamp": "2026-06-15T10:00:00Z", "platform": "python", "level": "error",
            "logger": "shop.checkout", "environment": "staging", "release": "shop@4.2.0",
            "exception": {"values": [{"type": "TimeoutError",
                                      "value": "payment provider timed out"}]},
            **extra}


case(name="sentry-store-ip", file=BACKEND, vendor="Sentry",
     method="POST", url=f"{SENTRY}/store/", headers=SENTRY_HEADERS,
     body=json_body(sentry_event("ip", user={"ip_address": S9["ip"]})),
     resp=json_resp({"id": uuid.uuid5(NAMESPACE, "sentry/ip").hex}),
     subjects=["cust-009"], expect=set(),
     carries="IP address of the user in an error event",
     why="Sentry is declared for ip_address; service needs no consent; SCC for the US.")

envelope_event = sentry_event("email", user={"email": S2["email"]})
case(name="sentry-envelope-email", file=BACKEND, vendor="Sentry",
     method="POST", url=f"{SENTRY}/envelope/", headers=SENTRY_HEADERS,
     body=Body(b"\n".join([
         jdump({"event_id": envelope_event["event_id"], "sent_at": "2026-06-15T10:00:00Z"}),
         jdump({"type": "event", "content_type": "application/json"}),
         jdump(envelope_event)]) + b"\n", "application/x-sentry-envelope"),
     resp=json_resp({"id": envelope_event["event_id"]}),
     subjects=["cust-002"], expect={"excess-data"},
     carries="email in user context (envelope, NDJSON)",
     why="Sentry may receive ip_address and device_id only: an e-mail is excess (not "
         "sensitive, so not sensitive-data).")

case(name="sentry-store-card", file=BACKEND, vendor="Sentry",
     method="POST", url=f"{SENTRY}/store/", headers=SENTRY_HEADERS,
     body=json_body(sentry_event("card", extra={"payment_form": {
         "card_number": S7["card"], "exp_month": 12, "exp_year": 2028}})),
     resp=json_resp({"id": uuid.uuid5(NAMESPACE, "sentry/card").hex}),
     subjects=["cust-007"], expect={"sensitive-data"},
     carries="card number captured in an error's extra data",
     why="payment_card is sensitive and Sentry is not declared for it.")

# --- Helpdesk Outsourcing (IN, transfer none): service, [email, name, customer_id] ---
case(name="supportdesk-ticket-multipart", file=BACKEND, vendor="Helpdesk Outsourcing",
     method="POST", url="https://api.supportdesk.example/v2/tickets",
     headers=[("Authorization", "Basic cGxhY2Vob2xkZXI6WA=="),   # "placeholder:X"
              ("User-Agent", "python-requests/2.32.3")],
     body=multipart_body([("email", S9["email"]), ("name", full_name(S9)),
                          ("subject", "Colis non reçu"),
                          ("description", "Bonjour, je n'ai pas reçu mon colis. "
                                          "Merci de me recontacter."),
                          ("priority", "2"), ("status", "2"),
                          ("custom_fields[cf_customer_id]", S9["customer_id"])]),
     resp=json_resp({"id": 88001, "status": 2, "priority": 2}, 201),
     subjects=["cust-009"], expect={"unlawful-transfer"},
     carries="email, name, customer id (multipart/form-data)",
     why="Declared recipient in India (no adequacy decision) with transfer: none. Data "
         "and purpose (service) are declared.")

# --- Zapier: not declared anywhere ---
case(name="zapier-webhook-iban", file=BACKEND, vendor="Zapier (undeclared)",
     method="POST", url="https://hooks.zapier.com/hooks/catch/1234567/abcdef1/",
     headers=[("User-Agent", "python-requests/2.32.3")],
     body=json_body({"event": "refund.requested", "customer_id": S6["customer_id"],
                     "email": S6["email"], "iban": S6["iban"]}),
     resp=json_resp({"attempt": "0190a0b0-0000-7000-8000-000000000001",
                     "id": "0190a0b0-0000-7000-8000-000000000002", "status": "success"}),
     subjects=["cust-006"],
     expect={"undeclared-recipient", "sensitive-data", "unlawful-transfer"},
     carries="customer id, email, IBAN",
     why="Third party absent from the policy; the IBAN is sensitive and nobody is "
         "declared for it there. Nothing in the URL; undeclared recipients have no "
         "purposes, so no missing-consent. Zapier, Inc. is a US company (recipient "
         "catalogue) and nothing declares a transfer mechanism: unlawful-transfer.")

# --- Segment (server side): analytics, [customer_id, device_id, behavioural, email], US/dpf ---
SEGMENT_AUTH = ("Authorization",
                "Basic " + base64.b64encode(b"exampleWriteKeyPlaceholder:").decode())

case(name="segment-batch-gzip", file=BACKEND, vendor="Segment",
     method="POST", url="https://api.segment.io/v1/batch",
     headers=[SEGMENT_AUTH, ("User-Agent", "analytics-python/2.3.3")],
     body=json_body({"batch": [
         {"type": "identify", "userId": S9["customer_id"], "traits": {"email": S9["email"]},
          "messageId": str(uuid.uuid5(NAMESPACE, "segment/identify")),
          "timestamp": "2026-06-15T09:59:58Z"},
         {"type": "track", "userId": S9["customer_id"], "event": "Products Searched",
          "properties": {"query": "sac en cuir"},
          "messageId": str(uuid.uuid5(NAMESPACE, "segment/track")),
          "timestamp": "2026-06-15T09:59:59Z"}],
         "sentAt": "2026-06-15T10:00:00Z",
         "context": {"library": {"name": "analytics-python", "version": "2.3.3"}}},
         gzip=True),
     resp=json_resp({"success": True}),
     subjects=["cust-009"], expect=set(),
     carries="customer id, email, a search (gzip-compressed JSON)",
     why="Declared categories (customer_id, email, behavioural: a search, deliberately "
         "no product id or price, which could read as purchase) over HTTPS; cust-009 "
         "granted analytics.")

# --- Meta Conversions API: advertising, [email, phone, device_id, behavioural, purchase] ---
META_PIXEL_ID = "1234567890123456"
META_CAPI = f"https://graph.facebook.com/v19.0/{META_PIXEL_ID}/events"
META_HEADERS = [("Authorization", "Bearer EAAplaceholderNotARealAccessToken"),
                ("User-Agent", "facebook-python-business-sdk/19.0.3")]


def capi_event(s: dict, order: str, value: float, with_fbp: bool) -> dict:
    user = {"em": [sha256_email(s)], "ph": [sha256_phone(s)]}
    if with_fbp:
        user["fbp"] = s["fbp"]
    return {"data": [{"event_name": "Purchase", "event_time": int(T0), "event_id": order,
                      "action_source": "website",
                      "event_source_url": "https://shop.example/commande/confirmation",
                      "user_data": user,
                      "custom_data": {"currency": "EUR", "value": value,
                                      "content_ids": ["SKU-4411"], "content_type": "product"}}]}


META_CAPI_RESP = json_resp({"events_received": 1, "messages": [],
                            "fbtrace_id": "AExampleFbTraceId0001"})

case(name="meta-capi-purchase", file=BACKEND, vendor="Meta",
     method="POST", url=META_CAPI, headers=META_HEADERS,
     body=json_body(capi_event(S1, "CMD-2026-0415", 89.9, with_fbp=True)),
     resp=META_CAPI_RESP,
     subjects=["cust-001"], expect=set(),
     carries="sha256 email/phone, _fbp, order value, page URL (body only)",
     why="Everything declared for Meta, hashed identifiers only in the body, cust-001 "
         "granted advertising.")

case(name="meta-capi-no-advertising-consent", file=BACKEND, vendor="Meta",
     method="POST", url=META_CAPI, headers=META_HEADERS,
     body=json_body(capi_event(S10, "CMD-2026-0402", 129.5, with_fbp=False)),
     resp=META_CAPI_RESP,
     subjects=["cust-010"], expect={"missing-consent"},
     carries="sha256 email/phone, order value, page URL (body only)",
     why="Advertising needs consent; cust-010 never granted it.")

# --- TikTok Events API: not declared ---
case(name="tiktok-events-api", file=BACKEND, vendor="TikTok (undeclared)",
     method="POST", url="https://business-api.tiktok.com/open_api/v1.3/event/track/",
     headers=[("Access-Token", "placeholder-tiktok-access-token"),
              ("User-Agent", "python-requests/2.32.3")],
     body=json_body({"event_source": "web", "event_source_id": "CEXAMPLEPIXEL00000000",
                     "data": [{"event": "CompletePayment", "event_time": int(T0),
                               "user": {"email": sha256_email(S1), "phone": sha256_phone(S1)},
                               "properties": {"currency": "EUR", "value": 89.9},
                               "page": {"url": "https://shop.example/commande/confirmation"}}]}),
     resp=json_resp({"code": 0, "message": "OK", "request_id": "20260615100000EXAMPLE0001",
                     "data": {}}),
     subjects=["cust-001"], expect={"undeclared-recipient"},
     carries="sha256 email/phone, order value (body only)",
     why="Third party absent from the policy. Identifiers are only in the body (no "
         "pii-in-url), nothing sensitive.")

# =================================================================================
# browser.har: requests made by the shop's pages
# =================================================================================
SESSION_COOKIE = ("Cookie", "session=opaque-session-token-0001")
FIRST_PARTY_HEADERS = [("User-Agent", BROWSER_UA), ("Accept", "application/json"),
                       ("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.5"),
                       ("Origin", "https://shop.example"), SESSION_COOKIE]

# --- First party: shop.example (service), stats.shop.example (analytics) ---
case(name="firstparty-order-api", file=BROWSER, vendor="shop.example (first party)",
     method="POST", url="https://shop.example/api/v1/orders", headers=FIRST_PARTY_HEADERS,
     body=json_body({"customer_id": S3["customer_id"], "email": S3["email"],
                     "items": [{"sku": "SKU-4411", "qty": 1, "price": 89.9}],
                     "total": 89.9, "currency": "EUR"}),
     resp=json_resp({"order_id": "CMD-2026-0415", "status": "created"}, 201),
     subjects=["cust-003"], expect=set(),
     carries="customer id, email, basket",
     why="First party over HTTPS, purpose service (no consent), subject not erased: no "
         "rule applies.")

case(name="firstparty-contact-form-http", file=BROWSER, vendor="shop.example (first party)",
     method="POST", url="http://shop.example/api/v1/contact",
     headers=[h for h in FIRST_PARTY_HEADERS if h[0] != "Origin"]
     + [("Origin", "http://shop.example")],
     body=text_body(f"Bonjour, je suis {full_name(S3)} ({S3['email']}). "
                    "Pouvez-vous me rappeler ? Merci."),
     resp=json_resp({"ok": True, "ticket": 5121}),
     subjects=["cust-003"], expect={"clear-text"},
     carries="name, email in a plain-text body over http://",
     why="Personal data over http://. First party, so no disclosure rules; service "
         "purpose needs no consent.")

case(name="firstparty-cart-after-erasure", file=BROWSER, vendor="shop.example (first party)",
     method="POST", url="https://shop.example/api/v1/cart", headers=FIRST_PARTY_HEADERS,
     body=json_body({"customer_id": S5["customer_id"],
                     "items": [{"sku": "SKU-2077", "qty": 2}]}),
     resp=json_resp({"cart_id": "CART-88412", "items": 1}),
     subjects=["cust-005"], expect={"erased-subject"},
     carries="customer id, basket",
     why="erased-subject applies to first-party hosts too: cust-005 asked for erasure "
         "on 2026-05-20.")

STATS = "https://stats.shop.example/api/event"


def stats_event(s: dict) -> Body:
    return json_body({"name": "pageview", "customer_id": s["customer_id"],
                      "url": "https://shop.example/produits/sac-cuir"},
                     content_type="text/plain;charset=UTF-8")


case(name="stats-pageview-consented", file=BROWSER, vendor="stats.shop.example (first party)",
     method="POST", url=STATS, headers=BROWSER_HEADERS, body=stats_event(S1),
     resp=json_resp({"ok": True}, 202),
     subjects=["cust-001"], expect=set(),
     carries="customer id, page viewed",
     why="First-party endpoint declared for analytics; cust-001 granted analytics.")

case(name="stats-pageview-no-consent", file=BROWSER, vendor="stats.shop.example (first party)",
     method="POST", url=STATS, headers=BROWSER_HEADERS, body=stats_event(S3),
     resp=json_resp({"ok": True}, 202),
     subjects=["cust-003"], expect={"missing-consent"},
     carries="customer id, page viewed",
     why="First-party endpoint declared for analytics (consent required): applies even "
         "to first-party hosts; cust-003 never granted analytics.")

# --- Google Analytics 4: analytics, [device_id, behavioural], US/dpf ---
GA4 = "https://region1.google-analytics.com/g/collect"


def ga4_params(cid: str, dl: str, dt: str, *, before=(), after=()) -> str:
    """gtag.js hit: `before` goes after _p (e.g. consent mode), `after` after cid."""
    params = [("v", "2"), ("tid", "G-EXMPL12345"), ("gtm", "45je5660v9171902385za200"),
              ("_p", "1781517600123"), *before, ("cid", cid), *after,
              ("ul", "fr-fr"), ("sr", "1920x1080"),
              ("_s", "1"), ("sid", "1781517000"), ("sct", "3"), ("seg", "1"),
              ("dl", dl), ("dt", dt), ("en", "page_view")]
    return qs(params)


GA4_RESP = Resp(204, b"", "text/plain")
PRODUCT_PAGE = "https://shop.example/produits/sac-cuir"

case(name="ga4-page-view", file=BROWSER, vendor="Google Analytics 4",
     method="POST", url=f"{GA4}?{ga4_params(S9['ga_cid'], PRODUCT_PAGE, 'Sac en cuir')}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=["cust-009"], expect=set(),
     carries="client id (cid), page URL and title",
     why="device_id and behavioural are declared; the URL carries no direct identifier; "
         "cust-009 granted analytics.")

case(name="ga4-user-id", file=BROWSER, vendor="Google Analytics 4",
     method="POST",
     url=f"{GA4}?{ga4_params(S1['ga_cid'], PRODUCT_PAGE, 'Sac en cuir', after=[('uid', S1['customer_id'])])}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=["cust-001"], expect={"excess-data"},
     carries="client id, user id = customer id, page URL",
     why="customer_id (uid) is not in GA4's data list. customer_id is not a direct "
         "identifier, so no pii-in-url. cust-001 granted analytics.")

EMAIL_PAGE = f"https://shop.example/compte/confirmation?email={quote(S9['email'], safe='')}"
case(name="ga4-email-in-page-location", file=BROWSER, vendor="Google Analytics 4",
     method="POST", url=f"{GA4}?{ga4_params(S9['ga_cid'], EMAIL_PAGE, 'Compte confirmé')}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=["cust-009"], expect={"excess-data", "pii-in-url"},
     carries="client id, page URL that contains the email (double URL-encoded)",
     why="The page location leaks the e-mail into GA4's query string: email is not "
         "declared for GA4 (excess-data) and is a direct identifier in a third-party URL.")

case(name="ga4-no-analytics-consent", file=BROWSER, vendor="Google Analytics 4",
     method="POST", url=f"{GA4}?{ga4_params(S2['ga_cid'], PRODUCT_PAGE, 'Sac en cuir')}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=["cust-002"], expect={"missing-consent"},
     carries="client id, page URL",
     why="cust-002 (identified by their registered GA client id) never granted analytics.")

case(name="ga4-unknown-visitor-no-signal", file=BROWSER, vendor="Google Analytics 4",
     method="POST", url=f"{GA4}?{ga4_params(UNKNOWN_GA_CID, PRODUCT_PAGE, 'Sac en cuir')}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=[], expect={"missing-consent"},
     carries="client id of an unknown visitor, page URL",
     why="cid is a device id of nobody in the registry; no consent signal in the flow "
         "and unknown_subject: deny.")

case(name="ga4-unknown-visitor-consent-mode-granted", file=BROWSER,
     vendor="Google Analytics 4", method="POST",
     url=f"{GA4}?{ga4_params(UNKNOWN_GA_CID, PRODUCT_PAGE, 'Sac en cuir', before=[('gcs', 'G111')])}",
     headers=BROWSER_HEADERS, resp=GA4_RESP,
     subjects=[], expect=set(),
     carries="client id of an unknown visitor + Consent Mode gcs=G111",
     why="Same as the previous case, but Google Consent Mode gcs=G111 says "
         "analytics_storage is granted, which maps to analytics.")

# --- Meta Pixel: advertising; email hashed in the query string ---
case(name="meta-pixel-purchase-hashed-email", file=BROWSER, vendor="Meta",
     method="GET",
     url="https://www.facebook.com/tr/?" + qs([
         ("id", META_PIXEL_ID), ("ev", "Purchase"),
         ("dl", "https://shop.example/commande/confirmation"), ("rl", "https://shop.example/panier"),
         ("if", "false"), ("ts", "1781517900000"),
         ("cd[value]", "89.90"), ("cd[currency]", "EUR"),
         ("ud[em]", sha256_email(S1)), ("fbp", S1["fbp"]),
         ("sw", "1920"), ("sh", "1080"), ("v", "2.9.160"), ("r", "stable")]),
     headers=[h for h in BROWSER_HEADERS if h[0] != "Origin"],
     resp=Resp(200, PIXEL_GIF, "image/gif"),
     subjects=["cust-001"], expect={"pii-in-url"},
     carries="sha256(email) in the query, _fbp, order value, pages",
     why="Meta may receive hashed e-mails, but not in a URL: a hashed direct identifier "
         "in a third-party query string. cust-001 granted advertising.")

# --- Segment (browser, analytics.js) over plain http ---
case(name="segment-track-http", file=BROWSER, vendor="Segment",
     method="POST", url="http://api.segment.io/v1/t",
     headers=[h for h in BROWSER_HEADERS if h[0] != "Origin"]
     + [("Origin", "http://shop.example"), SEGMENT_AUTH],
     body=json_body({"type": "track", "event": "Products Searched",
                     "userId": S9["customer_id"], "anonymousId": S9["segment_anon"],
                     "properties": {"query": "sac en cuir"},
                     "context": {"page": {"path": "/produits/sac-cuir",
                                          "url": PRODUCT_PAGE}},
                     "messageId": str(uuid.uuid5(NAMESPACE, "segment/http")),
                     "timestamp": "2026-06-15T10:05:00Z"},
                    content_type="text/plain"),
     resp=json_resp({"success": True}),
     subjects=["cust-009"], expect={"clear-text"},
     carries="customer id, anonymous id, a search over http://",
     why="Only the scheme is wrong: declared recipient and data, cust-009 granted "
         "analytics.")

# --- Criteo OneTag: not declared; hashed email in the query ---
case(name="criteo-onetag-hashed-email", file=BROWSER, vendor="Criteo (undeclared)",
     method="GET",
     url="https://sslwidget.criteo.com/event?" + qs([
         ("a", "98765"), ("v", "5.23.0"), ("otl", "1"),
         ("p0", "e=exd&site_type=d"),
         ("p1", "e=vh&tms=gtm-template"),
         ("p2", f"e=ce&m={sha256_email(S9)}&h=sha256"),
         ("dc", "1")]),
     headers=[h for h in BROWSER_HEADERS if h[0] != "Origin"],
     resp=json_resp({"status": "OK"}),
     subjects=["cust-009"], expect={"undeclared-recipient", "pii-in-url"},
     carries="sha256(email) in the query",
     why="Third party absent from the policy, with a hashed e-mail in its URL.")

# --- Klaviyo legacy identify: not declared; base64 JSON in the query ---
klaviyo_payload = base64.b64encode(jdump({
    "token": "ExAmPl",
    "properties": {"$email": S10["email"], "$first_name": S10["first"],
                   "$last_name": S10["last"]}})).decode()
case(name="klaviyo-identify-base64", file=BROWSER, vendor="Klaviyo (undeclared)",
     method="GET", url="https://a.klaviyo.com/api/identify?" + qs([("data", klaviyo_payload)]),
     headers=[h for h in BROWSER_HEADERS if h[0] != "Origin"],
     resp=Resp(200, b"1", "text/html; charset=utf-8"),
     subjects=["cust-010"], expect={"undeclared-recipient", "pii-in-url", "unlawful-transfer"},
     carries="email and name inside base64 JSON in the query",
     why="Third party absent from the policy; the base64-encoded e-mail and name sit in "
         "its URL. Klaviyo, Inc. is a US company (recipient catalogue) and nothing declares "
         "a transfer mechanism: unlawful-transfer.")


# =================================================================================
# Building flows
# =================================================================================
def build_flow(c: Case, index: int) -> http.HTTPFlow:
    t = T0 + STEP * index
    flow_id = str(uuid.uuid5(NAMESPACE, c.name))
    https = c.url.startswith("https://")
    host = c.url.split("/")[2]
    port = 443 if https else 80

    headers = [("Host", host), *c.headers]
    if c.body.content_type:
        headers.append(("Content-Type", c.body.content_type))
    if c.body.gzip:
        headers.append(("Content-Encoding", "gzip"))
    req = http.Request.make(c.method, c.url, b"", http.Headers(
        [(k.encode(), v.encode()) for k, v in headers]))
    # Assigning .content encodes it according to Content-Encoding (gzip, mtime 0)
    # and sets Content-Length.
    if c.body.content or c.method in ("POST", "PUT", "PATCH"):
        req.content = c.body.content
    req.timestamp_start = t
    req.timestamp_end = t + 0.002

    resp_headers = [("Date", datetime.fromtimestamp(t, timezone.utc)
                     .strftime("%a, %d %b %Y %H:%M:%S GMT"))]
    if c.resp.content_type:
        resp_headers.append(("Content-Type", c.resp.content_type))
    resp = http.Response.make(c.resp.status, c.resp.content, http.Headers(
        [(k.encode(), v.encode()) for k, v in resp_headers]))
    resp.timestamp_start = t + 0.080
    resp.timestamp_end = t + 0.082

    tls_kw = dict(tls=True, sni=host, tls_version="TLSv1.3", alpn=b"http/1.1",
                  cipher="TLS_AES_128_GCM_SHA256") if https else {}
    client = connection.Client(
        id=str(uuid.uuid5(NAMESPACE, c.name + "/client")),
        peername=("192.0.2.10", 50000 + index), sockname=("192.0.2.1", 8080),
        proxy_mode=ProxyMode.parse("regular"), state=ConnectionState.CLOSED,
        timestamp_start=t - 0.050, timestamp_tls_setup=(t - 0.030) if https else None,
        timestamp_end=t + 0.100, **tls_kw)
    server = connection.Server(
        id=str(uuid.uuid5(NAMESPACE, c.name + "/server")),
        address=(host, port), state=ConnectionState.CLOSED,
        timestamp_start=t - 0.040, timestamp_tcp_setup=t - 0.030,
        timestamp_tls_setup=(t - 0.020) if https else None, timestamp_end=t + 0.100,
        **tls_kw)

    f = tflow(client_conn=client, server_conn=server, req=req, resp=resp, live=False)
    f.id = flow_id
    f.timestamp_created = t
    return f


def check_registry() -> None:
    """Check that SUBJECTS above matches policies/subjects.yaml (if PyYAML is here)."""
    try:
        import yaml
    except ImportError:
        return
    path = HERE.parent / "policies" / "subjects.yaml"
    registry = {s["id"]: s["identifiers"] for s in yaml.safe_load(path.read_text())["subjects"]}
    keys = {"email": "email", "phone": "phone", "customer_id": "customer_id",
            "iban": "iban", "card": "payment_card", "nir": "national_id", "ip": "ip_address"}
    for sid, s in SUBJECTS.items():
        ids = registry[sid]
        for k, reg_key in keys.items():
            if k in s:
                assert str(ids[reg_key]) == s[k], (sid, k)
        name = ids.get("name") or f"{ids['first_name']} {ids['last_name']}"
        assert name == full_name(s), (sid, name)
        devices = ids.get("device_id", [])
        devices = [devices] if isinstance(devices, str) else devices
        for k in ("ga_cid", "fbp", "segment_anon"):
            if k in s:
                assert s[k] in devices, (sid, k)
        if "street" in s:
            addr = ids["postal_address"]
            assert s["street"] in addr and s["zip"] in addr and s["city"] in addr, sid


def readme(rows: list[dict]) -> str:
    out = [
        "# Sample captures",
        "",
        "Generated by `generate.py` (do not edit by hand: edit the script and re-run it).",
        "All people, companies and identifiers are fictitious; the policy and the subject",
        "registry they are judged against are in `policies/`.",
        "",
        "Regenerate (Python >= 3.12 with mitmproxy 12):",
        "",
        "    python captures/generate.py",
        "",
        "The output is deterministic: running it twice gives byte-identical files.",
        "",
        "| file | content |",
        "|---|---|",
        "| `backend.flow` | server-to-server calls, mitmproxy's native flow format |",
        "| `browser.har` | calls made by the shop's web pages, HAR 1.2 |",
        "| `expected.json` | for every flow: file, index, flow id, subjects, expected rules and why |",
        "",
        "All flows are dated 2026-06-15 from 10:00:00 UTC (one every 20 s), which is when",
        "consent and erasure are judged. `expected.json` lists the violations each flow",
        "has *by construction* (written by hand in `generate.py`, next to each case),",
        "as sorted rule ids; an empty list means a clean flow.",
        "",
        "HAR does not store mitmproxy flow ids: when mitmproxy's `FlowReader` reads",
        "`browser.har`, it gives the flows fresh random ids. Match HAR flows by their",
        "position (`index`, 0-based, in `log.entries`); each entry also keeps the id it",
        "was generated with in a custom `_flow_id` field (HAR allows `_`-prefixed fields).",
        "",
        "| # | file | case | vendor | carries | expected rules |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        rules = ", ".join(f"`{x}`" for x in r["rules"]) or "none (clean)"
        out.append(f"| {i} | {r['file']} | `{r['name']}` | {r['vendor']} | {r['carries']} | {rules} |")
    counts = {rule: sum(rule in r["rules"] for r in rows) for rule in sorted(RULES)}
    clean = sum(not r["rules"] for r in rows)
    out += ["", f"{len(rows)} flows: {clean} clean; flows per rule: "
            + ", ".join(f"`{k}` {v}" for k, v in counts.items()) + ".", ""]
    return "\n".join(out)


def main() -> None:
    check_registry()
    flows: dict[str, list[http.HTTPFlow]] = {BACKEND: [], BROWSER: []}
    rows = []
    for i, c in enumerate(CASES):
        f = build_flow(c, i)
        rows.append({"file": c.file, "index": len(flows[c.file]), "flow_id": f.id,
                     "name": c.name, "vendor": c.vendor, "carries": c.carries,
                     "method": c.method, "host": f.request.host,
                     "timestamp": datetime.fromtimestamp(f.request.timestamp_start,
                                                         timezone.utc).isoformat(),
                     "subjects": sorted(c.subjects),
                     "description": c.why, "rules": sorted(c.expect)})
        flows[c.file].append(f)

    with open(HERE / BACKEND, "wb") as fo:
        writer = FlowWriter(fo)
        for f in flows[BACKEND]:
            writer.add(f)

    har = SaveHar().make_har(flows[BROWSER])
    for entry, f in zip(har["log"]["entries"], flows[BROWSER], strict=True):
        entry["_flow_id"] = f.id
    (HERE / BROWSER).write_text(json.dumps(har, indent=2, ensure_ascii=False) + "\n",
                                encoding="utf-8")

    expected = [{k: r[k] for k in ("flow_id", "file", "index", "name", "method", "host",
                                   "timestamp", "subjects", "description", "rules")}
                for r in rows]
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (HERE / "README.md").write_text(readme(rows), encoding="utf-8")
    print(f"wrote {len(flows[BACKEND])} flows to {BACKEND}, {len(flows[BROWSER])} to "
          f"{BROWSER}, expectations to expected.json")


if __name__ == "__main__":
    main()
