"""Record the SDK corpus: drive eleven vendors' official Python SDKs through a local mitmproxy that
answers every request itself, and save what they sent as sdk.flow.

    .venv/bin/pip install -e '.[sdk-corpus]'
    .venv/bin/python bench/sdk_corpus/record.py [OUT.flow]

mitmdump (from this interpreter's folder) listens on 127.0.0.1 only, with
`connection_strategy=lazy` and responder.py, so nothing ever reaches a vendor. Every SDK is
pointed at it the way a user would: HTTP(S)_PROXY and the mitmproxy CA of a temporary confdir
(REQUESTS_CA_BUNDLE, SSL_CERT_FILE), or the SDK's own proxy and CA options where it has them.
The people are the synthetic subjects of subjects.yaml; each call says in a comment what it is
meant to break (or not) under policy.yaml. The labels (truth.json) are written by hand from these
calls, not from this script's output and not from the product's.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FROM = "commandes@atelier.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_proxy(out: Path, confdir: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mitmdump"), "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"confdir={confdir}", "--set", "connection_strategy=lazy",
         "-s", str(HERE / "responder.py"), "-w", str(out), "-q"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if (Path(confdir) / "mitmproxy-ca-cert.pem").exists():
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("mitmdump did not start")


def settle() -> None:
    """Let the last request reach the flow file before the next SDK starts (keeps the order)."""
    time.sleep(0.3)


# --- one driver per SDK; each call names the subject and what it should break ----------------

def posthog_calls(proxy: str, ca: str) -> None:
    from posthog import Posthog
    ph = Posthog("phc_SYNTHETICprojectkey000000000000000000000", host="https://eu.i.posthog.com",
                 sync_mode=True, disable_geoip=True)
    # S01, consented to analytics: clean (customer id, a page they viewed)
    ph.capture("product_viewed", distinct_id="C-3001",
               properties={"product_id": "SKU-1001", "$current_url": "https://atelier.example/p/sac-cabas"})
    # S04, consented to analytics: clean (email and name are declared for PostHog)
    ph.set(distinct_id="C-3004", properties={"email": "julien.bonnet@example.fr", "name": "Julien Bonnet"})
    # S03, no consent at all: missing-consent
    ph.capture("checkout_started", distinct_id="C-3003", properties={"cart_items": 2})
    # S07, erasure requested 2026-10-01: erased-subject
    ph.capture("page_viewed", distinct_id="C-3007", properties={"$current_url": "https://atelier.example/compte"})
    # S05 (analytics granted): birth date not declared for PostHog: excess-data; the date is
    # shared with S04 and S11, so only the customer id names S05
    ph.set(distinct_id="C-3005", properties={"birthday": "1988-07-14"})
    ph.shutdown()


def amplitude_calls(proxy: str, ca: str) -> None:
    from amplitude import Amplitude, BaseEvent, Config
    client = Amplitude("synthetic0amplitude0api0key00000", Config(server_zone="EU", flush_queue_size=1))
    events = [
        # S08 (analytics granted), registry device id: unlawful-transfer only (US, transfer: none)
        BaseEvent(event_type="Search performed", user_id="C-3008", device_id="amp-dev-9b61f0e3-0008",
                  event_properties={"search_term": "robe lin"}),
        # S10, no consent: missing-consent + unlawful-transfer
        BaseEvent(event_type="Added to wishlist", user_id="C-3010", event_properties={"sku": "SKU-2040"}),
        # nobody the registry knows: an unknown device, no consent signal, unknown_subject: deny
        BaseEvent(event_type="App opened", device_id="3f1d7c0e-5b2a-4e8f-9c61-0d4b2a7e9f13"),
        # S16, analytics withdrawn 2026-11-15; revenue is purchase, not declared: three rules
        BaseEvent(event_type="Subscription renewed", user_id="C-3016", revenue=9.9, price=9.9,
                  quantity=1, product_id="PLAN-PREMIUM"),
    ]
    for event in events:
        client.track(event)
        client.flush()
        time.sleep(0.5)
    client.shutdown()


def sendgrid_calls(proxy: str, ca: str) -> None:
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Mail, To
    sg = SendGridAPIClient("SG.synthetic-key.synthetic-secret-0000000000000000000000")
    # S02: order confirmation, transactional: clean
    mail = Mail(from_email=FROM, to_emails=To("nathan.girard@example.com", "Nathan Girard"))
    mail.template_id = "d-0c5b9a2e1f0000000000000000000000"
    mail.dynamic_template_data = {"first_name": "Nathan", "order_id": "A-1042", "order_total": "59.90 EUR"}
    sg.send(mail)
    # S09: a password-reset link is the person's credential, not declared: sensitive-data
    mail = Mail(from_email=FROM, to_emails=To("ines.blanc@example.org", "Inès Blanc"),
                subject="Réinitialiser votre mot de passe",
                html_content='<a href="https://atelier.example/reset-password?token='
                             'q7Xv2LmN9pR4sT8wY1zB6cD3fG5hJ0kA">Choisir un nouveau mot de passe</a>')
    sg.send(mail)
    # S07, erased: shipping notice after the erasure request: erased-subject
    mail = Mail(from_email=FROM, to_emails=To("elise.marchand@example.fr", "Élise Marchand"),
                subject="Votre colis est en route", html_content="<p>Votre colis est en route.</p>")
    sg.send(mail)


def klaviyo_calls(proxy: str, ca: str) -> None:
    import openapi_client
    original = openapi_client.Configuration.__init__

    def configured(self, *args, **kwargs):  # the SDK builds its Configuration itself
        original(self, *args, **kwargs)
        self.proxy, self.ssl_ca_cert = proxy, ca

    openapi_client.Configuration.__init__ = configured
    from klaviyo_api import KlaviyoAPI
    k = KlaviyoAPI("pk_synthetic0000000000000000000000", max_delay=0.1, max_retries=0)

    def profile(attributes: dict) -> None:
        try:
            k.Profiles.create_profile({"data": {"type": "profile", "attributes": attributes}})
        except Exception as e:  # the reply's shape; the request was sent
            print("klaviyo:", type(e).__name__, file=sys.stderr)

    # S09, newsletter granted: clean
    profile({"email": "ines.blanc@example.org", "phone_number": "+33670000109",
             "first_name": "Inès", "last_name": "Blanc", "external_id": "C-3009"})
    # S05, newsletter withdrawn 2026-09-01: missing-consent
    profile({"email": "sarah.dupuis@example.com", "first_name": "Sarah", "last_name": "Dupuis"})
    # S14, newsletter granted, with the postal address (not declared): excess-data
    profile({"email": "louis.robin@example.com", "location": {
        "address1": "19 rue Saint-Michel", "city": "Rennes", "zip": "35000", "country": "France"}})
    # a prospect the registry does not know, no signal, unknown_subject: deny: missing-consent
    profile({"email": "prospect.vendee@example.net", "first_name": "Prospect"})
    # S17, newsletter granted: an order event (behavioural, purchase not declared): excess-data
    try:
        k.Events.create_event({"data": {"type": "event", "attributes": {
            "properties": {"OrderId": "A-1077", "ItemNames": ["Sac cabas"]},
            "value": 120.0, "value_currency": "EUR",
            "metric": {"data": {"type": "metric", "attributes": {"name": "Placed Order"}}},
            "profile": {"data": {"type": "profile", "attributes": {"email": "jade.fournier@example.com"}}}}}})
    except Exception as e:
        print("klaviyo:", type(e).__name__, file=sys.stderr)


def customerio_calls(proxy: str, ca: str) -> None:
    from customerio import CustomerIO, Regions
    cio = CustomerIO("synthsite00000000000", "synthkey0000000000000", region=Regions.EU)
    # S11, newsletter granted: clean
    cio.identify(id="C-3011", email="clara.muller@example.com", first_name="Clara", last_name="Muller")
    # S14, newsletter granted, identified by e-mail: the e-mail lands in the URL path: pii-in-url
    cio.identify(id="louis.robin@example.com", plan="premium")
    # S18, no consent: missing-consent
    cio.track(customer_id="C-3018", name="viewed_product", data={"product_id": "SKU-3300"})
    # S12, all consents: an order total is purchase, not declared for Customer.io: excess-data
    cio.track(customer_id="C-3012", name="coupon_used", data={"coupon": "HIVER10", "order_total": 45.0})


def algolia_calls(proxy: str, ca: str) -> None:
    from algoliasearch.insights.client import InsightsClientSync
    from algoliasearch.search.client import SearchClientSync
    from requests import Session
    search = SearchClientSync("ATELIERAPP", "synthetic0algolia0admin0key00000")

    def trusting(client) -> None:  # its transporter calls Session.send, which ignores the env CA
        client._transporter._session = session = Session()
        session.verify = ca

    trusting(search)
    for call in (
        # S06 and S19 indexed for the support team's search, with e-mails (not declared): excess-data
        lambda: search.save_objects("customers", [
            {"objectID": "C-3006", "name": "Antoine Fabre", "email": "antoine.fabre@example.org", "tier": "gold"},
            {"objectID": "C-3019", "name": "Alice Mercier", "email": "alice.mercier@example.fr", "tier": "silver"}]),
        # a product search, nobody identified: no personal data, clean
        lambda: search.search_single_index("products", {"query": "sac cuir"}),
    ):
        try:
            call()
        except Exception as e:
            print("algolia:", type(e).__name__, e, file=sys.stderr)
    insights = InsightsClientSync("ATELIERAPP", "synthetic0algolia0search0key0000", region="de")
    trusting(insights)
    try:
        # S12's registry device id clicked a result: device id + behavioural, declared: clean
        insights.push_events({"events": [{
            "eventType": "click", "eventName": "Product Clicked", "index": "products",
            "userToken": "alg-usr-5c8a2d74-0012", "objectIDs": ["SKU-1001"], "positions": [1],
            "queryID": "43b15df305339e827f0ac0bdc5ebcaa7"}]})
    except Exception as e:
        print("algolia insights:", type(e).__name__, e, file=sys.stderr)


def sentry_calls(proxy: str, ca: str) -> None:
    import sentry_sdk
    # self-hosted Sentry, first party, over http://
    sentry_sdk.init(dsn="http://5f3a0c1b2d4e6f708192a3b4c5d6e7f8@sentry.atelier.example/2",
                    http_proxy=proxy, server_name="web-1", default_integrations=False,
                    send_client_reports=False, release="atelier@1.4.2",
                    attach_stacktrace=False)
    with sentry_sdk.new_scope() as scope:
        # S01's e-mail in clear text: clear-text (first party: no other rule)
        scope.set_user({"id": "C-3001", "email": "camille.laurent@example.fr"})
        sentry_sdk.capture_message("Checkout failed: payment provider timeout")
    # no user at all: no personal data, clean even over http
    sentry_sdk.capture_message("Cache warm-up took 12 s")
    sentry_sdk.flush(5)


def rudderstack_calls(proxy: str, ca: str) -> None:
    import rudderstack.analytics as rudder
    rudder.write_key = "2SYNTHETICrudderWriteKey000000"
    rudder.dataPlaneUrl = "http://atelierexm.dataplane.rudderstack.com"  # allowed by the SDK: clear-text
    rudder.sync_mode = True
    rudder.gzip = False
    # S15 (all consents), registry anonymous id: clear-text only
    rudder.identify("C-3015", {"email": "zoe.clement@example.org"}, anonymous_id="rs-anon-3e9f7b21-0015")
    # S13: analytics granted only from 2027-01-01: missing-consent + clear-text
    rudder.track("C-3013", "Product Viewed", {"product_id": "SKU-1001", "category": "Sacs"})
    rudder.flush()


def resend_calls(proxy: str, ca: str) -> None:
    import resend
    resend.api_key = "re_SYNTHETIC_0000000000000000000000"
    # S19: a receipt, transactional: clean
    resend.Emails.send({"from": FROM, "to": ["Alice Mercier <alice.mercier@example.fr>"],
                        "subject": "Votre reçu A-1090", "html": "<p>Commande A-1090 : 84,00 EUR</p>"})
    # S20: a magic login link is the person's credential, not declared: sensitive-data
    resend.Emails.send({"from": FROM, "to": ["gabriel.andre@example.com"], "subject": "Votre lien de connexion",
                        "html": '<a href="https://atelier.example/login/magic?token=mL9kQ2vX7rT4wZ1bN8cF3hJ6">'
                                "Se connecter</a>"})


def mailjet_calls(proxy: str, ca: str) -> None:
    from mailjet_rest import Client
    send = Client(auth=("synthpublickey000000000000000000", "synthprivatekey00000000000000000"), version="v3.1")
    # S02, newsletter: Mailjet is not declared: undeclared-recipient
    send.send.create(data={"Messages": [{
        "From": {"Email": "news@atelier.example", "Name": "Atelier Exemple"},
        "To": [{"Email": "nathan.girard@example.com", "Name": "Nathan Girard"}],
        "Subject": "Les nouveautés d'hiver", "HTMLPart": "<h1>Nouveautés</h1>"}]})
    rest = Client(auth=("synthpublickey000000000000000000", "synthprivatekey00000000000000000"))
    # S14 looked up by e-mail: in the URL path of an undeclared third party: both rules
    rest.contact.get(id="louis.robin@example.com")


def pusher_calls(proxy: str, ca: str) -> None:
    import pusher
    client = pusher.Pusher(app_id="1700001", key="synthpusherkey000000", secret="synthpushersecret000",
                           cluster="eu", ssl=True)
    client._pusher_client.http.options["verify"] = ca  # the SDK pins its bundled cacert.pem
    # S06's name and e-mail to Pusher, not declared: undeclared-recipient
    client.trigger("private-orders", "order-shipped",
                   {"customer": "Antoine Fabre", "email": "antoine.fabre@example.org", "order": "A-1077"})
    # stock levels, no personal data: clean
    client.trigger("stock", "level-changed", {"sku": "SKU-2040", "stock": 3})


DRIVERS = [posthog_calls, amplitude_calls, sendgrid_calls, klaviyo_calls, customerio_calls,
           algolia_calls, sentry_calls, rudderstack_calls, resend_calls, mailjet_calls, pusher_calls]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "sdk.flow"
    confdir = tempfile.mkdtemp(prefix="sdk-corpus-")
    proc, port = start_proxy(out, confdir)
    proxy, ca = f"http://127.0.0.1:{port}", str(Path(confdir) / "mitmproxy-ca-cert.pem")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        os.environ[name] = proxy
    for name in ("NO_PROXY", "no_proxy"):
        os.environ.pop(name, None)
    os.environ["REQUESTS_CA_BUNDLE"] = os.environ["SSL_CERT_FILE"] = ca
    try:
        for driver in DRIVERS:
            try:
                driver(proxy, ca)
            except Exception:
                print(f"{driver.__name__} failed:", file=sys.stderr)
                traceback.print_exc()
            settle()
    finally:
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
