"""The live proxy's violation lines: one per kind of violation every 5 s, and the repeats in
between counted as soon as their window closes, not when the proxy stops.

Strategy: the addon in mitmproxy's taddons harness with its real worker process and a real
SQLite log; two violations of one kind 0.1 s apart, then quiet, while the test waits on the
event loop (the proxy keeps running) and watches the log records."""

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from conftest import make_flow
from gdpr_audit import addon as gdpr_addon
from gdpr_audit.addon import GdprAudit


def post(url: str, email: str):
    return make_flow(url, "POST", json.dumps({"email": email}),
                     {"content-type": "application/json"})


def gdpr_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[float, str]]:
    return [(r.created, r.getMessage()) for r in caplog.records
            if r.name == "gdpr_audit.addon" and r.getMessage().startswith("gdpr: ")]


async def test_a_repeat_is_counted_when_its_window_closes_not_at_shutdown(
        policy_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gdpr_audit.addon")
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"))
        await addon.request(post("http://eu.mailer.test/contacts", "alice.martin@example.org"))
        await asyncio.sleep(0.1)
        await addon.request(post("http://eu.mailer.test/contacts", "alice.martin@example.org"))
        deadline = time.monotonic() + 20  # the worker's start-up, then the 5 s window
        while time.monotonic() < deadline and len(gdpr_lines(caplog)) < 2:
            await asyncio.sleep(0.05)
        before_shutdown = gdpr_lines(caplog)
        addon.done()
    assert len(before_shutdown) == 2, before_shutdown
    (first_at, first), (count_at, count) = before_shutdown
    assert first == "gdpr: POST eu.mailer.test/contacts: clear-text (data: email; subjects: 1)"
    assert count == ("gdpr: POST eu.mailer.test/contacts: clear-text: 1 more like it since its "
                     "last line (data: email; subjects: 1)")
    assert gdpr_addon.REPEAT_SECONDS - 0.5 <= count_at - first_at <= gdpr_addon.REPEAT_SECONDS + 1
    assert gdpr_lines(caplog) == before_shutdown  # nothing left to say at shutdown
    assert "alice" not in caplog.text


async def test_repeats_over_several_windows_give_a_line_per_window(
        policy_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A steady stream of one kind: the first flow's line, then a count per closed window that
    tallies the categories and distinct subjects of its repeats."""
    monkeypatch.setattr(gdpr_addon, "REPEAT_SECONDS", 1.0)
    caplog.set_level(logging.WARNING, logger="gdpr_audit.addon")
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"))
        await addon.request(post("http://eu.mailer.test/smtp/send", "alice.martin@example.org"))
        while not gdpr_lines(caplog):  # the worker is up and the first line printed
            await asyncio.sleep(0.05)
        for email in ("alice.martin@example.org", "bob.durand@example.org") * 3:
            # transactional mail needs no consent: both people break only clear-text
            await addon.request(post("http://eu.mailer.test/smtp/send", email))
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)
        lines = [line for _, line in gdpr_lines(caplog)]
        addon.done()
    assert lines[0].endswith("clear-text (data: email; subjects: 1)")
    assert "alice" not in " ".join(lines) and "bob.durand" not in " ".join(lines)
    counts = lines[1:]
    assert counts == ["gdpr: POST eu.mailer.test/smtp/send: clear-text: 6 more like it since its "
                      "last line (data: email; subjects: 2)"], lines
