"""The live proxy under faults: an upstream that refuses connections, an upstream that is
slow, clients that hang up mid-body or before the answer, and a detector that raises.

Strategy: a real `gdpr-audit proxy` (log-only mode) beside a bare `mitmdump`, both on
127.0.0.1, and a real upstream server on loopback. Each fault is sent through both and the
client must get the same thing from each (traffic unaffected); the log must hold every
complete flow, and the flow whose audit raised as `status = 'error'`. The raising detector
reaches the proxy AND any worker process it starts through a `sitecustomize.py` on the
proxy's PYTHONPATH, which patches EmailDetector.find to raise on a trigger string."""

import http.server
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from gdpr_audit.pytest_plugin import AuditingProxy, start_proxy

ROOT = Path(__file__).resolve().parents[1]
TRIGGER = "boom-7f3a"  # the patched detector raises on a value holding this
EMAIL = "marie.dupont@example.fr"  # cust-001: the exception's message quotes it
SITECUSTOMIZE = f"""
from gdpr_audit.detectors.email import EmailDetector

_find = EmailDetector.find


def find(self, field):
    if {TRIGGER!r} in field.value:
        raise RuntimeError("injected detector failure on " + field.value)
    return _find(self, field)


EmailDetector.find = find
"""
FAULTS: dict[str, int] = {}  # fault -> how many were injected, for the report


