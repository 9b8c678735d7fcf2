"""The log under concurrency and crashes, with real processes on a real SQLite file.

Strategy: two replays writing one log at once must both succeed with every row there; a
replay killed with SIGKILL mid-run leaves a log that opens, is consistent, and is completed
(not duplicated) by running the same replay again."""

import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from mitmproxy import io
from test_cli import ROOT

from gdpr_audit.captures import CaptureReader

CLI = [sys.executable, "-m", "gdpr_audit"]


def corpus(path: Path, copies: int) -> int:
    """The sample flows, `copies` times over with fresh ids."""
    flows = [flow for flow, _ in CaptureReader([str(ROOT / "captures")]).flows()]
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for _ in range(copies):
            for flow in flows:
                copy = flow.copy()
                copy.id = str(uuid.uuid4())
                writer.add(copy)
    return copies * len(flows)


def replay(capture: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "replay", str(capture), "--policy", str(ROOT / "policies"),
                             "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin",
                                            "GDPR_AUDIT_KEY": "durability-test-key"})


def consistent(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    assert conn.execute("pragma foreign_key_check").fetchall() == []
    assert conn.execute("""select count(*) from flows f where f.violations !=
                           (select count(*) from violations v where v.flow_id = f.id)""").fetchone() == (0,)
    return conn


def test_two_replays_write_one_log_at_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a.flow", tmp_path / "b.flow"
    total = corpus(first, 10) + corpus(second, 10)
    db = tmp_path / "audit.db"
    runs = [replay(first, db), replay(second, db)]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [1, 1], results
    assert not any("locked" in err for _, err in results)
    with consistent(db) as conn:
        assert conn.execute("select count(*) from flows").fetchone() == (total,)
        assert conn.execute("select count(*) from runs where finished is not null").fetchone() == (2,)


def test_killed_replay_leaves_a_consistent_log_and_resumes(tmp_path: Path) -> None:
    capture = tmp_path / "long.flow"
    total = corpus(capture, 40)
    db = tmp_path / "audit.db"
    run = replay(capture, db)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some batches are in the log
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from flows").fetchone()[0] >= 200:
                    break
        except sqlite3.OperationalError:
            pass
    run.send_signal(signal.SIGKILL)
    run.wait()
    with consistent(db) as conn:
        kept = conn.execute("select count(*) from flows").fetchone()[0]
    assert 0 < kept < total
    again = replay(capture, db)
    again.communicate(timeout=600)
    assert again.returncode == 1
    with consistent(db) as conn:
        assert conn.execute("select count(*) from flows").fetchone() == (total,)
