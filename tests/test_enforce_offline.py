"""Enforce judges a request before the third party is contacted (issue 20.6): with mitmproxy's
default (eager) connections, an https request opens the upstream connection at CONNECT, so a
third party that is down answered 502 before the rule could answer 451, and a reachable one
had already seen the client's address and SNI.

Strategy: a real `gdpr-audit proxy --enforce` process, a real https client trusting its CA,
and destinations that cannot answer: a host that resolves nowhere, a closed loopback port.
The request carries an email of policies/subjects.yaml to an undeclared recipient."""

import socket
from pathlib import Path

import pytest
import requests

from gdpr_audit.pytest_plugin import start_proxy

ROOT = Path(__file__).resolve().parents[1]
EMAIL = "marie.dupont@example.fr"  # cust-001 in policies/subjects.yaml


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again once the probe goes


@pytest.fixture(scope="module")
def enforcing(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("enforce")
    running = start_proxy(folder, str(ROOT / "policies"), folder / "audit.db", "--enforce")
    yield running
    running.stop()


@pytest.mark.parametrize("url", [
    "https://collect.tracker-nowhere.invalid/v1/events",
    f"https://127.0.0.1:{closed_port()}/v1/events",
])
def test_an_unreachable_third_party_gets_451_not_502(enforcing, url: str) -> None:
    response = requests.post(url, json={"user": {"email": EMAIL}}, proxies=enforcing.proxies,
                             verify=str(enforcing.ca_path), timeout=30)
    assert response.status_code == 451, response.text[:500]
    assert "undeclared-recipient" in {r["rule"] for r in response.json()["rules"]}
    assert "marie" not in response.text.lower()


def test_a_connection_strategy_the_user_sets_is_kept(tmp_path: Path) -> None:
    """mitmdump refuses an option given twice: the user's own --set must still start."""
    running = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", "--enforce",
                          "--set", "connection_strategy=eager")
    try:
        assert running.process.poll() is None
    finally:
        running.stop()
