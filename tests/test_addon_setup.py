"""How the addon is set up, in mitmproxy's own harness (taddons) with a real SQLite log (issue
20, points 3 and 6): a proxy that audits nothing says so, loudly; enforce mode judges a request
before the third party is contacted (connection_strategy=lazy unless the user chose).

Strategy: configure the addon as mitmdump would, drive its hooks, read the warning lines from
caplog and the options from the master's own option manager."""

import logging
from pathlib import Path

import pytest
from mitmproxy import hooks
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from conftest import make_flow
from gdpr_audit.addon import GdprAudit

LINE = "no flow is being audited"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and LINE in r.getMessage()]


def flow(number: int):
    return make_flow(f"https://collect.adnetwork.test/e?n={number}", "POST",
                     '{"email": "alice.martin@example.org"}', {"content-type": "application/json"})


async def test_without_a_policy_it_says_so_at_start_up_and_every_hundredth_flow(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.master.addons.invoke_addon_sync(addon, hooks.RunningHook())
        assert len(warnings(caplog)) == 1  # at start-up
        assert "gdpr_policy" in warnings(caplog)[0]
        for number in range(1, 251):
            await addon.request(flow(number))
            if number == 1:
                assert len(warnings(caplog)) == 2  # the first flow
        addon.done()
    lines = warnings(caplog)
    assert len(lines) == 4  # start-up, flow 1, flow 100, flow 200
    assert "200 flows" in lines[-1]


async def test_a_misspelt_option_is_named(caplog: pytest.LogCaptureFixture) -> None:
    """`--set gdpr_polcy=policies/`: mitmproxy keeps an unknown option aside, in case an addon
    loaded later declares it, and says nothing."""
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.options.update_defer(gdpr_polcy="policies/")
        tctx.master.addons.invoke_addon_sync(addon, hooks.RunningHook())
    assert any("gdpr_polcy" in line and "did you mean gdpr_policy" in line
               for line in warnings(caplog))


async def test_with_a_policy_no_such_line(policy_file: Path, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    addon = GdprAudit()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"))
        tctx.master.addons.invoke_addon_sync(addon, hooks.RunningHook())
        await addon.request(flow(1))
        addon.done()
    assert warnings(caplog) == []


def test_enforce_makes_connections_lazy(policy_file: Path, tmp_path: Path) -> None:
    addon = GdprAudit()
    with taddons.context(Proxyserver(), addon) as tctx:
        assert tctx.options.connection_strategy == "eager"
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"),
                       gdpr_enforce=True)
        assert tctx.options.connection_strategy == "lazy"
        tctx.configure(addon, gdpr_enforce=False)  # back to what it was
        assert tctx.options.connection_strategy == "eager"
        addon.done()


def test_enforce_keeps_a_connection_strategy_the_user_chose(policy_file: Path,
                                                            tmp_path: Path) -> None:
    addon = GdprAudit()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, gdpr_policy=str(policy_file), gdpr_db=str(tmp_path / "audit.db"),
                       gdpr_enforce=True, connection_strategy="eager")
        assert tctx.options.connection_strategy == "eager"
        addon.done()
