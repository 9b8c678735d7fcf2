"""The mitmproxy addon in mitmproxy's own test harness (taddons), with a real SQLite log.

Strategy: drive the hooks the way the proxy does, then read the log with sqlite3 after
`done()`, which must have drained the writer thread."""

import asyncio
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from mitmproxy import exceptions, websocket
from mitmproxy.log import LegacyLogEvents
from mitmproxy.test import taddons, tflow

from conftest import make_flow
from gdpr_audit import addon as gdpr_addon
from gdpr_audit.addon import BARRIER_HOST, GdprAudit

ALICE = json.dumps({"email": "alice.martin@example.org"})


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def post(url: str, body: str = ALICE):
    return make_flow(url, "POST", body, {"content-type": "application/json"})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


async def test_violations_are_logged_marked_and_commented(policy_file: Path, db: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        flow = post("http://eu.mailer.test/contacts")
        flow.comment = "from the checkout test"
        await addon.request(flow)
        clean = post("https://eu.mailer.test/contacts")
        await addon.request(clean)
        addon.done()
    assert flow.marked and "clear-text" in flow.comment and flow.comment.startswith("from the checkout")
    assert flow.metadata["gdpr_audit"] == ["clear-text"]
    assert not clean.marked and clean.response is not None and clean.response.status_code == 200
    assert rows(db, "select rule from violations") == [("clear-text",)]
    assert len(rows(db, "select id from flows")) == 2
    assert rows(db, "select command, finished is not null from runs") == [("proxy", 1)]


async def test_enforce_answers_451_without_personal_data(policy_file: Path, db: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db), gdpr_enforce=True)
        flow = post("https://collect.adnetwork.test/e?u=alice.martin%40example.org")
        flow.response = None
        await addon.request(flow)
        clean = post("https://eu.mailer.test/contacts")
        clean.response = None
        await addon.request(clean)
        addon.done()
    assert flow.response is not None and flow.response.status_code == 451
    body = json.loads(flow.response.content)
    assert {r["rule"] for r in body["rules"]} == {"undeclared-recipient", "pii-in-url"}
    assert body["recipient"] == "adnetwork.test"
    assert b"alice" not in flow.response.content.lower()
    assert clean.response is None  # forwarded untouched


def test_invalid_policy_is_refused_with_file_and_line(tmp_path: Path, db: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\norganization:\n  name: X\n  first_party: [x.test]\n"
                      "recipients:\n  - {name: A, hosts: [a.test], purposes: [nope]}\n")
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=rf"gdpr_policy: {policy}:6: recipients\[0\]"):
            tctx.configure(addon, gdpr_policy=str(policy), gdpr_db=str(db))


def test_unusable_log_is_refused(policy_file: Path, tmp_path: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="gdpr_db"):
            tctx.configure(addon, gdpr_policy=str(policy_file),
                           gdpr_db=str(tmp_path / "missing-folder" / "audit.db"))


async def test_audit_failure_lets_the_flow_pass_and_is_recorded(policy_file: Path, db: Path,
                                                                tmp_path: Path, monkeypatch) -> None:
    # the judges are processes of their own: the bug reaches them through sitecustomize
    (tmp_path / "sitecustomize.py").write_text(
        "from gdpr_audit.audit import Auditor\n\n\ndef explode(self, extraction, seen=None):\n"
        "    raise RuntimeError('detector bug')\n\n\nAuditor.detect = explode\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{Path(__file__).resolve().parents[1] / 'addon'}")
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db), gdpr_enforce=True)
        flow = post("http://collect.adnetwork.test/e")
        flow.response = None
        await addon.request(flow)
        addon.done()
    assert flow.response is None  # not blocked, not broken
    assert rows(db, "select status, error from flows") == [("error", "RuntimeError: detector bug")]


async def test_websocket_messages_are_audited_and_ws_is_clear_text(policy_file: Path, db: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db), gdpr_enforce=True)
        flow = tflow.twebsocketflow(messages=False)
        flow.request.host = "chat.widget.test"
        flow.websocket.messages.append(websocket.WebSocketMessage(
            1, True, json.dumps({"type": "visitor", "email": "alice.martin@example.org"}).encode()))
        await addon.websocket_message(flow)
        assert flow.websocket.messages[-1].dropped  # enforce drops the violating message
        flow.websocket.messages.append(websocket.WebSocketMessage(1, False, b"hello from the agent"))
        await addon.websocket_message(flow)
        assert not flow.websocket.messages[-1].dropped
        addon.websocket_end(flow)
        addon.done()
    assert sorted(r[0] for r in rows(db, "select rule from violations")) == \
        ["clear-text", "undeclared-recipient"]
    assert rows(db, "select scheme from flows") == [("ws",)]


