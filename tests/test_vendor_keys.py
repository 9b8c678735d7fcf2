"""The integration's own API keys are not personal data (SPEC 3.5), a person's secrets are.

Testing strategy: each vendor's key in the place its documentation puts it (header, query,
form or JSON body, Basic auth), sent to that vendor's host with nothing else in the request:
no finding of any category may come of it. The avoid table sends a person's password,
one-time code, reset and magic-login tokens: each must still be a `credentials` finding.
Every key and token here is made up, in the vendor's shape.
"""

import base64
import json

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def b64json(data: dict) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}
HEX32 = "0123456789abcdef0123456789abcdef"

VENDOR_KEYS = [
    ("stripe bearer", "https://api.stripe.com/v1/charges",
     {"Authorization": "Bearer sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUv"}, ""),
    ("stripe basic", "https://api.stripe.com/v1/customers",
     {"Authorization": basic("sk_test_4eC39HqLyjWDarjtT1zdp7dc")}, ""),
    ("stripe restricted key in a form", "https://api.stripe.com/v1/refunds",
     FORM, "secret_key=rk_live_51HxYzAbCdEfGhIjKlMnOpQrStUv"),
    ("stripe.js client secret", "https://api.stripe.com/v1/payment_intents/pi_3Mtw/confirm",
     FORM, "client_secret=pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH"
           "&key=pk_live_51HxYzAbCdEfGhIjKlMnOpQr"),
    ("ga4 api_secret", "https://www.google-analytics.com/mp/collect?measurement_id=G-ABC123"
     "&api_secret=Xy12AbCdEfGhIjKlMnOpQr", {}, ""),
    ("sendgrid", "https://api.sendgrid.com/v3/mail/send",
     {"Authorization": "Bearer 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"}, ""),
    ("sendgrid smtp password", "https://smtp.sendgrid.net/login", FORM,
     "username=apikey&password=SG.ngeVfQFYQlKU0ufo8x5d1A.TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc"),
    ("brevo", "https://api.brevo.com/v3/smtp/email",
     {"api-key": "xkeysib-" + HEX32 * 2 + "-AbCdEfGhIjKlMnOp"}, ""),
    ("mailgun", "https://api.mailgun.net/v3/mg.shop.test/messages",
     {"Authorization": basic("api", "key-3ax6xnjp29jd6fds4gc373sgvjxteol0")}, ""),
    ("segment basic", "https://api.segment.io/v1/track",
     {"Authorization": basic("wk9AbCdEfGhIjKlMnOpQrStUv")}, ""),
    ("segment writeKey", "https://api.segment.io/v1/batch", JSON,
     json.dumps({"writeKey": "wk9AbCdEfGhIjKlMnOpQrStUv", "batch": []})),
    ("mixpanel token", "https://api.mixpanel.com/engage?data="
     + b64json({"$token": HEX32, "$distinct_id": None}), {}, ""),
    ("hubspot hapikey", "https://api.hubapi.com/contacts/v1/lists/all/contacts/all"
     "?hapikey=0123abcd-4567-89ef-0123-456789abcdef", {}, ""),
    ("hubspot private app", "https://api.hubapi.com/crm/v3/objects/contacts",
     {"Authorization": "Bearer pat-na1-01234567-89ab-cdef-0123-456789abcdef"}, ""),
    ("twilio", "https://api.twilio.com/2010-04-01/Accounts/AC" + HEX32 + "/Calls.json",
     {"Authorization": basic("AC" + HEX32, HEX32)}, ""),
    ("twilio api key secret", "https://api.twilio.com/2010-04-01/Accounts.json", FORM,
     "api_secret=" + HEX32 + "&api_key=SK" + HEX32),
    ("mailchimp basic", "https://us6.api.mailchimp.com/3.0/lists",
     {"Authorization": basic("anystring", HEX32 + "-us6")}, ""),
    ("mailchimp apikey", "https://us6.api.mailchimp.com/2.0/lists/list.json?apikey="
     + HEX32 + "-us6", {}, ""),
    ("intercom", "https://api.intercom.io/contacts",
     {"Authorization": "Bearer dG9rOjAxMjM0NTY3Xzg5YWJfY2RlZl8wMTIzXzQ1Njc4OWFiOjE6MA=="}, ""),
    ("zendesk", "https://shop.zendesk.com/api/v2/tickets.json",
     {"Authorization": "Bearer 7a6f0d2c9b8e4f1a3c5d7e9f0b2d4f6a8c0e2a4b6d8f0a2c4e6b8d0f2a4c6e8"}, ""),
    ("algolia", "https://abc123-dsn.algolia.net/1/indexes/products/query"
     "?x-algolia-api-key=" + HEX32 + "&x-algolia-application-id=ABC123",
     {"X-Algolia-API-Key": HEX32}, ""),
    ("sentry query", "https://o1.ingest.sentry.io/api/4/store/?sentry_version=7&sentry_key="
     + HEX32 + "&sentry_secret=" + HEX32[::-1], {}, ""),
    ("sentry header", "https://o1.ingest.sentry.io/api/4/envelope/",
     {"X-Sentry-Auth": f"Sentry sentry_version=7, sentry_key={HEX32}, sentry_secret={HEX32}"}, ""),
    ("oauth client credentials", "https://auth.vendor.test/oauth/token", FORM,
     "grant_type=client_credentials&client_secret=Zx81kLmQpR2sT4uV6wX8"),
]


