"""The log under concurrency and crashes, with real processes on a real SQLite file.

Strategy: two replays writing one log at once must both succeed with every row there; a
replay killed with SIGKILL mid-run leaves a log that opens, is consistent, and is completed
(not duplicated) by running the same replay again. The same for the proxy: killed with SIGKILL
while client threads are sending, and writing one log beside a replay (nothing lost). Only
the log is read, never the proxy's internals (it may audit in a worker process)."""

import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from mitmproxy import io

from gdpr_audit.captures import CaptureReader
from gdpr_audit.pytest_plugin import start_proxy
from test_cli import ROOT

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
                            text=True, env={"PYTHONPATH": str(ROOT / "addon"),
                                            "PATH": "/usr/bin:/bin",
                                            "GDPR_AUDIT_KEY": "durability-test-key"})


def consistent(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    assert conn.execute("pragma foreign_key_check").fetchall() == []
    assert conn.execute("""select count(*) from flows f where f.violations !=
                           (select count(*) from violations v where v.flow_id = f.id)"""
                        ).fetchone() == (0,)
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
        finished = conn.execute("select count(*) from runs where finished is not null")
        assert finished.fetchone() == (2,)


def wait_for_flows(db: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from flows").fetchone()[0] >= count:
                    return
        except sqlite3.OperationalError:  # not created yet, or busy
            pass


def test_killed_replay_leaves_a_consistent_log_and_resumes(tmp_path: Path) -> None:
    capture = tmp_path / "long.flow"
    total = corpus(capture, 40)
    db = tmp_path / "audit.db"
    run = replay(capture, db)
    wait_for_flows(db, 200)  # some batches are in the log
    workers = children(run.pid)  # --jobs: audit workers forked from the replay
    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_gone(workers)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the killed replay"
    with consistent(db) as conn:
        kept = conn.execute("select count(*) from flows").fetchone()[0]
    assert 0 < kept < total
    again = replay(capture, db)
    again.communicate(timeout=600)
    assert again.returncode == 1
    with consistent(db) as conn:
        assert conn.execute("select count(*) from flows").fetchone() == (total,)


# --- the proxy: killed under load, and writing one log beside a replay ---------------------

PROXY_OFFLINE = ("-s", str(ROOT / "tests" / "responder.py"), "--set", "connection_strategy=lazy")
EMAIL = "marie.dupont@example.fr"  # cust-001


def children(pid: int) -> list[int]:
    """Every process `pid` started (any worker it may audit in), found in /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


class Load:
    """Client threads sending through the proxy until told to stop; what was answered."""

    def __init__(self, proxy_url: str, threads: int = 6) -> None:
        self.proxies = {"http": proxy_url, "https": proxy_url}
        self.answered: list[str] = []  # paths the client got a 200 for
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._send, args=(n,)) for n in range(threads)]
        for thread in self.threads:
            thread.start()

    def _send(self, number: int) -> None:
        client = requests.Session()
        client.trust_env = False
        count = 0
        while not self.stop.is_set():
            path = f"/collect?load{number}x{count}"  # a query key: the log keeps it
            count += 1
            self.sent.append(path)
            try:
                response = client.post(f"http://collect.adnetwork-example.com{path}",
                                       json={"email": EMAIL, "n": count},
                                       proxies=self.proxies, timeout=30)
            except requests.RequestException:
                return  # the proxy is gone
            if response.status_code == 200:
                self.answered.append(path)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def logged_paths(conn: sqlite3.Connection) -> set[str]:
    """The paths of the load's flows, as sent (the log keeps a query's keys, not its values)."""
    return {path.removesuffix("=*") for (path,) in
            conn.execute("select path from flows where path like '/collect?load%'")}


def finished_runs_add_up(conn: sqlite3.Connection, only_finished: bool = True) -> None:
    assert conn.execute(f"""select count(*) from runs r where
                           {"r.finished is not null and" if only_finished else ""}
                           r.flows != (select count(*) from flows f where f.run_id = r.id)"""
                        ).fetchone() == (0,)


def test_proxy_killed_under_load_leaves_a_consistent_log(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    proxy = start_proxy(tmp_path, str(ROOT / "policies"), db, *PROXY_OFFLINE)
    load = Load(proxy.url)
    wait_for_flows(db, 50)  # the load still running
    workers = children(proxy.process.pid)
    proxy.process.send_signal(signal.SIGKILL)  # while the clients are still sending
    proxy.process.wait()
    load.join()
    wait_gone(workers)  # a worker may still commit what it had received
    with consistent(db) as conn:
        kept = logged_paths(conn)
        finished_runs_add_up(conn)
        assert conn.execute("select count(*) from runs where finished is null").fetchone() == (1,)
    assert kept <= set(load.sent)  # nothing invented
    lost = len(set(load.answered) - kept)
    print(f"REPORT proxy SIGKILL under load: {len(load.sent)} sent by 6 threads, "
          f"{len(load.answered)} answered, {len(kept)} in the log, {lost} answered but not "
          f"logged, {len(workers)} worker process(es)")
    assert len(kept) >= 50
    # the same log takes a new proxy, which finishes its own run
    again = start_proxy(tmp_path, str(ROOT / "policies"), db, *PROXY_OFFLINE)
    requests.post("http://collect.adnetwork-example.com/collect?loadafter", json={"email": EMAIL},
                  proxies={"http": again.url}, timeout=30)
    again.stop()
    with consistent(db) as conn:
        finished_runs_add_up(conn, only_finished=False)  # the killed run was counted on opening
        assert "/collect?loadafter" in logged_paths(conn)


def test_proxy_and_replay_write_one_log_at_once(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    capture = tmp_path / "corpus.flow"
    total = corpus(capture, 4)
    db = tmp_path / "audit.db"
    monkeypatch.setenv("GDPR_AUDIT_KEY", "durability-test-key")  # the replay's key too
    proxy = start_proxy(tmp_path, str(ROOT / "policies"), db, *PROXY_OFFLINE)
    try:
        load = Load(proxy.url, threads=3)
        run = replay(capture, db)
        out, err = run.communicate(timeout=600)
        load.join()
        proxy.flush()
    finally:
        proxy.stop()
    assert run.returncode == 1, err
    assert "locked" not in err and "Traceback" not in err
    proxy_output = (tmp_path / "proxy.log").read_text(errors="replace")
    assert "locked" not in proxy_output and "not written" not in proxy_output
    with consistent(db) as conn:
        sent = logged_paths(conn)
        assert conn.execute("select count(*) from flows where path not like '/collect?load%'"
                            ).fetchone() == (total,)
        assert conn.execute("select count(*) from runs where finished is null").fetchone() == (0,)
        finished_runs_add_up(conn)
    assert sent == set(load.answered) == set(load.sent)  # every flow sent is in the log
    print(f"REPORT proxy + replay on one log: {total} replayed and {len(sent)} proxied flows, "
          f"0 lost")
