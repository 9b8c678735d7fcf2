"""The live proxy as users run it: a real `gdpr-audit proxy` process (mitmdump's master with
the addon) on 127.0.0.1, real HTTP clients trusting mitmproxy's CA, and the proxy answering
itself (tests/responder.py with connection_strategy=lazy) so that nothing leaves the machine.

Strategy: send requests whose personal data and recipient we chose, then read the audit log
after the proxy's flush barrier; compare live results with what replay must give for the
same capture (captures/expected.json, written by hand)."""

import http.server
import json
import shutil
import sqlite3
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
import requests

from gdpr_audit.audit import Auditor
from gdpr_audit.captures import CaptureReader
from gdpr_audit.policy import load_policy
from gdpr_audit.pytest_plugin import AuditingProxy, start_proxy

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = str(ROOT / "tests" / "responder.py")
OFFLINE = ("-s", RESPONDER, "--set", "connection_strategy=lazy")
EMAIL = "marie.dupont@example.fr"  # cust-001 in policies/subjects.yaml


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("live")
    running = start_proxy(folder, str(ROOT / "policies"), folder / "audit.db", *OFFLINE)
    yield running
    running.stop()


_REDACTOR = Auditor(load_policy(str(ROOT / "policies"), None))


def newest_rules(proxy: AuditingProxy, host: str, method: str = "%") -> set[str]:
    """The rules broken by the latest flow to `host` (with `method`) in the log, where the
    host is stored redacted (an id-like label such as Sentry's `o450000` becomes `*`)."""
    proxy.flush()
    with sqlite3.connect(proxy.db) as db:
        row = db.execute("select id from flows where host = ? and method like ? "
                         "order by rowid desc limit 1",
                         [_REDACTOR.redactor.host(host), method]).fetchone()
        assert row, f"no flow to {host} in the log"
        return {r for (r,) in db.execute("select rule from violations where flow_id = ?", row)}


def test_requests_through_the_proxy(proxy: AuditingProxy) -> None:
    response = requests.post("https://collect.adnetwork-example.com/v1/events",
                             json={"user": {"email": EMAIL}}, proxies=proxy.proxies,
                             verify=str(proxy.ca_path), timeout=30)
    assert response.status_code == 200 and response.json()["ok"] is True
    assert newest_rules(proxy, "collect.adnetwork-example.com") == {"undeclared-recipient"}


def test_httpx_through_the_proxy(proxy: AuditingProxy) -> None:
    trust = ssl.create_default_context(cafile=str(proxy.ca_path))
    with httpx.Client(proxy=proxy.url, verify=trust, timeout=30) as client:
        response = client.get("http://api.segment.io/v1/pixel", params={"email": EMAIL})
    assert response.status_code == 200
    assert newest_rules(proxy, "api.segment.io") == {"clear-text", "pii-in-url"}


def test_stripe_sdk_through_the_proxy(proxy: AuditingProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stripe's own SDK: the policy lets Stripe receive email and name, not a phone."""
    import stripe

    # The SDK pins its own CA bundle: point it at mitmproxy's, as a user of the proxy would.
    monkeypatch.setattr(stripe, "ca_bundle_path", str(proxy.ca_path))
    client = stripe.StripeClient("sk_test_gdpr_flow_audit",
                                 http_client=stripe.RequestsClient(proxy=proxy.url))
    customer = client.v1.customers.create(params={"email": EMAIL, "name": "Marie Dupont",
                                                  "phone": "+33612345678"})
    assert customer.id == "cus_test_0001"
    assert newest_rules(proxy, "api.stripe.com") == {"excess-data"}


def _session(proxy: AuditingProxy) -> requests.Session:
    """Requests lets REQUESTS_CA_BUNDLE override a session's CA: callers pass verify= too."""
    session = requests.Session()
    session.proxies.update(proxy.proxies)
    return session


@pytest.mark.parametrize("capture", ["backend.flow", "browser.har"])
def test_same_capture_same_violations_live_and_replayed(proxy: AuditingProxy, capture: str) -> None:
    """Each request of a sample capture sent again by a real client: the proxy must find
    what replay finds (the expected rules, written by hand in expected.json)."""
    expected = {c["index"]: set(c["rules"]) for c in
                json.loads((ROOT / "captures" / "expected.json").read_text())
                if c["file"] == capture}
    flows = [flow for flow, _ in CaptureReader([str(ROOT / "captures" / capture)]).flows()]
    assert len(flows) == len(expected)
    session = _session(proxy)
    mismatches = []
    for index, flow in enumerate(flows):
        request = flow.request
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "connection", "transfer-encoding")
                   and not k.startswith(":")}
        session.request(request.method, request.url, headers=headers, data=request.raw_content,
                        verify=str(proxy.ca_path), timeout=30)
        rules = newest_rules(proxy, request.pretty_host, request.method)
        if rules != expected[index]:
            mismatches.append((index, request.pretty_host, sorted(expected[index]), sorted(rules)))
    assert mismatches == []


