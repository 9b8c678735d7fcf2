"""Log-only mode audits in a worker process (offload.py): what crosses the pipe, what the
worker does with errors, barriers, and its life next to the proxy's.

Strategy: the real worker process and a real SQLite log throughout, driven through the
addon in mitmproxy's taddons harness or through a real `gdpr-audit proxy` process; kill
processes with real signals and read the log with sqlite3."""

import asyncio
import json
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from mitmproxy import websocket
from mitmproxy.test import taddons, tflow

from conftest import make_flow
from gdpr_audit import offload as offload_module
from gdpr_audit.addon import BARRIER_HOST, GdprAudit
from gdpr_audit.audit import Auditor
from gdpr_audit.offload import (
    WORKER_NICE,
    OffloadedAudits,
    audit_state,
    flow_state,
    hurry,
    rebuild,
    rebuild_audit,
)
from gdpr_audit.policy import load_policy
from gdpr_audit.pytest_plugin import _free_port, start_proxy
from gdpr_audit.store import AuditStore
from test_addon import ALICE, post, rows

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ("-s", str(ROOT / "tests" / "responder.py"), "--set", "connection_strategy=lazy")
PAGE = '<form><input type="checkbox" name="newsletter" checked> la newsletter et les offres</form>'


def summary(audit) -> tuple:
    return (audit.method, audit.scheme, audit.host, audit.path, audit.at, audit.error,
            sorted((v.rule, v.message) for v in audit.violations),
            sorted((f.category, f.field.location, f.value) for f in audit.findings))


def test_the_rebuilt_flow_audits_like_the_original(policy_file: Path) -> None:
    """What crosses the pipe is all the audit reads: request, HTML response, client messages."""
    auditor = Auditor(load_policy(str(policy_file), None))
    page = make_flow("https://shop.test/signup?email=alice.martin%40example.org")
    page.response.headers["content-type"] = "text/html"
    page.response.content = PAGE.encode()
    chat = tflow.twebsocketflow(messages=False)
    chat.request.host = "chat.widget.test"
    chat.websocket.messages += [
        websocket.WebSocketMessage(1, True, ALICE.encode()),
        websocket.WebSocketMessage(1, False, b"hello from the agent")]
    form = make_flow("http://collect.adnetwork.test/e?uid=42", "POST",
                     "email=alice.martin%40example.org&phone=%2B33612345678",
                     {"content-type": "application/x-www-form-urlencoded", "cookie": "a=b"})
    for flow in (page, chat, form):
        original = auditor.audit(flow)
        assert original.violations or original.findings
        assert summary(auditor.audit(rebuild(flow_state(flow)))) == summary(original)
    rebuilt = auditor.audit(rebuild(flow_state(page)))
    assert "pre-ticked-consent" in {v.rule for v in rebuilt.violations}


async def test_a_flow_the_worker_cannot_rebuild_is_logged_as_an_error(policy_file: Path,
                                                                       tmp_path: Path) -> None:
    addon = GdprAudit()
    db = tmp_path / "audit.db"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        broken = post("https://eu.mailer.test/contacts")
        broken.request.data.host = b"\xff\xfe.test"  # not a host name: Request() refuses it
        await addon.request(broken)
        await addon.request(post("http://eu.mailer.test/contacts"))  # the worker goes on
        addon.done()
    assert sorted(rows(db, "select status, error from flows")) == [
        ("audited", None), ("error", "UnicodeDecodeError in the audit worker")]
    assert rows(db, "select rule from violations") == [("clear-text",)]


async def test_the_barrier_leaves_the_event_loop_free(policy_file: Path, tmp_path: Path) -> None:
    addon = GdprAudit()
    db = tmp_path / "audit.db"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        for _ in range(100):
            await addon.request(post("http://eu.mailer.test/contacts"))
        barrier = make_flow(f"http://{BARRIER_HOST}/")
        barrier.response = None
        ticks, done = 0, False

        async def wait_for_barrier() -> None:
            nonlocal done
            await addon.request(barrier)
            done = True

        async def tick() -> None:  # runs only while the loop is free
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.001)

        await asyncio.wait_for(asyncio.gather(wait_for_barrier(), tick()), 120)
        assert ticks > 0
        assert json.loads(barrier.response.content)["flushed"] is True
        assert rows(db, "select count(*) from flows") == [(100,)]
        addon.done()