@pytest.fixture(scope="module")
def auditor(tmp_path_factory):
    from conftest import POLICY, write
    from gdpr_audit.policy import load_policy
    return Auditor(load_policy(write(tmp_path_factory.mktemp("p") / "policy.yaml", POLICY)))


def audited(auditor, url, headers, body):
    return auditor.audit(make_flow(url, "POST" if body else "GET", body, headers))


@pytest.mark.parametrize(("url", "headers", "body"), [case[1:] for case in VENDOR_KEYS],
                         ids=[case[0] for case in VENDOR_KEYS])
def test_an_integration_key_is_no_finding(auditor, url, headers, body):
    result = audited(auditor, url, headers, body)
    assert [(f.category, f.field.key) for f in result.findings] == []
    assert result.violations == []


PERSON_SECRETS = [
    ("password", "https://auth.vendor.test/oauth/token", JSON,
     json.dumps({"grant_type": "password", "username": "someone", "password": "correct horse"})),
    ("new password", "https://auth.vendor.test/users/me", JSON,
     json.dumps({"newPassword": "n3w-Secret!"})),
    ("passwd form", "https://auth.vendor.test/login", FORM, "login=someone&passwd=hunter22"),
    ("otp", "https://auth.vendor.test/verify", JSON, json.dumps({"otp": "492817"})),
    ("totp", "https://auth.vendor.test/2fa", FORM, "totp=492817"),
    ("verification code", "https://auth.vendor.test/2fa", JSON,
     json.dumps({"verification_code": "492817"})),
    ("reset token in the query", "https://auth.vendor.test/reset?reset_token=Zx81kLmQpR2sT4uV6wX8",
     {}, ""),
    ("reset token in a body", "https://auth.vendor.test/reset", JSON,
     json.dumps({"resetToken": "Zx81kLmQpR2sT4uV6wX8"})),
    ("magic login token", "https://auth.vendor.test/magic?magic_token=Zx81kLmQpR2sT4uV6wX8", {}, ""),
    ("password that looks like nothing special", "https://auth.vendor.test/login", FORM,
     "password=sk_is_my_password"),
]


@pytest.mark.parametrize(("url", "headers", "body"), [case[1:] for case in PERSON_SECRETS],
                         ids=[case[0] for case in PERSON_SECRETS])
def test_a_persons_secret_stays_credentials(auditor, url, headers, body):
    result = audited(auditor, url, headers, body)
    assert "credentials" in {f.category for f in result.findings}
    assert "sensitive-data" in {v.rule for v in result.violations}