def test_enforce_blocks_before_the_recipient(tmp_path: Path) -> None:
    """A real upstream on loopback counts what reaches it: with --enforce, the violating
    request gets 451 from the proxy and never arrives; a clean one does."""
    received: list[str] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["content-length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    running = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", "--enforce")
    try:
        blocked = requests.post(f"{upstream}/collect", json={"email": EMAIL},
                                proxies=running.proxies, timeout=30)
        passed = requests.post(f"{upstream}/collect", json={"status": "ok"},
                               proxies=running.proxies, timeout=30)
    finally:
        running.stop()
        server.shutdown()
    assert blocked.status_code == 451
    explanation = blocked.json()
    assert {r["rule"] for r in explanation["rules"]} >= {"clear-text", "undeclared-recipient"}
    assert "marie" not in blocked.text.lower()
    assert passed.status_code == 200
    assert received == ['{"status": "ok"}']


def test_clean_stop_loses_nothing(tmp_path: Path) -> None:
    running = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", *OFFLINE)
    try:
        session = _session(running)
        for number in range(40):
            session.post("https://collect.adnetwork-example.com/e", json={"email": EMAIL, "n": number},
                         verify=str(running.ca_path), timeout=30)
    finally:
        running.stop()  # no flush barrier: SIGTERM alone must drain the writer
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("select count(*) from flows").fetchone()[0] == 40
        assert db.execute("select count(*) from runs where finished is not null").fetchone()[0] == 1


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_headless_chromium_form_posts_to_a_third_party(proxy: AuditingProxy, tmp_path: Path) -> None:
    """A page (served through the proxy) whose form posts personal data to a tracker host;
    the page itself serves a pre-ticked newsletter box."""
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         f"--proxy-server={proxy.url}", "--ignore-certificate-errors",
         "--virtual-time-budget=10000", "--dump-dom", "http://shop.example/newsletter"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert newest_rules(proxy, "forms.tracker-widget.example", "POST") == {"undeclared-recipient"}
    assert newest_rules(proxy, "shop.example", "GET") == {"pre-ticked-consent"}
    with sqlite3.connect(proxy.db) as db:
        categories = db.execute(
            "select categories from violations where host = 'forms.tracker-widget.example'").fetchall()
    assert any("email" in c and "name" in c for (c,) in categories)


def test_killed_proxy_leaves_a_consistent_log(tmp_path: Path) -> None:
    running = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", *OFFLINE)
    session = _session(running)
    try:
        for number in range(30):
            session.post("http://collect.adnetwork-example.com/e", json={"email": EMAIL, "n": number},
                         timeout=30)
    finally:
        running.process.kill()  # SIGKILL: no flush, no clean shutdown
        running.process.wait()
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("pragma foreign_key_check").fetchall() == []
        # every flow that made it into the log came with all of its violations
        assert db.execute("""select count(*) from flows f where f.violations !=
                             (select count(*) from violations v where v.flow_id = f.id)""").fetchone() == (0,)
        assert db.execute("select count(*) from runs where finished is null").fetchone() == (1,)