async def test_a_dead_worker_never_stops_traffic(policy_file: Path, tmp_path: Path,
                                                 caplog) -> None:
    """The worker killed under the proxy: flows still pass, and a new worker audits them
    (auditing inline held every connection while a slow flow was audited)."""
    addon = GdprAudit()
    db = tmp_path / "audit.db"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        offload = addon.offload
        os.kill(offload.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while offload.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not offload.alive
        flow = post("http://eu.mailer.test/contacts")
        await addon.request(flow)
        assert flow.response is not None and flow.response.status_code == 200
        assert addon.auditor is None and addon.writer is None  # nothing inline
        assert addon.offload is not offload and addon.offload.alive
        addon.done()
    assert rows(db, "select rule from violations") == [("clear-text",)]
    assert "the audit worker stopped" in caplog.text
    assert "restarting the audit worker" in caplog.text
    assert "alice" not in caplog.text.lower()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name.isdigit() and int(stat[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError):
            pass
    return found


def _gone(pid: int, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True  # exited; waiting for its new parent to reap it
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _send(proxy, count: int) -> None:
    with requests.Session() as session:
        for number in range(count):
            session.post("http://collect.adnetwork-example.com/e",
                         json={"email": "marie.dupont@example.fr", "n": number},
                         proxies=proxy.proxies, timeout=30)


def test_the_worker_does_not_outlive_a_killed_proxy(tmp_path: Path) -> None:
    proxy = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", *OFFLINE)
    try:
        _send(proxy, 10)
        proxy.flush()
        children = _children(proxy.process.pid)  # the worker (and multiprocessing's tracker)
    finally:
        proxy.process.kill()  # SIGKILL: no done(), no chance to tell the worker
        proxy.process.wait()
    assert children and all(_gone(pid) for pid in children), "a child lingers after the proxy died"
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("select count(*) from flows").fetchone() == (10,)
        assert db.execute("select count(*) from runs where finished is null").fetchone() == (1,)


def test_a_clean_stop_ends_the_worker_and_the_run(tmp_path: Path) -> None:
    proxy = start_proxy(tmp_path, str(ROOT / "policies"), tmp_path / "audit.db", *OFFLINE)
    try:
        _send(proxy, 5)
        children = _children(proxy.process.pid)
    finally:
        proxy.stop()
    assert children and all(_gone(pid, timeout=5) for pid in children)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("select flows, finished is not null from runs").fetchall() == [(5, 1)]
    log = (tmp_path / "proxy.log").read_text()
    assert "undeclared-recipient" in log and "marie" not in log.lower()


def test_ctrl_c_to_the_whole_group_loses_nothing(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the proxy and its worker at once: the worker must wait
    for the proxy to close it, or the flows it holds are lost and the run never ends."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gdpr_audit", "proxy", "--listen-host", "127.0.0.1",
         "--listen-port", str(port), "--policy", str(ROOT / "policies"),
         "--db", str(tmp_path / "audit.db"), "--set", f"confdir={tmp_path}", *OFFLINE],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        proxies = {"http": f"http://127.0.0.1:{port}"}
        with requests.Session() as session:
            for number in range(20):
                session.post("http://collect.adnetwork-example.com/e", json={"n": number},
                             proxies=proxies, timeout=30)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("select flows, finished is not null from runs").fetchall() == [(20, 1)]


async def test_answers_larger_than_one_read_come_back_whole(policy_file: Path,
                                                            tmp_path: Path) -> None:
    """The loop reads the worker's answers in 64 KiB chunks: one batch of 1,500 verdicts
    (about 100 KB) arrives in pieces, and every flow still gets its own."""
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"))
        flows = [post(f"http://eu.mailer.test/contacts/{n}") for n in range(1500)]
        for flow in flows:  # no await suspends: one batch, one answer
            await addon.request(flow)
        barrier = make_flow(f"http://{BARRIER_HOST}/")
        barrier.response = None
        await addon.request(barrier)
        assert all(flow.metadata.get("gdpr_audit") == ["clear-text"] for flow in flows)
        addon.done()


def _log(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        return {table: conn.execute(f"select * from {table} order by 1").fetchall()
                for table in ("flows", "findings", "violations", "violation_findings")}


def test_an_audit_handed_over_is_written_like_the_original(tmp_path: Path, monkeypatch) -> None:
    """Enforce mode audits in the proxy and hands the result to the worker as plain values:
    the log must hold exactly what writing the audit itself would have written."""
    monkeypatch.setenv("GDPR_AUDIT_KEY", "k" * 64)  # one key: the same fingerprints
    auditor = Auditor(load_policy(str(ROOT / "policies"), None))
    flows = [
        make_flow("http://api.segment.io/v1/track", "POST",
                  '{"email": "client.7@example.fr", "event": "Order Completed", '
                  '"order_id": "ORD-7", "total": 7.5}', {"content-type": "application/json"}),
        make_flow("http://www.google-analytics.com/collect?v=2&tid=G-X&cid=7.1700000000&uid=u7"
                  "&dl=https%3A%2F%2Fshop.example%2Fp%2F7&en=page_view", "GET", "",
                  {"cookie": "_ga=GA1.2.7.1700000000; session=s7"}),
        make_flow("http://forms.tracker-widget.example/submit", "POST",
                  "email=marie.dupont%2B7%40example.fr&phone=%2B33612340007&newsletter=1",
                  {"content-type": "application/x-www-form-urlencoded"}),
        make_flow("https://shop.example/cart"),  # first party, nothing to say
    ]
    audits = [auditor.audit(flow) for flow in flows]
    assert sum(len(a.violations) for a in audits) >= 3
    assert any(len(v.evidence) > 1 for a in audits for v in a.violations)
    for name, written in (("original", audits),
                          ("handed-over", [rebuild_audit(pickle.loads(pickle.dumps(
                              audit_state(a)))) for a in audits])):
        store = AuditStore(str(tmp_path / f"{name}.db"))
        store.record(store.start_run("proxy", ["policies"]), [(a, "proxy") for a in written])
        store.db.close()
    original, handed_over = _log(tmp_path / "original.db"), _log(tmp_path / "handed-over.db")
    assert original["violation_findings"] and original == handed_over


async def test_enforce_writes_through_the_worker_and_survives_its_death(policy_file: Path,
                                                                       tmp_path: Path) -> None:
    addon = GdprAudit()
    db = tmp_path / "audit.db"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db), gdpr_enforce=True)
        assert addon.offload is not None and addon.writer is None
        first = post("http://eu.mailer.test/contacts")
        await addon.request(first)
        barrier = make_flow(f"http://{BARRIER_HOST}/")
        barrier.response = None
        await addon.request(barrier)
        assert rows(db, "select rule from violations") == [("clear-text",)]
        os.kill(addon.offload.process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while addon.offload.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        second = post("http://collect.adnetwork.test/e?u=alice.martin%40example.org")
        second.response = None
        await addon.request(second)
        assert second.response is not None and second.response.status_code == 451
        assert addon.writer is None and addon.auditor is None  # a new worker, nothing inline
        addon.done()
    assert len(rows(db, "select id from flows")) == 2
    assert ("undeclared-recipient",) in rows(db, "select rule from violations")


async def test_closing_with_full_pipes_both_ways(policy_file: Path, tmp_path: Path) -> None:
    """close() hands over a batch larger than the pipe while the worker is answering one
    larger than the pipe: it must read the answers while it writes, or both wait forever."""
    addon = GdprAudit()
    db = tmp_path / "audit.db"
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        for n in range(1500):  # verdicts: about 100 KB in one answer
            await addon.request(post(f"http://eu.mailer.test/contacts/{n}"))
        await asyncio.sleep(0.1)  # handed over; the worker audits them for a second or two
        padding = "x" * 1000
        for n in range(500):  # about 500 KB still to write when done() comes
            await addon.request(post(f"https://eu.mailer.test/contacts/{n}",
                                     json.dumps({"note": padding})))
        closing = threading.Thread(target=addon.done, daemon=True)
        closing.start()
        closing.join(120)
        assert not closing.is_alive(), "close() and the worker wait for each other"
    assert rows(db, "select count(*) from flows") == [(2000,)]


def test_answers_read_with_the_end_of_file_are_not_lost(policy_file: Path, tmp_path: Path,
                                                        caplog) -> None:
    """The worker's last answers ("closed" among them) and its exit can reach the proxy in
    one read: the answers count, and a clean stop is not reported as a death."""
    verdicts: list = []
    offload = OffloadedAudits(
        {"audit": True, "policy": str(policy_file), "subjects": None, "max_body": 1 << 20,
         "db": str(tmp_path / "audit.db"), "sources": []}, verdicts.extend)
    offload.submit(post("http://eu.mailer.test/contacts"))  # no loop: written at once
    offload._put(("close",))  # the worker answers, ends the run and exits...
    offload.process.join(60)
    offload.close()  # ...before the proxy reads a byte of it
    assert [v.rules for v in verdicts] == [("clear-text",)]
    assert "the audit worker stopped" not in caplog.text and offload.errors == []
    assert rows(tmp_path / "audit.db", "select flows, finished is not null from runs") == [(1, 1)]


def _policies(pid: int) -> set[tuple[int, int]]:
    """(scheduling policy, nice) of every thread of a process."""
    return {(os.sched_getscheduler(int(task.name)),
             os.getpriority(os.PRIO_PROCESS, int(task.name)))
            for task in Path(f"/proc/{pid}/task").iterdir()}


def test_the_worker_runs_at_idle_priority_until_the_stop(policy_file: Path,
                                                         tmp_path: Path) -> None:
    """Idle priority while the proxy serves (the writer's thread too: it does half the
    worker's work), nice 19 again to drain at the stop, and the flow still reaches the log."""
    offload = OffloadedAudits(
        {"audit": True, "policy": str(policy_file), "subjects": None, "max_body": 1 << 20,
         "db": str(tmp_path / "audit.db"), "sources": []}, lambda verdicts: None)
    try:
        offload.submit(post("http://eu.mailer.test/contacts"))  # no loop: written at once
        pid = offload.process.pid
        deadline = time.monotonic() + 60  # the writer's thread starts with the first flow
        while len(list(Path(f"/proc/{pid}/task").iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(Path(f"/proc/{pid}/task").iterdir())) >= 2
        assert _policies(pid) == {(os.SCHED_IDLE, WORKER_NICE)}
        hurry(pid)
        assert _policies(pid) == {(os.SCHED_OTHER, WORKER_NICE)}
    finally:
        offload.close()
    assert rows(tmp_path / "audit.db", "select count(*) from flows") == [(1,)]


async def test_a_backlog_raises_the_worker_until_it_has_caught_up(policy_file: Path,
                                                                  tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Requests wait for the worker once the backlog is full: it must not wait for an idle
    CPU then. Idle priority again once it has caught up."""
    monkeypatch.setattr(offload_module, "BACKLOG", 100_000)
    offload = OffloadedAudits(
        {"audit": True, "policy": str(policy_file), "subjects": None, "max_body": 1 << 20,
         "db": str(tmp_path / "audit.db"), "sources": []}, lambda verdicts: None)
    pid = offload.process.pid
    os.kill(pid, signal.SIGSTOP)  # takes nothing from the pipe: the backlog builds up
    try:
        padding = "x" * 1000
        for n in range(400):  # about 400 KB: the pipe's 64 KB, and the rest waits
            offload.submit(post(f"http://eu.mailer.test/contacts/{n}",
                                json.dumps({"note": padding})))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # the coalesced writes
        assert offload.backlogged
        gone = asyncio.ensure_future(offload.caught_up())  # a request that goes away
        waiting = asyncio.ensure_future(offload.caught_up())
        await asyncio.sleep(0.1)
        assert _policies(pid) == {(os.SCHED_OTHER, WORKER_NICE)}
        gone.cancel()
        await asyncio.sleep(0.1)
        assert _policies(pid) == {(os.SCHED_OTHER, WORKER_NICE)}  # another one still waits
        waiting.cancel()
        await asyncio.sleep(0.1)
        assert _policies(pid) == {(os.SCHED_IDLE, WORKER_NICE)}  # none waits: idle again
        waiting = asyncio.ensure_future(offload.caught_up())
        await asyncio.sleep(0.1)
        assert _policies(pid) == {(os.SCHED_OTHER, WORKER_NICE)}
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.wait_for(waiting, 120)
    assert not offload.backlogged
    assert _policies(pid) == {(os.SCHED_IDLE, WORKER_NICE)}
    offload.close()
    assert rows(tmp_path / "audit.db", "select count(*) from flows") == [(400,)]
