"""pytest plugin: run the auditing proxy for the test session, and fail a test during which
a violation happened.

    def test_checkout(gdpr_proxy):
        requests.post(url, json=order, proxies=gdpr_proxy.proxies, verify=gdpr_proxy.ca_path)

Options: --gdpr-policy (or the `gdpr_policy` ini value; default policies/), --gdpr-subjects,
--gdpr-db (default: a file in pytest's temporary folder), --gdpr-enforce, and
--gdpr-proxy-arg (repeatable) for anything else mitmdump should get.
"""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .addon import BARRIER_HOST

_START_TIMEOUT = 60.0


@dataclass
class AuditingProxy:
    """A running `gdpr-audit proxy` process on a loopback port."""

    url: str
    """http://127.0.0.1:PORT, for HTTP(S)_PROXY or a browser's --proxy-server."""
    ca_path: Path
    """mitmproxy's CA certificate (PEM) that clients must trust."""
    db: Path
    process: subprocess.Popen[bytes]

    @property
    def proxies(self) -> dict[str, str]:
        """For requests' `proxies=`."""
        return {"http": self.url, "https": self.url}

    def flush(self) -> None:
        """Return once the log holds every flow the proxy has seen."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.url}))
        with opener.open(f"http://{BARRIER_HOST}/", timeout=30) as response:
            response.read()

    def stop(self) -> None:
        """A clean stop (SIGTERM): the addon flushes the log on its way out."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def last_violation_id(self) -> int:
        self.flush()
        with sqlite3.connect(self.db) as db:
            return int(db.execute("select coalesce(max(id), 0) from violations").fetchone()[0])

    def violations_after(self, violation_id: int) -> list[dict[str, Any]]:
        self.flush()
        with sqlite3.connect(self.db) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "select v.rule, v.severity, v.recipient, v.host, v.message, v.categories, "
                "v.evidence, f.method, f.path from violations v join flows f on f.id = v.flow_id "
                "where v.id > ? order by v.id", [violation_id]).fetchall()
        return [dict(row) for row in rows]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gdpr-audit", "GDPR audit of the traffic tests send")
    group.addoption("--gdpr-policy", help="policy file or folder (default: ini gdpr_policy or policies/)")
    group.addoption("--gdpr-subjects", help="subject registry (default: the one in the policy)")
    group.addoption("--gdpr-db", help="audit log (default: in pytest's temporary folder)")
    group.addoption("--gdpr-enforce", action="store_true", help="answer violations with HTTP 451")
    group.addoption("--gdpr-proxy-arg", action="append", default=[],
                    help="an argument for the proxy (mitmdump), repeatable")
    parser.addini("gdpr_policy", "policy file or folder for the gdpr_proxy fixture")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_proxy(folder: Path, policy: str, db: Path, *extra: str) -> AuditingProxy:
    """Start `gdpr-audit proxy` on a free loopback port with its CA in `folder`."""
    port = _free_port()
    command = [sys.executable, "-m", "gdpr_audit", "proxy", "--listen-host", "127.0.0.1",
               "--listen-port", str(port), "--policy", policy, "--db", str(db),
               "--set", f"confdir={folder}", *extra]
    log = folder / "proxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proxy = AuditingProxy(f"http://127.0.0.1:{port}", folder / "mitmproxy-ca-cert.pem", db, process)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the auditing proxy exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                if proxy.ca_path.exists():
                    return proxy
        except OSError:
            pass
        time.sleep(0.1)
    proxy.stop()
    raise RuntimeError(f"the auditing proxy did not start within {_START_TIMEOUT:.0f} s")


@pytest.fixture(scope="session")
def gdpr_proxy(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditingProxy]:
    config = request.config
    folder = tmp_path_factory.mktemp("gdpr-proxy")
    policy = config.getoption("--gdpr-policy") or config.getini("gdpr_policy") or "policies/"
    extra = []
    if config.getoption("--gdpr-subjects"):
        extra += ["--subjects", config.getoption("--gdpr-subjects")]
    if config.getoption("--gdpr-enforce"):
        extra.append("--enforce")
    proxy = start_proxy(folder, str(policy), Path(config.getoption("--gdpr-db") or folder / "audit.db"),
                        *extra, *config.getoption("--gdpr-proxy-arg"))
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    proxy = getattr(item, "funcargs", {}).get("gdpr_proxy")
    if not isinstance(proxy, AuditingProxy):
        return (yield)
    before = proxy.last_violation_id()
    result = yield
    violations = proxy.violations_after(before)
    if violations:
        lines = [f"{v['rule']} ({v['severity']}): {v['method']} {v['host']}{v['path']} -> "
                 f"{v['recipient']}: {v['message']}" for v in violations]
        raise AssertionError(f"{len(violations)} GDPR violation(s) during this test:\n  "
                             + "\n  ".join(lines) + f"\n(audit log: {proxy.db})")
    return result


__all__ = ["AuditingProxy", "gdpr_proxy", "start_proxy"]