PAGE = """<html><body><form action="/signup" method="post">
<input type="email" name="email">
<label for="nl">Je souhaite recevoir la newsletter et les offres</label>
<input CHECKED id="nl" type="checkbox" name="opt">
<label><input type="checkbox" name="terms" checked="checked"> I have read the delivery terms</label>
</form></body></html>"""


async def test_pre_ticked_consent_in_a_served_page(policy_file: Path, db: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        flow = make_flow("https://shop.test/signup")
        await addon.request(flow)
        flow.response.headers["content-type"] = "text/html; charset=utf-8"
        flow.response.content = PAGE.encode()
        addon.response(flow)
        addon.done()
    [(rule, message)] = rows(db, "select rule, message from violations")
    assert rule == "pre-ticked-consent" and "opt" in message and "terms" not in message


async def test_barrier_answers_after_the_log_holds_everything(policy_file: Path, db: Path) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        for _ in range(50):
            await addon.request(post("http://eu.mailer.test/contacts"))
        barrier = make_flow(f"http://{BARRIER_HOST}/")
        barrier.response = None
        await addon.request(barrier)
        assert barrier.response.status_code == 200
        assert rows(db, "select count(*) from violations") == [(50,)]
        addon.done()


def test_the_script_mitmproxy_loads(policy_file: Path, db: Path) -> None:
    with taddons.context() as tctx:
        module = tctx.script(str(Path(__file__).resolve().parents[1] / "addon" / "gdpr_audit_addon.py"))
    [addon] = module.addons
    assert isinstance(addon, GdprAudit)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        assert addon.policy is not None and addon.offload is not None
        assert addon.auditor is None  # log-only: the worker's index is the only one built
        addon.done()


class AddLogListener:
    """An addon with mitmproxy's deprecated `add_log` hook."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add_log(self, entry) -> None:
        self.lines.append(entry.msg)


async def test_violation_lines_reach_add_log_listeners(policy_file: Path, db: Path) -> None:
    listener, addon = AddLogListener(), GdprAudit()
    with taddons.context(listener, addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        await addon.request(post("http://eu.mailer.test/contacts"))
        addon.done()  # hands the verdict back
        await asyncio.sleep(0)  # mitmproxy fires add_log on the loop's next iteration
    assert any("gdpr: POST eu.mailer.test/contacts: clear-text" in line
               for line in listener.lines)


@pytest.mark.parametrize("window", [gdpr_addon.REPEAT_SECONDS, 0.0])
async def test_repeated_violations_share_a_line_that_counts_them(
        policy_file: Path, db: Path, caplog, monkeypatch, window: float) -> None:
    """Within the window, one line per kind of violation and a count of the rest; with no
    window, a line per flow. Every flow is in the log either way."""
    monkeypatch.setattr(gdpr_addon, "REPEAT_SECONDS", window)
    caplog.set_level(logging.WARNING, logger="gdpr_audit.addon")
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(db))
        for _ in range(30):
            await addon.request(post("http://eu.mailer.test/contacts"))
        await addon.request(post("https://collect.adnetwork.test/e?u=alice.martin%40example.org"))
        addon.done()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("gdpr: ")]
    posts = [line for line in lines
             if line.startswith("gdpr: POST eu.mailer.test/contacts: clear-text")]
    if window:
        assert posts == ["gdpr: POST eu.mailer.test/contacts: clear-text "
                         "(data: email; subjects: 1)",
                         "gdpr: POST eu.mailer.test/contacts: clear-text: 29 more like it since "
                         "its last line (data: email; subjects: 1)"]
    else:
        assert posts == ["gdpr: POST eu.mailer.test/contacts: clear-text "
                         "(data: email; subjects: 1)"] * 30
    assert sum(line.startswith("gdpr: POST collect.adnetwork.test/e: ") for line in lines) == 1
    assert rows(db, "select count(*) from violations where rule = 'clear-text'")[0][0] >= 30


def test_violation_lines_skip_add_log_when_no_addon_listens() -> None:
    """The event costs 250 us a line through every addon: skipped when it reaches nobody,
    for our lines only."""
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        [legacy] = [h for h in logging.getLogger().handlers
                    if isinstance(h, LegacyLogEvents) and h.master is tctx.master]

        def record(name: str) -> logging.LogRecord:
            return logging.getLogger(name).makeRecord(
                name, logging.WARNING, __file__, 1, "gdpr: POST eu.mailer.test: clear-text",
                None, None)

        assert not legacy.filter(record("gdpr_audit.addon"))
        assert legacy.filter(record("someone.else"))
