"""Damaged input loses nothing that was good. Strategy: damage real sample captures (cut,
corrupt, strip fields), replay them through the CLI, and check that the error names the
file and the offset or entry, the exit code is 2, and every complete flow was audited."""

import json
import sqlite3
from pathlib import Path

from mitmproxy import io

from gdpr_audit.captures import CaptureReader
from test_cli import ROOT, run


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


def _del(*keys: str):
    def change(entry: dict) -> dict:
        target = entry
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        return entry
    return change


def _set(*keys: str, value: object):
    def change(entry: dict) -> dict:
        target = entry
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return entry
    return change


# Odd fields that real tools write, or that a damaged file holds: one per entry of browser.har.
ODD_ENTRIES = {
    "no url": _del("request", "url"),
    "url not a string": _set("request", "url", value=12345),
    "no method": _del("request", "method"),
    "headers as an object": _set("request", "headers", value={"a": "b"}),
    "header without value": _set("request", "headers", value=[{"name": "x-a"}]),
    "postData a string": _set("request", "postData", value="email=x"),
    "postData text a number": _set("request", "postData", value={"mimeType": "x", "text": 123}),
    "queryString null": _set("request", "queryString", value=None),
    "no startedDateTime": _del("startedDateTime"),
    "startedDateTime not a date": _set("startedDateTime", value="yesterday"),
    "entry null": lambda entry: None,
    "entry a string": lambda entry: "entry",
    "status not a number": _set("response", "status", value="abc"),
    "cookies a string": _set("request", "cookies", value="a=b"),
}


def test_har_entries_with_odd_fields_are_each_audited_or_named(tmp_path: Path) -> None:
    """Every entry is either audited or named by its index in a one-line error, exit 2; an
    odd entry never costs the entries beside it."""
    document = json.loads((ROOT / "captures" / "browser.har").read_text())
    entries = document["log"]["entries"]
    assert len(entries) > len(ODD_ENTRIES)
    for index, change in enumerate(ODD_ENTRIES.values(), start=1):
        entries[index] = change(entries[index])
    damaged = tmp_path / "odd.har"
    damaged.write_text(json.dumps(document))
    result, _ = replay(tmp_path, damaged)
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        audited = {int(source.rsplit("#", 1)[1]) for (source,) in
                   conn.execute("select source from flows")}
    stderr = result.stderr.replace("\n", "")
    assert "Traceback" not in stderr
    named = {index for index in range(len(entries)) if f"{damaged}: entry {index}:" in stderr}
    assert audited | named == set(range(len(entries))), (sorted(audited), sorted(named))
    assert not audited & named
    assert {0, *range(len(ODD_ENTRIES) + 1, len(entries))} <= audited  # the intact ones
    assert {11, 12} <= named  # an entry that is not an object cannot be read
    assert result.returncode == 2
    print(f"REPORT odd HAR entries: {len(ODD_ENTRIES)} kinds, "
          f"{len(audited & set(range(1, len(ODD_ENTRIES) + 1)))} tolerated, {len(named)} named")


def test_wrong_formats_and_trailing_garbage(tmp_path: Path) -> None:
    """Files of the wrong kind or with junk after the flows: each named, with where; every
    complete flow before the damage audited."""
    source = ROOT / "captures" / "backend.flow"
    ends = flow_offsets(source)
    files = {
        "garbage.flow": b"\x00\x01\x02binary noise\xff" * 100,
        "flow-as.har": source.read_bytes(),
        "trailing.flow": source.read_bytes() + b"\x00junk after the last flow\n",
        "no-log.har": json.dumps({"version": "1.2", "entries": []}).encode(),
        "entries-object.har": json.dumps({"log": {"entries": {"0": {}}}}).encode(),
        "array.har": b"[1, 2, 3]",
        "deep.har": b'{"log": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    }
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    result, audited = replay(tmp_path, *paths)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    stderr = result.stderr.replace("\n", "")
    for path in paths:
        assert str(path) in stderr, path.name
    assert f"{tmp_path / 'trailing.flow'}: byte offset {ends[-1][1]}" in stderr
    assert f"{tmp_path / 'garbage.flow'}: byte offset 0" in stderr
    assert sorted(audited) == sorted(flow_id for flow_id, _ in ends)  # from trailing.flow
