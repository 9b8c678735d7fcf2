"""The audit log is one self-contained file when a command that wrote it ends (issue 20.1):
a CI job that keeps only `audit.db` as an artifact, or a user who copies it, must get the
whole log, not a 4 KB header whose pages sit in `audit.db-wal`.

Strategy: run the real command (a process of its own), copy only the database file to another
folder (no -wal, no -shm), and read its runs and flows there with sqlite3."""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from gdpr_audit.pytest_plugin import start_proxy
from gdpr_audit.store import AuditStore

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gdpr_audit"]
EMAIL = "marie.dupont@example.fr"  # cust-001 in policies/subjects.yaml


def gdpr_audit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin"})


def copied_alone(db: Path, elsewhere: Path) -> tuple[int, int]:
    """(finished runs, flows) of a copy of the database file without its -wal and -shm."""
    elsewhere.mkdir()
    copy = elsewhere / db.name
    shutil.copyfile(db, copy)
    assert not Path(f"{copy}-wal").exists()
    with sqlite3.connect(copy) as conn:
        runs = conn.execute("select count(*) from runs where finished is not null").fetchone()[0]
        flows = conn.execute("select count(*) from flows").fetchone()[0]
    return runs, flows


def replay(work: Path, db: str = "audit.db") -> None:
    result = gdpr_audit("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                        "--db", db, cwd=work)
    assert result.returncode == 1, result.stderr  # the samples hold violations on purpose


def test_replay_leaves_the_whole_log_in_the_database_file(tmp_path: Path) -> None:
    replay(tmp_path)
    runs, flows = copied_alone(tmp_path / "audit.db", tmp_path / "copy")
    assert runs == 1 and flows > 30


def test_replay_with_a_report_leaves_a_self_contained_file(tmp_path: Path) -> None:
    result = gdpr_audit("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                        "--format", "json", "--output", "report.json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert copied_alone(tmp_path / "audit.db", tmp_path / "copy")[0] == 1


@pytest.mark.parametrize("command", [
    ("forget", EMAIL, "--policy", str(ROOT / "policies")),
    ("purge", "--older-than", "30d"),
])
def test_erasure_commands_leave_a_self_contained_file(tmp_path: Path, command: tuple[str, ...]) -> None:
    replay(tmp_path)
    result = gdpr_audit(*command, "--db", "audit.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        expected = conn.execute("select count(*) from flows").fetchone()[0]
    assert copied_alone(tmp_path / "audit.db", tmp_path / "copy")[1] == expected


def test_merge_leaves_a_self_contained_file(tmp_path: Path) -> None:
    replay(tmp_path, "a.db")
    shutil.copyfile(tmp_path / "a.db.key", tmp_path / "b.db.key")
    replay(tmp_path, "b.db")
    result = gdpr_audit("merge", "merged.db", "a.db", "b.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs, flows = copied_alone(tmp_path / "merged.db", tmp_path / "copy")
    assert runs == 2 and flows > 30


def test_the_proxy_leaves_a_self_contained_file_when_it_stops(tmp_path: Path) -> None:
    running = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db",
                          "-s", str(ROOT / "tests" / "responder.py"),
                          "--set", "connection_strategy=lazy")
    try:
        for number in range(5):
            requests.post("https://collect.adnetwork-example.com/e",
                          json={"email": EMAIL, "n": number}, proxies=running.proxies,
                          verify=str(running.ca_path), timeout=30)
    finally:
        running.stop()
    assert running.process.returncode == 0
    assert copied_alone(tmp_path / "audit.db", tmp_path / "copy") == (1, 5)


def test_a_reader_holding_the_wal_does_not_fail_the_writer(tmp_path: Path) -> None:
    """Another connection in the middle of a read keeps the WAL's pages: the checkpoint says
    so (False) instead of raising, and the data is still all there."""
    from gdpr_audit.store import checkpoint

    store = AuditStore(str(tmp_path / "audit.db"))
    store.finish_run(store.start_run("first", []), [])
    reader = sqlite3.connect(tmp_path / "audit.db")
    reader.execute("begin")
    reader.execute("select count(*) from runs").fetchone()  # holds a snapshot
    store.finish_run(store.start_run("second", []), [])
    assert checkpoint(store.db, wait=0.2) is False
    reader.rollback()
    assert checkpoint(store.db) is True
    reader.close()
    store.close()
    assert copied_alone(tmp_path / "audit.db", tmp_path / "copy") == (2, 0)
