"""End to end: the `gdpr-audit` console script in a real process, on the bundled samples.

Strategy: the expected violations come from captures/expected.json, written by hand next to
each case in captures/generate.py (never by running a detector); the log and the export are
then searched for every registry identifier in every form the product claims to detect."""

import base64
import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from mitmproxy import io

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gdpr_audit"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin",
                               "COLUMNS": "200"})


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    work = tmp_path_factory.mktemp("replay")
    result = run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                 "--db", str(work / "audit.db"), cwd=work)
    return work, result


def test_replay_finds_exactly_the_violations_expected_by_construction(sample_run) -> None:
    work, result = sample_run
    assert result.returncode == 1, result.stderr
    expected = {(case["file"], case["index"], rule)
                for case in json.loads((ROOT / "captures" / "expected.json").read_text())
                for rule in case["rules"]}
    with sqlite3.connect(work / "audit.db") as db:
        found = {(Path(source.split("#")[0]).name, int(source.split("#")[1]), rule)
                 for source, rule in db.execute(
                     "select f.source, v.rule from violations v join flows f on f.id = v.flow_id")}
        flows = db.execute("select count(*) from flows").fetchone()[0]
    assert found == expected
    assert flows == len(json.loads((ROOT / "captures" / "expected.json").read_text()))


def test_audits_from_worker_processes_log_what_one_process_logs(tmp_path: Path) -> None:
    """Two worker processes and one process must log the very same rows: fields, evidence
    and links survive the trip back."""
    for jobs, db in (("2", "many.db"), ("1", "one.db")):
        result = run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                     "--db", str(tmp_path / db), "--jobs", jobs, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
    queries = ["select flow_id, detector, category, subject, location, field, form, evidence, "
               "count from findings order by flow_id, id",
               "select v.flow_id, v.rule, v.field, v.evidence, v.message, v.fingerprint, "
               "x.field from violations v join violation_findings l on l.violation_id = v.id "
               "join findings x on x.id = l.finding_id order by v.flow_id, v.id, x.id",
               "select id, source, path, status, violations, consent from flows order by rowid"]
    with sqlite3.connect(tmp_path / "many.db") as many, \
            sqlite3.connect(tmp_path / "one.db") as one:
        for query in queries:
            rows = one.execute(query).fetchall()
            assert rows and many.execute(query).fetchall() == rows, query


def test_summary_names_every_sampled_rule(sample_run) -> None:
    _, result = sample_run
    rules = {rule for case in json.loads((ROOT / "captures" / "expected.json").read_text())
             for rule in case["rules"]}
    assert len(rules) == 8
    for rule in rules:
        assert rule in result.stdout


def test_export_json_carries_flow_ids_and_spec_fields(sample_run) -> None:
    work, _ = sample_run
    result = run("export", "--format", "json", "--db", str(work / "audit.db"), cwd=work)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"runs", "violations", "findings"}
    backend_ids = {c["flow_id"] for c in json.loads((ROOT / "captures" / "expected.json").read_text())
                   if c["file"].endswith(".flow") and c["rules"]}
    assert backend_ids <= {v["flow_id"] for v in document["violations"]}
    for item in document["violations"]:
        assert {"flow_id", "host", "rule", "category", "subject", "location", "field",
                "evidence"} <= set(item)
    for item in document["findings"]:
        assert {"flow_id", "host", "category", "subject", "location", "field", "evidence"} <= set(item)


def identifier_forms(value: str) -> set[str]:
    """Every spelling of `value` that must never be stored (computed here, independently)."""
    forms = {value, value.lower(), quote(value, safe=""), quote_plus(value)}
    for text in list(forms):
        forms.add(base64.b64encode(text.encode()).decode().rstrip("="))
        for algorithm in ("md5", "sha1", "sha256", "sha512"):
            forms.add(hashlib.new(algorithm, text.encode()).hexdigest())
    if value.startswith("+"):
        forms |= identifier_forms(value[1:]) if len(value) > 1 and value[1] != "+" else set()
    return {f for f in forms if len(f) >= 4}


def registry_values() -> list[str]:
    values = []
    for subject in yaml.safe_load((ROOT / "policies" / "subjects.yaml").read_text())["subjects"]:
        for value in subject.get("identifiers", {}).values():
            values += [str(v) for v in (value if isinstance(value, list) else [value])]
    return values


def test_no_registry_identifier_in_the_log_or_export_in_any_form(sample_run) -> None:
    work, result = sample_run
    export = run("export", "--format", "json", "--db", str(work / "audit.db"), cwd=work).stdout
    haystacks = {
        "audit.db": b"".join(p.read_bytes() for p in work.glob("audit.db*")).lower(),
        "export": export.encode().lower(),
        "terminal": (result.stdout + result.stderr).encode().lower(),
    }
    leaks = []
    for value in registry_values():
        for form in identifier_forms(value):
            for name, haystack in haystacks.items():
                if form.lower().encode() in haystack:
                    leaks.append((name, form))
    assert leaks == []


def test_fail_on_threshold(tmp_path: Path) -> None:
    """A capture holding only a medium violation (excess-data) fails at medium, not at high."""
    with (ROOT / "captures" / "backend.flow").open("rb") as handle:
        flows = list(io.FlowReader(handle).stream())
    case = next(c for c in json.loads((ROOT / "captures" / "expected.json").read_text())
                if c["file"] == "backend.flow" and c["rules"] == ["excess-data"])
    capture = tmp_path / "medium.flow"
    with capture.open("wb") as out:
        io.FlowWriter(out).add(flows[case["index"]])
    for threshold, code in (("high", 0), ("medium", 1), ("low", 1)):
        result = run("replay", str(capture), "--policy", str(ROOT / "policies"),
                     "--db", str(tmp_path / f"{threshold}.db"), "--fail-on", threshold, cwd=tmp_path)
        assert result.returncode == code, (threshold, result.stdout)


def test_policy_check_command(tmp_path: Path) -> None:
    ok = run("policy", "check", "--policy", str(ROOT / "policies"), cwd=tmp_path)
    assert ok.returncode == 0 and "10 subjects" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "policies" / "policy.yaml").read_text().replace("role: processor", "role: procesor", 1))
    result = run("policy", "check", "--policy", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "procesor" in text)
    assert f"{bad}:{line}: recipients[0].role:" in result.stderr.replace("\n", "")


def test_export_without_log_is_a_clear_error(tmp_path: Path) -> None:
    result = run("export", "--db", str(tmp_path / "missing.db"), cwd=tmp_path)
    assert result.returncode == 2 and "missing.db" in result.stderr
    assert not (tmp_path / "missing.db").exists()


def test_the_command_hands_its_objects_to_the_exit_frozen(tmp_path: Path) -> None:
    """The interpreter's last collections walk every object the process still holds (0.2 s
    of every command): the console script freezes them first, and keeps main()'s exit code."""
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print(gc.get_freeze_count(), len(gc.get_objects())))\n"
             "from gdpr_audit.__main__ import run\n"
             "sys.argv[1:] = ['violations', '--db', sys.argv[1]]\n"
             "run()\n")
    result = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "audit.db")],
                            capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "no audit log here" in result.stderr  # main()'s error
    frozen, tracked = map(int, result.stdout.split()[-2:])
    assert frozen > 50_000 and tracked < 100
