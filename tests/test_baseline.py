"""`replay --baseline` (issue 20, point 5): a baseline knows places, not people.

Testing strategy: three captures written here with real mitmproxy flows, replayed by the
console script in real processes on real SQLite files. A sends a person's email to a third
party under one query key; B sends the same person's email to the same endpoint under a new
key; C sends another person's email exactly where A did. The baseline from A must call B's
violations new (a new place is a new fingerprint) and C's known (a new person is not)."""

import json
from pathlib import Path

from mitmproxy import io

from conftest import POLICY, make_flow, write
from test_cli import run

ENDPOINT = "https://collect.tracker-unknown.test/v1/hit"


def capture(path: Path, *urls: str) -> Path:
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for url in urls:
            writer.add(make_flow(url))
    return path


def replay(tmp_path: Path, name: str, *extra: str) -> tuple[int, str]:
    result = run("replay", str(tmp_path / name), "--policy", str(tmp_path / "policy.yaml"),
                 "--db", str(tmp_path / f"{name}.db"), *extra, cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, result.stdout


def fingerprints(tmp_path: Path, name: str) -> set[str]:
    import sqlite3
    with sqlite3.connect(tmp_path / f"{name}.db") as conn:
        return {row[0] for row in conn.execute("select fingerprint from violations")}


def test_a_new_field_key_is_new_and_a_new_person_in_the_same_place_is_known(
        tmp_path: Path) -> None:
    write(tmp_path / "policy.yaml", POLICY)
    capture(tmp_path / "a.flow", f"{ENDPOINT}?em=alice.martin%40example.org&p=1",
            f"{ENDPOINT}/batch?u[0]=alice.martin%40example.org")
    capture(tmp_path / "b.flow", f"{ENDPOINT}?contact_mail=alice.martin%40example.org&p=1")
    capture(tmp_path / "c.flow", f"{ENDPOINT}?em=bob.durand%40example.org&p=2",
            f"{ENDPOINT}/batch?u[0]=bob.durand%40example.org&u[1]=dave.fictif%40example.net")
    baseline = tmp_path / "baseline.json"
    code, _ = replay(tmp_path, "a.flow", "--write-baseline", str(baseline))
    assert code == 1
    document = json.loads(baseline.read_text())
    assert document["version"] == 2
    rules = {v["rule"] for v in document["violations"]}
    assert {"undeclared-recipient", "pii-in-url"} <= rules

    code, out = replay(tmp_path, "b.flow", "--baseline", str(baseline))
    assert code == 1, out
    assert "0 violations known" in out and "  new: pii-in-url" in out, out
    assert not fingerprints(tmp_path, "b.flow") & fingerprints(tmp_path, "a.flow")

    code, out = replay(tmp_path, "c.flow", "--baseline", str(baseline))
    assert code == 0, out
    assert " 0 new at or above" in out and "  new: " not in out, out
    assert fingerprints(tmp_path, "c.flow") == fingerprints(tmp_path, "a.flow")


def test_a_baseline_of_the_old_fingerprints_is_refused_with_what_to_do(tmp_path: Path) -> None:
    write(tmp_path / "policy.yaml", POLICY)
    capture(tmp_path / "a.flow", f"{ENDPOINT}?em=alice.martin%40example.org")
    old = tmp_path / "old.json"
    old.write_text('{"version": 1, "violations": [{"fingerprint": "0123abcd", "rule": "x"}]}')
    result = run("replay", str(tmp_path / "a.flow"), "--policy", str(tmp_path / "policy.yaml"),
                 "--db", str(tmp_path / "a.db"), "--baseline", str(old), cwd=tmp_path)
    assert result.returncode == 2
    assert str(old) in result.stderr and "--write-baseline" in result.stderr
