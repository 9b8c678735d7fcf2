"""`behavioural` and `purchase` as SPEC 3.5 draws them (issue 21, point 3).

Testing strategy: whole flows of the shapes SDKs and messaging APIs send, through the Auditor
and the conftest policy (alice: customer id C-9001, email alice.martin@example.org). Each case
lists every behavioural, purchase and payment_card finding it must make, as (category, key):
the real events, pages and order values must be caught, while an SDK's own metadata (library
name, version and script URL, `$lib`, `$os`, a user agent), an API's verb (`addObject`,
`upsert`, `action=track`), a diagnostic marker and the text of a message the company sends
(push headings, an email's subject and html) must be avoided. Truncated card numbers are
purchase data, never payment_card. The rules then show the point of it: no false
`excess-data`, and behavioural or purchase data alone (no identifier) is no violation.
"""

import base64
import json
from urllib.parse import urlencode

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import Policy

WATCHED = {"behavioural", "purchase", "payment_card"}
FORM = "application/x-www-form-urlencoded"


def _b64(payload: object) -> str:
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


MIXPANEL_EVENTS = [{"event": "Played Song", "properties": {
    "distinct_id": "C-9001", "token": "0123456789abcdef", "$lib": "web", "mp_lib": "web",
    "$lib_version": "2.55.0", "$os": "Mac OS X", "$browser": "Firefox",
    "$current_url": "https://shop.example/radio"}},
    {"event": "$heartbeat", "properties": {"distinct_id": "C-9001", "token": "0123456789abcdef"}}]

