"""`policy draft` is never more permissive than what was observed (issue 20, point 4).

Testing strategy: a capture sends a registry person's email (no consent to anything) and an
IBAN to a tracker nobody knows, and her email to an ad pixel whose catalogue entry has a
category but no country, and to one our register knows (country and purposes). Replayed, drafted, and the draft merged into the policy folder as
written, a second replay must no longer call them undeclared, but must still report
missing-consent and sensitive-data; `policy check` must refuse the draft until its review
marks are gone. Real processes, real SQLite files."""

import json
import shutil
import sqlite3
from pathlib import Path

import yaml
from mitmproxy import io

from conftest import make_flow, write
from test_cli import ROOT, run

POLICY = """
version: 1
organization: {name: Test Shop, first_party: [shop.test]}
purposes:
  service: {consent_required: false}
  newsletter: {consent_required: true}
  analytics: {consent_required: true}
  advertising: {consent_required: true}
subjects:
  - id: bob
    identifiers: {email: bob.durand@example.org}
"""
TRACKER = "collect.unknown-tracker.test"
PIXEL = "ib.sonobi.com"  # third-party-web: Sonobi, category ad, no country (the recipient
# catalogue now knows AppNexus/Xandr: US)
SNAP = "tr.snapchat.com"  # our register: Snap B.V., NL, advertising


def replay(folder: Path, capture: Path, db: Path) -> dict[str, set[str]]:
    result = run("replay", str(capture), "--policy", str(folder), "--db", str(db), cwd=db.parent)
    assert result.returncode == 1, result.stdout + result.stderr
    with sqlite3.connect(db) as conn:
        rules: dict[str, set[str]] = {}
        for host, rule in conn.execute("select host, rule from violations"):
            rules.setdefault(host, set()).add(rule)
    return rules


def test_a_merged_draft_keeps_consent_and_refuses_to_check_until_reviewed(
        tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder / "policy.yaml", POLICY)
    capture = tmp_path / "c.flow"
    body = json.dumps({"user": {"email": "bob.durand@example.org",
                                "iban": "FR7630006000011234567890189"}})
    with capture.open("wb") as out:
        writer = io.FlowWriter(out)
        writer.add(make_flow(f"https://{TRACKER}/v1/identify", "POST", body,
                             {"content-type": "application/json"}))
        for host in (PIXEL, SNAP):
            writer.add(make_flow(f"https://{host}/collect", "POST",
                                 json.dumps({"email": "bob.durand@example.org"}),
                                 {"content-type": "application/json"}))
    before = replay(folder, capture, tmp_path / "before.db")
    assert {"undeclared-recipient", "sensitive-data"} <= before[TRACKER]
    assert "undeclared-recipient" in before[PIXEL] and "undeclared-recipient" in before[SNAP]

    result = run("policy", "draft", "--db", str(tmp_path / "before.db"), "--policy",
                 str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    drafted = {tuple(r["hosts"]): r for r in yaml.safe_load(result.stdout)["recipients"]}
    tracker, pixel, snap = drafted[(TRACKER,)], drafted[(PIXEL,)], drafted[(SNAP,)]
    for entry in (tracker, pixel):
        assert entry["purposes"] and "service" not in entry["purposes"], entry
        assert set(entry["purposes"]) <= {"newsletter", "analytics", "advertising"}
        assert "iban" not in entry["data"]  # a sensitive category is never drafted as allowed
        assert "country" not in entry  # nobody knows it: a review mark says so
        assert any(mark.startswith("country") for mark in entry["review"]), entry
    assert pixel["purposes"] == ["advertising"]  # the catalogue's category
    assert snap["purposes"] == ["advertising"] and snap["country"] == "NL"
    assert any(mark.startswith("country: NL") for mark in snap["review"])
    assert any(mark.startswith("owner: unknown") for mark in tracker["review"])
    assert any("iban" in mark for mark in tracker["review"])

    (folder / "drafted.yaml").write_text(result.stdout)
    after = replay(folder, capture, tmp_path / "after.db")
    for host in (TRACKER, PIXEL, SNAP):
        assert "undeclared-recipient" not in after[host]
        assert "missing-consent" in after[host], after  # bob consented to nothing
    assert "sensitive-data" in after[TRACKER]

    check = run("policy", "check", "--policy", str(folder), cwd=tmp_path)
    assert check.returncode == 2, check.stdout
    refused = [line for line in check.stderr.splitlines() if ".review: " in line]
    assert len(refused) == 3, check.stderr
    lines = (folder / "drafted.yaml").read_text().splitlines()
    for line in refused:
        where = line.split(": ")[2]  # Error: policy: FILE:LINE: key: message
        assert where.startswith(f"{folder / 'drafted.yaml'}:")
        assert lines[int(where.rsplit(":", 1)[1]) - 1].strip() == "review:"
        assert "a drafted entry not yet reviewed: check " in line

    reviewed = yaml.safe_load(result.stdout)
    for entry in reviewed["recipients"]:
        del entry["review"]
        entry["country"] = "FR"
    (folder / "drafted.yaml").write_text(yaml.safe_dump(reviewed, sort_keys=False))
    check = run("policy", "check", "--policy", str(folder), cwd=tmp_path)
    assert check.returncode == 0, check.stderr


def test_the_sample_draft_guesses_no_permission(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    assert run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
               "--db", str(db), cwd=tmp_path).returncode == 1
    result = run("policy", "draft", "--db", str(db), "--policy", str(ROOT / "policies"),
                 cwd=tmp_path)
    consent = {name for name, p in yaml.safe_load(
        (ROOT / "policies" / "policy.yaml").read_text())["purposes"].items()
        if p["consent_required"]}
    for entry in yaml.safe_load(result.stdout)["recipients"]:
        assert entry["review"], entry
        assert set(entry["purposes"]) & consent or entry["name"] in ("Zapier",), entry
    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    (folder / "drafted.yaml").write_text(result.stdout)
    assert run("policy", "check", "--policy", str(folder), cwd=tmp_path).returncode == 2
