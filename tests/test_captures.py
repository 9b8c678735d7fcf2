"""Damaged input loses nothing that was good. Strategy: damage real sample captures (cut,
corrupt, strip fields), replay them through the CLI, and check that the error names the
file and the offset or entry, the exit code is 2, and every complete flow was audited."""

import json
import sqlite3
from pathlib import Path

from mitmproxy import io
from test_cli import ROOT, run

from gdpr_audit.captures import CaptureReader


def replay(tmp_path: Path, *paths: Path):
    db = tmp_path / "audit.db"
    result = run("replay", *map(str, paths), "--policy", str(ROOT / "policies"), "--db", str(db),
                 cwd=tmp_path)
    with sqlite3.connect(db) as conn:
        audited = [row[0] for row in conn.execute("select id from flows")]
    return result, audited


def flow_offsets(path: Path) -> list[tuple[str, int]]:
    """(flow id, byte offset where the flow ends), read with mitmproxy's reader."""
    ends = []
    with path.open("rb") as handle:
        for flow in io.FlowReader(handle).stream():
            ends.append((flow.id, handle.tell()))
    return ends


def test_truncated_flow_file_keeps_complete_flows(tmp_path: Path) -> None:
    source = ROOT / "captures" / "backend.flow"
    ends = flow_offsets(source)
    cut = ends[4][1] + 50  # in the middle of the sixth flow
    damaged = tmp_path / "cut.flow"
    damaged.write_bytes(source.read_bytes()[:cut])
    result, audited = replay(tmp_path, damaged)
    assert result.returncode == 2
    assert sorted(audited) == sorted(flow_id for flow_id, _ in ends[:5])
    message = result.stderr.replace("\n", "")
    assert str(damaged) in message and f"byte offset {ends[4][1]}" in message


def test_corrupted_flow_file(tmp_path: Path) -> None:
    source = ROOT / "captures" / "backend.flow"
    ends = flow_offsets(source)
    data = bytearray(source.read_bytes())
    data[ends[1][1]:ends[1][1] + 6] = b"XXXXXX"  # the third flow's length prefix
    damaged = tmp_path / "bad.flow"
    damaged.write_bytes(bytes(data))
    result, audited = replay(tmp_path, damaged)
    assert result.returncode == 2
    assert sorted(audited) == sorted(flow_id for flow_id, _ in ends[:2])
    assert f"byte offset {ends[1][1]}" in result.stderr.replace("\n", "")


def test_truncated_har_keeps_complete_entries(tmp_path: Path) -> None:
    text = (ROOT / "captures" / "browser.har").read_text()
    entries = json.loads(text)["log"]["entries"]
    damaged = tmp_path / "cut.har"
    marker = json.dumps(entries[3]["request"]["url"])  # the url of the fourth entry
    damaged.write_text(text[: text.index(marker.strip('"')) + 10])
    reader = CaptureReader([str(damaged)])
    flows = list(reader.flows())
    assert [f.request.url for f, _ in flows] == [e["request"]["url"] for e in entries[:3]]
    [error] = reader.errors
    assert error.file == str(damaged) and "line" in error.where and "3 complete entries" in error.message
    result, audited = replay(tmp_path, damaged)
    assert result.returncode == 2 and len(audited) == 3
    assert str(damaged) in result.stderr.replace("\n", "")


def test_har_entry_without_request_is_named_and_skipped(tmp_path: Path) -> None:
    document = json.loads((ROOT / "captures" / "browser.har").read_text())
    total = len(document["log"]["entries"])
    del document["log"]["entries"][2]["request"]
    del document["log"]["entries"][4]["response"]  # tolerated: a response is not needed
    damaged = tmp_path / "odd.har"
    damaged.write_text(json.dumps(document))
    result, audited = replay(tmp_path, damaged)
    assert result.returncode == 2
    assert len(audited) == total - 1
    assert f"{damaged}: entry 2: not a readable HAR entry (missing key 'request')" in \
        result.stderr.replace("\n", "")


def test_har_flow_ids_are_stable_across_reads() -> None:
    har = str(ROOT / "captures" / "browser.har")
    first = [f.id for f, _ in CaptureReader([har]).flows()]
    assert first == [f.id for f, _ in CaptureReader([har]).flows()]
    assert len(set(first)) == len(first)


def test_replaying_twice_does_not_duplicate_flows(tmp_path: Path) -> None:
    capture = ROOT / "captures"
    first, audited = replay(tmp_path, capture)
    second, again = replay(tmp_path, capture)
    assert first.returncode == second.returncode == 1
    assert sorted(audited) == sorted(again)
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        assert conn.execute("select count(*) from runs").fetchone()[0] == 2
        per_run = dict(conn.execute("select run_id, count(*) from violations group by run_id"))
    assert list(per_run) == [2]  # the second run re-audited (replaced) every flow


def test_empty_wrong_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.flow"
    empty.write_bytes(b"")
    text = tmp_path / "notes.har"
    text.write_text("this is not a capture")
    good = ROOT / "captures" / "backend.flow"
    result, audited = replay(tmp_path, empty, text, tmp_path / "nowhere.flow", good)
    assert result.returncode == 2
    assert len(audited) == len(flow_offsets(good))
    stderr = result.stderr.replace("\n", "")
    for name in (empty, text, tmp_path / "nowhere.flow"):
        assert str(name) in stderr


def test_har_values_are_not_quoted_in_errors(tmp_path: Path) -> None:
    document = json.loads((ROOT / "captures" / "browser.har").read_text())
    document["log"]["entries"][1]["startedDateTime"] = "marie.secret@example.org"
    damaged = tmp_path / "odd.har"
    damaged.write_text(json.dumps(document))
    result, _ = replay(tmp_path, damaged)
    assert result.returncode == 2 and "entry 1" in result.stderr
    assert "marie.secret" not in result.stderr + result.stdout


def test_broken_database_and_policy_files_exit_2(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("hello, this is not SQLite " * 100)
    result = run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                 "--db", str(not_a_db), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\norganization: {name: X\x07, first_party: []}\n")
    result = run("policy", "check", "--policy", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and str(bad) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_policy_error_names_the_policy_file_when_a_registry_is_given(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((ROOT / "policies" / "policy.yaml").read_text()
                      .replace("purposes: [newsletter]", "purposes: [newsleter]", 1))
    result = run("policy", "check", "--policy", str(policy), "--subjects",
                 str(ROOT / "policies" / "subjects.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    line = next(i for i, t in enumerate(policy.read_text().splitlines(), 1) if "newsleter" in t)
    assert f"{policy}:{line}:" in result.stderr.replace("\n", "")


def test_har_entries_keep_a_recorded_flow_id() -> None:
    """captures/generate.py records each flow's id in the HAR entry's `_flow_id` field."""
    expected = [c["flow_id"] for c in json.loads((ROOT / "captures" / "expected.json").read_text())
                if c["file"] == "browser.har"]
    assert [f.id for f, _ in CaptureReader([str(ROOT / "captures" / "browser.har")]).flows()] == expected