# (id, url, body, content type, expected {(category, key)})
CASES = [
    # A Segment-like batch: the event and the page are behavioural, the library is not.
    ("segment batch", "https://api.segment.example/v1/batch", {"batch": [{
        "type": "track", "event": "Order Completed", "userId": "C-9001",
        "properties": {"revenue": 59.9, "ltv": 310.5, "last_order_date": "2026-05-02",
                       "cart_value": 42.0},
        "context": {"library": {"name": "analytics.js", "version": "4.1.0",
                                "url": "https://cdn.segment.example/v1/analytics.min.js"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
                    "page": {"url": "https://shop.example/checkout", "title": "Checkout"}}}]},
     "application/json",
     {("behavioural", "batch[0].event"), ("behavioural", "batch[0].context.page.url"),
      ("purchase", "batch[0].properties.revenue"), ("purchase", "batch[0].properties.ltv"),
      ("purchase", "batch[0].properties.last_order_date"),
      ("purchase", "batch[0].properties.cart_value")}),
    # Mixpanel-like: events in a base64 `data` parameter; `$lib`, `$os`, a heartbeat are not.
    ("mixpanel base64", "https://api.mixpanel.example/track?ip=1&data=" + _b64(MIXPANEL_EVENTS),
     None, None,
     {("behavioural", "data[0].event"), ("behavioural", "data[0].properties.$current_url")}),
    # Matomo's structured event (e_c, e_a, e_n) and GA Universal's (ec, ea, el).
    ("matomo event", "https://stats.example/matomo.php?" + urlencode(
        {"idsite": "1", "rec": "1", "e_c": "Video", "e_a": "Play", "e_n": "Intro",
         "uid": "C-9001"}), None, None,
     {("behavioural", "e_c"), ("behavioural", "e_a"), ("behavioural", "e_n")}),
    ("ga universal event", "https://ga.example/collect?" + urlencode(
        {"v": "1", "t": "event", "ec": "Video", "ea": "play", "el": "Intro", "uid": "C-9001"}),
     None, None, {("behavioural", "ec"), ("behavioural", "ea"), ("behavioural", "el")}),
    # GA4's Measurement Protocol: an event's name under `events`, not a product's name.
    ("ga4 events array", "https://ga.example/mp/collect", {
        "client_id": "1234.5678", "user_id": "C-9001",
        "events": [{"name": "level_up", "params": {"level": 3}},
                   {"name": "purchase", "params": {"items": [{"name": "Chair"}]}}]},
     "application/json", {("behavioural", "events[*].name")}),
    # A push notification the company sends: its headings, text and buttons are its own.
    ("push notification", "https://push.example/api/v1/notifications", {
        "app_id": "app-1", "include_external_user_ids": ["C-9001"],
        "headings": {"en": "Sale"}, "contents": {"en": "50% off running shoes today"},
        "webpush": {"notification": {"title": "Sale", "body": "50% off",
                                     "data": {"url": "https://shop.example/sale"}}}},
     "application/json", set()),
    # An email send: subject, html (its links and their query) and text are the message.
    ("email send", "https://api.mail.example/v3/mail/send", {
        "personalizations": [{"to": [{"email": "alice.martin@example.org"}]}],
        "subject": "Your order has shipped",
        "html": "<a href='https://shop.example/orders?page=2'>Track</a>",
        "text": "Track your order: https://shop.example/orders?page=2"},
     "application/json", set()),
    ("sms send", "https://api.sms.example/messages", {
        "to": "C-9001", "sms": {"text": "Your code", "url": "https://shop.example/s"}},
     "application/json", set()),
    # A search index's batch: `action` names the operation, not what anyone did.
    ("search index batch", "https://idx.search.example/1/indexes/*/batch", {"requests": [
        {"action": "addObject", "body": {"objectID": "C-9001", "total_spent": 99}},
        {"action": "partialUpdateObject", "body": {"objectID": "C-9001"}},
        {"action": "upsert", "body": {"objectID": "C-9001"}}]},
     "application/json", {("purchase", "requests[0].body.total_spent")}),
    ("track as a method", "https://events.example/api?" + urlencode(
        {"action": "track", "uid": "C-9001", "event": "Signed Up"}), None, None,
     {("behavioural", "event")}),
    # Truncated card numbers, by key and by value: purchase, not payment_card.
    ("truncated cards", "https://pay.example/v1/charges", urlencode({
        "customer": "C-9001", "last4": "4242", "card_last4": "0005",
        "masked_pan": "424242******4242", "description": "Paid with Visa ending in 0005",
        "lifetime_value": "310.50", "last_order_id": "O-1001", "basket_value": "42.00"}),
     FORM, {("purchase", "last4"), ("purchase", "card_last4"), ("purchase", "masked_pan"),
            ("purchase", "description"), ("purchase", "lifetime_value"),
            ("purchase", "last_order_id"), ("purchase", "basket_value")}),
    # A card number that passes Luhn is still one.
    ("full card", "https://pay.example/v1/charges", urlencode(
        {"customer": "C-9001", "number": "4242424242424242"}), FORM,
     {("payment_card", "number")}),
]


def _flow(url: str, body: object, content_type: str | None):
    if body is None:
        return make_flow(url)
    content = json.dumps(body) if not isinstance(body, str) else body
    return make_flow(url, "POST", content, {"content-type": content_type})


@pytest.mark.parametrize(("url", "body", "content_type", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_behavioural_and_purchase(policy: Policy, url, body, content_type, expected) -> None:
    audit = Auditor(policy).audit(_flow(url, body, content_type))
    assert audit.error is None
    assert {(f.category, f.field.key) for f in audit.findings if f.category in WATCHED} == expected


@pytest.mark.parametrize("value", ["424242******4242", "XXXX-XXXX-XXXX-4242",
                                   "************0005", "card ending 0005"])
def test_truncated_card_is_never_a_card_number(policy: Policy, value: str) -> None:
    flow = _flow("https://pay.example/v1/x", urlencode({"note": value}), FORM)
    categories = {f.category for f in Auditor(policy).audit(flow).findings}
    assert "payment_card" not in categories


def test_message_text_makes_no_excess_data(policy: Policy) -> None:
    """The Mailer is declared for email and name: a transactional send with its own links is
    no excess-data, as an event would be."""
    body = {"to": "alice.martin@example.org", "subject": "Your order",
            "html": "<a href='https://shop.example/o?page=2'>Track</a>"}
    flow = _flow("https://eu.mailer.test/smtp/send", body, "application/json")
    assert {v.rule for v in Auditor(policy).audit(flow).violations} == set()
    body["event"] = "Order Completed"
    flow = _flow("https://eu.mailer.test/smtp/send", body, "application/json")
    assert {v.rule for v in Auditor(policy).audit(flow).violations} == {"excess-data"}


@pytest.mark.parametrize(("query", "expected"), [
    ({"e_c": "Video", "e_a": "Play", "ltv": "310"}, set()),  # no identifier: nobody's
    ({"e_c": "Video", "e_a": "Play", "ltv": "310", "uid": "C-9001"}, {"undeclared-recipient"}),
])
def test_behavioural_and_purchase_need_an_identifier(policy: Policy, query, expected) -> None:
    flow = make_flow("https://stats.elsewhere.example/matomo.php?" + urlencode(query))
    assert {v.rule for v in Auditor(policy).audit(flow).violations} == expected


@pytest.mark.parametrize(("key", "category"), [
    ("batch[0].properties.product_id", "behavioural"),  # a product viewed
    ("events[0].event_properties.sku", "behavioural"),
    ("data.product_id", "behavioural"),
    ("order.items[0].sku", "purchase"),  # a product bought
    ("cart.products[2].product_id", "purchase"),
    ("line_items[0].sku", "purchase"),
    ("properties.cart_items", "purchase"),  # a basket's content
])
def test_a_product_is_bought_only_in_an_order_or_a_basket(key: str, category: str) -> None:
    from gdpr_audit.detectors.fieldnames import label_of
    label = label_of("body", key)
    assert label is not None and label.category == category