class Upstream(http.server.BaseHTTPRequestHandler):
    """`/collect?slow...` answers once the test lets it (or after 10 s); everything else at once."""

    release = threading.Event()
    received: list[str] = []

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("content-length", 0))))

    def _answer(self, body: bytes) -> None:
        if self.path.startswith("/collect?slow"):
            self.release.wait(10)
        self.received.append(self.path)
        answer = b"upstream saw " + self.path.encode() + b" " + str(len(body)).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Upstream.release.set()
    server.shutdown()


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AuditingProxy]]:
    """{"audited": gdpr-audit proxy with the raising detector, "bare": plain mitmdump}."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "site").mkdir()
    (folder / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(folder / "site"), str(ROOT / "addon")])
    try:
        audited = start_proxy(folder, str(ROOT / "policies"), folder / "audit.db")
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    bare = start_mitmdump(tmp_path_factory.mktemp("bare"))
    yield {"audited": audited, "bare": bare}
    for proxy in (audited, bare):
        proxy.stop()


def start_mitmdump(folder: Path) -> AuditingProxy:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()",
         "--listen-host", "127.0.0.1", "--listen-port", str(port), "--set", f"confdir={folder}",
         "--set", "flow_detail=0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return AuditingProxy(f"http://127.0.0.1:{port}", folder / "mitmproxy-ca-cert.pem",
                                 folder / "none.db", process)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("mitmdump did not start")


def session(proxy: AuditingProxy) -> requests.Session:
    client = requests.Session()
    client.trust_env = False  # NO_PROXY must not send loopback traffic around the proxy
    client.proxies.update(proxy.proxies)
    return client


def both(proxies: dict[str, AuditingProxy], method: str, url: str,
         **kwargs: object) -> dict[str, tuple[int, bytes]]:
    """The same request through each proxy: name -> (status, body)."""
    results = {}
    for name, proxy in proxies.items():
        response = session(proxy).request(method, url, timeout=60, **kwargs)
        results[name] = (response.status_code, response.content)
    return results


def logged(proxy: AuditingProxy, sql: str, *params: object) -> list[tuple]:
    proxy.flush()
    with sqlite3.connect(proxy.db) as db:
        return db.execute(sql, params).fetchall()


def test_upstream_refusing_connections(proxies: dict[str, AuditingProxy]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for number in range(5):
        results = both(proxies, "POST", f"{dead}/collect?refused{number}", json={"email": EMAIL})
        assert results["audited"] == results["bare"]
        assert results["audited"][0] == 502
    FAULTS["upstream refusing connections"] = 5
    rows = logged(proxies["audited"], "select status from flows where path like '/collect?refused%'")
    assert len(rows) == 5 and {status for (status,) in rows} == {"audited"}


def post_into(responses: list[requests.Response], client: requests.Session, url: str,
              body: bytes) -> None:
    responses.append(client.post(url, data=body, timeout=60))


def test_slow_upstream_does_not_hold_other_traffic(proxies: dict[str, AuditingProxy],
                                                   upstream: str) -> None:
    """While a request waits for a slow upstream, another one through the same proxy is
    answered: the slow one is only released once the fast one is back (no timing)."""
    for name in ("audited", "bare"):
        Upstream.release.clear()
        slow: list[requests.Response] = []
        thread = threading.Thread(target=post_into, args=(
            slow, session(proxies[name]), f"{upstream}/collect?slow{name}", b"x" * 1000))
        thread.start()
        fast = session(proxies[name]).get(f"{upstream}/fast/{name}", timeout=30)
        assert fast.status_code == 200
        Upstream.release.set()
        thread.join(60)
        assert slow[0].status_code == 200
        assert slow[0].content == f"upstream saw /collect?slow{name} 1000".encode()
    FAULTS["slow upstream"] = 2
    assert len(logged(proxies["audited"], "select id from flows where path like '/collect?slow%'")) == 1


def send_partial_body(proxy: AuditingProxy, url: str) -> None:
    """Headers promise 100 kB, 1 kB is sent, then the client hangs up."""
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), 10) as client:
        client.sendall(f"POST {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
                       + b'{"email": "' + EMAIL.encode() + b'", "pad": "' + b"a" * 1000)
        time.sleep(0.05)  # let the proxy start reading the body before the hang-up


def test_clients_hanging_up_mid_body(proxies: dict[str, AuditingProxy], upstream: str) -> None:
    before = len(Upstream.received)
    for number in range(5):
        for proxy in proxies.values():
            send_partial_body(proxy, f"{upstream}/collect?partial{number}")
    FAULTS["client hangs up mid-body"] = 10
    # both proxies still serve, and the same way
    results = both(proxies, "POST", f"{upstream}/after-partial", json={"ok": 1})
    assert results["audited"] == results["bare"] == (200, b"upstream saw /after-partial 9")
    assert not [p for p in Upstream.received[before:] if p.startswith("/collect?partial")]
    # a request that never arrived whole is no flow: nothing half-audited in the log
    assert logged(proxies["audited"], "select id from flows where path like '/collect?partial%'") == []


def test_clients_hanging_up_before_the_answer(proxies: dict[str, AuditingProxy],
                                              upstream: str) -> None:
    Upstream.release.clear()
    for number in range(3):
        port = int(proxies["audited"].url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 10) as client:
            body = b'{"email": "' + EMAIL.encode() + b'"}'
            client.sendall(f"POST {upstream}/collect?gone{number} HTTP/1.1\r\nHost: x\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            time.sleep(0.05)
    Upstream.release.set()
    FAULTS["client hangs up before the answer"] = 3
    results = both(proxies, "GET", f"{upstream}/after-gone")
    assert results["audited"] == results["bare"] == (200, b"upstream saw /after-gone 0")
    # the request was whole, so it was audited, answer or not
    assert len(logged(proxies["audited"], "select id from flows where path like '/collect?gone%'")) == 3


def test_a_raising_detector_fails_no_traffic_and_is_logged(proxies: dict[str, AuditingProxy],
                                                           upstream: str) -> None:
    for number in range(5):
        body = {"email": EMAIL, "note": f"{TRIGGER} {EMAIL}"}
        results = both(proxies, "POST", f"{upstream}/collect?raise{number}", json=body)
        assert results["audited"] == results["bare"]
        assert results["audited"][0] == 200
    FAULTS["detector raising"] = 5
    rows = logged(proxies["audited"],
                  "select status, error from flows where path like '/collect?raise%'")
    assert len(rows) == 5
    assert {status for status, _ in rows} == {"error"}
    assert all("RuntimeError" in error for _, error in rows)
    assert not any("marie" in error.lower() for _, error in rows)  # the message was redacted
    # the proxy keeps auditing after the error
    both(proxies, "POST", f"{upstream}/collect?afterraise", json={"email": EMAIL})
    [(status, violations)] = logged(proxies["audited"], "select status, violations from flows "
                                    "where path = '/collect?afterraise=*'")
    assert status == "audited" and violations >= 1


def test_report_faults_injected(proxies: dict[str, AuditingProxy]) -> None:
    """Runs last in this module: the numbers for the README, and nothing lost on the way."""
    print(f"REPORT faults injected: {FAULTS} (total {sum(FAULTS.values())})")
    proxy = proxies["audited"]
    proxy.process.send_signal(signal.SIGTERM)
    proxy.process.wait(timeout=60)
    with sqlite3.connect(proxy.db) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("select count(*) from runs where finished is not null").fetchone() == (1,)
