"""Browsing a real log with Datasette and the shipped metadata: a real `datasette serve`
process on loopback, its canned queries fetched over HTTP as JSON."""

import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from test_review import CASES, POLICY, assert_no_identifier, expected_rules, gdpr

pytestmark = pytest.mark.skipif(importlib.util.find_spec("datasette") is None,
                                reason="datasette is not installed (pip install '.[review]')")
METADATA = resources.files("gdpr_audit").joinpath("data/datasette.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("datasette")
    replay = gdpr("replay", str(Path(POLICY).parent / "captures"), "--policy", POLICY,
                  "--db", "audit.db", cwd=work)
    assert replay.returncode == 1, replay.stderr
    # -p 0: the kernel picks a free port, and uvicorn says which on stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "datasette", "serve", str(work / "audit.db"), "-m", str(METADATA),
         "--host", "127.0.0.1", "-p", "0"], cwd=work, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        base = None
        while base is None and time.monotonic() < deadline and process.poll() is None:
            line = process.stderr.readline()
            match = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", line)
            base = match.group(1) if match else None
        assert base, f"datasette did not start (exit code {process.poll()})"
        # keep reading its log, so that a full pipe never blocks the server
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def fetch(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read().decode()
    assert_no_identifier(body, url)
    return json.loads(body)


def test_canned_query_violations_by_rule(server: str) -> None:
    rows = fetch(f"{server}/audit/violations_by_rule.json?_shape=array")
    assert Counter({r["rule"]: r["violations"] for r in rows}) == expected_rules()


def test_canned_query_violations_by_recipient(server: str) -> None:
    rows = fetch(f"{server}/audit/violations_by_recipient.json?_shape=array")
    by_name = {r["recipient"]: r for r in rows}
    hubspot = [c for c in CASES if c["host"] == "api.hubapi.com"]
    assert by_name["HubSpot"]["violations"] == sum(expected_rules(hubspot).values())
    assert sum(r["violations"] for r in rows) == sum(expected_rules().values())


def test_canned_queries_by_subject(server: str) -> None:
    rows = fetch(f"{server}/audit/violations_by_subject.json?_shape=array")
    counts = {r["subject"]: r["violations"] for r in rows}
    assert counts["cust-005"] == sum(len(c["rules"]) for c in CASES if c["subjects"] == ["cust-005"])
    one = fetch(f"{server}/audit/violations_of_subject.json?_shape=array&subject=cust-003")
    assert Counter(r["rule"] for r in one) == expected_rules(
        [c for c in CASES if c["subjects"] == ["cust-003"]])


def test_metadata_facets_the_violations_table(server: str) -> None:
    table = fetch(f"{server}/audit/violations.json?_size=1")
    assert {"rule", "severity", "recipient"} <= set(table["facet_results"])
    rules = {item["value"]: item["count"] for item in table["facet_results"]["rule"]["results"]}
    assert rules == dict(expected_rules())
