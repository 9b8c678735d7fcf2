"""GdprAudit: the mitmproxy addon. The hooks stay thin: auditing is `Auditor.audit`, the
same call `replay` makes. Log-only (the default) hands each flow to a worker process that
audits and writes the log (offload.py), so the event loop keeps its speed; enforce needs the
verdict before forwarding, so the request's hook awaits it from a judge process, with a
deadline (judges.py), and the judge hands the audit to the worker, which only writes it. A
worker or judge that dies is started again: nothing is ever audited on the event loop.

Annotation (gdpr_annotate) in log-only mode is applied when the worker's verdict comes back,
usually 50-100 ms later: a flow still held (by mitmweb's view, a keep-alive
connection) gets marked and commented then, but a flow saved before that (save_stream_file
writes at the response) is saved unmarked. With --enforce, flows are annotated before
they move on."""

import asyncio
import difflib
import json
import logging
import sqlite3
import time
import weakref
from collections.abc import Iterable
from typing import Any

from mitmproxy import ctx, exceptions, http, optmanager
from mitmproxy.addonmanager import traverse
from mitmproxy.hooks import UpdateHook
from mitmproxy.log import LegacyLogEvents

from .audit import DEFAULT_MAX_BODY, Auditor, FlowAudit
from .documents import PolicyError
from .fields import is_html
from .judges import Judgement, JudgePool
from .offload import OffloadedAudits, Verdict
from .policy import Policy, load_policy
from .store import AuditStore, LogWriter

logger = logging.getLogger(__name__)
MARKER = ":warning:"
# Requests to this host never leave the proxy: they wait until the log holds every flow seen
# so far, so a test can read it (the pytest plugin does). `.invalid` cannot be a real host.
BARRIER_HOST = "flush.gdpr-audit.invalid"
# A kind of violation (method, host, path template, rules) gets a terminal line at most this
# often; the repeats in between are counted on a line of their own when the window closes. A
# line per flow drowned the terminal under load, and printing it cost the proxy about 75 us a
# flow (5% of its throughput).
REPEAT_SECONDS = 5.0
# Options whose change needs a new audit sink (and run): the worker holds its own copy of them.
_RESTART = {"gdpr_db", "gdpr_policy", "gdpr_subjects", "gdpr_max_body", "gdpr_enforce"}
_OPTIONS = ("gdpr_policy", "gdpr_subjects", "gdpr_db", "gdpr_enforce", "gdpr_max_body",
            "gdpr_annotate", "gdpr_enforce_timeout", "gdpr_enforce_timeout_action")
_ACTIONS = ("block", "pass")
# Without a policy nothing is audited: said at start-up, at the first flow and every this many.
NO_POLICY_EVERY = 100


_Kind = tuple[str, str, str, tuple[str, ...]]
"""method, host, path template (no query), rules."""


def _say(kind: _Kind, categories: Iterable[str], subjects: int, repeats: int = 0) -> None:
    """A violation's line, or (repeats) the count of those like it since; every part is
    allow-listed log text (redact.py): subjects are only counted."""
    method, host, path, rules = kind
    counted = f": {repeats} more like it since its last line" if repeats else ""
    logger.warning(f"gdpr: {method} {host}{path}: {', '.join(rules)}{counted} "
                   f"(data: {', '.join(sorted(categories)) or '-'}; subjects: {subjects})")


class _Window:
    """A kind of violation's current window: when its line was printed, and the repeats since
    (their count, categories and distinct subjects), flushed by a timer when it closes."""

    __slots__ = ("opened", "repeats", "categories", "subjects", "timer")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.repeats = 0
        self.categories: set[str] = set()
        self.subjects: set[str] = set()
        self.timer: asyncio.TimerHandle | None = None


class _UnheardLines(logging.Filter):
    """mitmproxy turns every log record into its deprecated `add_log` event, fired through
    every addon on the next loop iteration: 250 us a line, more than all the rest of the
    log-only addon's work on a flow, for a violation line per flow. When no addon has an
    `add_log` hook the event reaches nobody, so our lines skip it (the terminal still shows
    them: that is another handler). Looking for such an addon costs 15 us, so the answer is
    kept for a second: an addon loaded later hears our lines a second later at most."""

    def __init__(self, handler: LegacyLogEvents) -> None:
        super().__init__()
        self.handler = handler
        self._heard, self._until = True, 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != logger.name:
            return True
        if time.monotonic() >= self._until:
            self._heard = any(callable(getattr(a, "add_log", None))
                              for a in traverse(self.handler.master.addons.chain))
            self._until = time.monotonic() + 1.0
        return self._heard


class GdprAudit:
    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.auditor: Auditor | None = None
        """Built only to audit in this process (enforce, or the worker died): in log-only
        mode the worker builds its own, and the registry index is not built twice."""
        self.writer: LogWriter | None = None
        """The writer thread, only once the worker has died."""
        self.offload: OffloadedAudits | None = None
        """The worker process: it audits and writes (log-only), or writes (enforce)."""
        self.judges: JudgePool | None = None
        """Enforce: the processes that judge each request while its hook awaits them."""
        self._timeout, self._timeout_action = 5.0, "block"
        self._flows: weakref.WeakValueDictionary[str, http.HTTPFlow] = weakref.WeakValueDictionary()
        """Offloaded flows awaiting their verdict, for annotation (while they still exist)."""
        self._enforce = False
        self._annotate = True
        self._unaudited = 0
        """Flows seen without a policy."""
        self._strategy: str | None = None
        """The connection_strategy this addon set (enforce), while the user has not set it."""
        self._lines: dict[_Kind, _Window] = {}
        """Per kind of violation: its line's window."""

    def load(self, loader: Any) -> None:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, LegacyLogEvents) and not any(
                    isinstance(f, _UnheardLines) for f in handler.filters):
                handler.addFilter(_UnheardLines(handler))
        loader.add_option(
            "gdpr_policy", str | None, None,
            "The sharing policy: a YAML file, or a folder whose *.yaml files are merged. "
            "Auditing is off until it is set.")
        loader.add_option(
            "gdpr_subjects", str | None, None,
            "The subject registry (YAML, JSON or CSV). Default: the subjects inside the policy.")
        loader.add_option(
            "gdpr_db", str, "audit.db",
            "The SQLite audit log. Its fingerprint key is read from GDPR_AUDIT_KEY or <db>.key.")
        loader.add_option(
            "gdpr_enforce", bool, False,
            "Answer a violating request with HTTP 451 and a JSON explanation instead of "
            "forwarding it, and drop violating WebSocket messages.")
        loader.add_option(
            "gdpr_enforce_timeout", str, "5",
            "Enforce: seconds a request may wait for its verdict (a decimal number). Requests "
            "are judged in worker processes, so one that is slow to judge never holds other "
            "connections; past this deadline gdpr_enforce_timeout_action decides it, and the "
            "log records it as an audit error saying so.")
        loader.add_option(
            "gdpr_enforce_timeout_action", str, "block",
            "Enforce: what happens to a request not judged within gdpr_enforce_timeout (or "
            "whose judge died): block answers HTTP 451 with a JSON body saying the audit did "
            "not finish in time (a privacy gate fails closed); pass forwards it unjudged.",
            choices=_ACTIONS)
        loader.add_option(
            "gdpr_max_body", int, DEFAULT_MAX_BODY,
            "Bodies and messages are read up to this many bytes once decoded; a flow over the "
            "cap is logged as partially audited.")
        loader.add_option(
            "gdpr_annotate", bool, True,
            "Mark violating flows and add their rules to the flow's comment, so they stand out "
            "in mitmweb and in saved .flow files.")

    def configure(self, updated: set[str]) -> None:
        # read once here: an option lookup in every hook costs the event loop
        self._enforce, self._annotate = ctx.options.gdpr_enforce, ctx.options.gdpr_annotate
        self._connections(updated)
        self._deadline(updated)
        if "gdpr_policy" in updated and not ctx.options.gdpr_policy and self.policy is not None:
            self._close()  # unset: auditing is off, and says so
            self.policy, self.auditor = None, None
        if updated & {"gdpr_policy", "gdpr_subjects", "gdpr_max_body"} and ctx.options.gdpr_policy:
            if ctx.options.gdpr_max_body <= 0:
                raise exceptions.OptionsError("gdpr_max_body: must be a positive number of bytes")
            try:
                self.policy = load_policy(ctx.options.gdpr_policy, ctx.options.gdpr_subjects)
            except PolicyError as e:
                raise exceptions.OptionsError(f"gdpr_policy: {e}") from None
            self.auditor = None
        if self.policy and (updated & _RESTART or (self.writer or self.offload) is None):
            self._close()
            try:
                self._open()
            except (OSError, sqlite3.Error, ValueError, RuntimeError) as e:
                raise exceptions.OptionsError(f"gdpr_db: {e}") from None

    def _connections(self, updated: set[str]) -> None:
        """Enforce judges a request before it leaves, but mitmproxy's default (eager) connects
        to the server at CONNECT, before any request is seen: an unreachable third party
        fails the request with 502 before the rules can answer 451, and a reachable one has
        seen the client's address and the SNI already. So enforce makes connections lazy,
        unless the user set connection_strategy (and puts back what it changed when off)."""
        if "connection_strategy" not in ctx.options:  # (a harness without the proxy server)
            return
        option = ctx.options._options["connection_strategy"]
        if self._strategy is not None and option.current() != self._strategy:
            self._strategy = None  # the user changed it since: theirs now
        if not updated & {"gdpr_enforce", "connection_strategy"} or (
                option.value is not optmanager.unset and self._strategy is None):
            return
        wanted = "lazy" if self._enforce else "eager"
        if option.current() != wanted and (self._enforce or self._strategy is not None):
            self._strategy = wanted
            ctx.options.update(connection_strategy=wanted)
            why = " (enforce: a request is judged before its server is contacted)"
            logger.info(f"gdpr: connection_strategy={wanted}{why if self._enforce else ''}")

    def running(self) -> None:
        if self.policy is None:
            self._say_unaudited()
        elif misspelt := self._misspelt():
            logger.warning(f"gdpr: {misspelt}")

    def _say_unaudited(self) -> None:
        """Loud: mitmproxy keeps a misspelt option (`--set gdpr_polcy=...`) aside without a
        word, in case an addon declares it later, and the proxy would audit nothing."""
        count = self._unaudited
        so_far = f" ({count} flow{'s' if count != 1 else ''} so far)" if count else ""
        misspelt = self._misspelt()
        logger.warning(f"gdpr: no policy is set, so no flow is being audited{so_far}: set one "
                       f"with --set gdpr_policy=policies/ (a YAML file or a folder of them)"
                       f"{'; ' + misspelt if misspelt else ''}")

    @staticmethod
    def _misspelt() -> str:
        """What mitmproxy kept aside as unknown among gdpr_ options, with what was meant."""
        said = []
        for name in sorted(n for n in ctx.options.deferred if n.startswith("gdpr_")):
            close = difflib.get_close_matches(name, _OPTIONS, 1)
            said.append(f"unknown option {name}{f' (did you mean {close[0]}?)' if close else ''}")
        return "; ".join(said)

    def _deadline(self, updated: set[str]) -> None:
        if "gdpr_enforce_timeout" in updated:
            try:
                timeout = float(ctx.options.gdpr_enforce_timeout)
            except ValueError:
                timeout = 0.0
            if not 0 < timeout < 1e6:  # (nan and inf fail too)
                raise exceptions.OptionsError(
                    f"gdpr_enforce_timeout: {ctx.options.gdpr_enforce_timeout!r} is not a "
                    "positive number of seconds")
            self._timeout = timeout
            if self.judges is not None:
                self.judges.timeout = timeout
        self._timeout_action = ctx.options.gdpr_enforce_timeout_action

    def _open(self) -> None:
        """Log-only: audits go to the worker process. Enforce needs the verdict before the
        flow moves on: its hook awaits it from a judge process (judges.py), which hands
        what it found to the worker, which then only writes (in the proxy's process, on a
        thread, writes cost the loop's process 0.5 ms a flow)."""
        AuditStore(ctx.options.gdpr_db).db.close()  # a bad path or key fails here, quickly
        assert self.policy is not None
        self.auditor = None  # the worker or the judges build their own
        self.offload = OffloadedAudits(self._worker_config(), self._verdicts)
        if ctx.options.gdpr_enforce:
            self.judges = JudgePool(self._worker_config(), self._recorded, self._timeout)

    def _worker_config(self) -> dict[str, Any]:
        assert self.policy is not None
        return {"audit": not ctx.options.gdpr_enforce, "policy": ctx.options.gdpr_policy,
                "subjects": ctx.options.gdpr_subjects, "max_body": ctx.options.gdpr_max_body,
                "db": ctx.options.gdpr_db, "sources": self.policy.sources}

    def _recorded(self, state: bytes) -> None:
        """A judge's audit, for the log."""
        if self.offload is not None and not self.offload.alive:
            self._fall_back()
        if self.offload is not None:
            self.offload.recorded(state)

    def _close(self) -> None:
        if self.judges is not None:  # first: their last audits go to the worker
            self.judges.close()
            self.judges = None
        if self.offload is not None:
            self.offload.close()
            for error in self.offload.errors:
                logger.error(f"gdpr: {error}")
            self.offload = None
        self._repeats()
        if self.writer is not None:
            self.writer.close()
            for error in self.writer.errors:
                logger.error(f"gdpr: {error}")
            self.writer = None

    async def request(self, flow: http.HTTPFlow) -> None:
        # `host`, not `pretty_host` (which parses the Host header, 15 us a flow): the barrier
        # is asked through the proxy in regular mode, as an absolute URL
        if flow.request.host == BARRIER_HOST:
            await self._barrier(flow)
            return
        if self.policy is None:
            self._unaudited += 1
            if self._unaudited == 1 or self._unaudited % NO_POLICY_EVERY == 0:
                self._say_unaudited()
            return
        if self.offload is not None and self.offload.backlogged:
            await self.offload.caught_up()  # bounded memory: the worker is far behind
        if self.judges is not None:
            await self._judge(flow)
        else:
            self._audit(flow)

    async def _judge(self, flow: http.HTTPFlow) -> None:
        """Enforce: the hook awaits a judge's verdict; the event loop serves the rest."""
        assert self.judges is not None
        outcome = await self.judges.judge(flow)
        if isinstance(outcome, Judgement):
            if outcome.verdict is not None:
                self._report(outcome.verdict, flow)
            if outcome.refusal is not None:
                flow.response = http.Response.make(451, outcome.refusal,
                                                   {"content-type": "application/json"})
        elif self._undecided(flow, outcome):
            body = {"error": "blocked by gdpr-flow-audit: the audit of this request did not "
                             f"finish in time (it {outcome}), and the proxy fails closed",
                    "gdpr_enforce_timeout_action": "block"}
            flow.response = http.Response.make(451, json.dumps(body).encode(),
                                               {"content-type": "application/json"})

    def _undecided(self, flow: http.HTTPFlow, why: str) -> bool:
        """A flow no judge decided in time, logged as an audit error with the reason;
        whether to block it."""
        block = self._timeout_action == "block"
        action = "blocked" if block else "passed"
        reason = (f"the audit {why}: {action} "
                  f"(gdpr_enforce_timeout_action={self._timeout_action})")
        logger.error(f"gdpr: flow {flow.id}: {reason}")
        if self.offload is not None:
            if not self.offload.alive:
                self._fall_back()  # a dead worker's pipe drops what is handed to it
            self.offload.undecided(flow, reason)
        return block

    def response(self, flow: http.HTTPFlow) -> None:
        # A page may serve pre-ticked consent boxes: audit again with the response, which
        # replaces the request-time entry of this flow in the log.
        response = flow.response
        if response is not None and is_html(response) and flow.request.host != BARRIER_HOST:
            self._audit(flow)

    async def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or self.judges is None:
            return
        outcome = await self.judges.judge(flow, message.content)
        if isinstance(outcome, str):
            if self._timeout_action == "block":
                message.drop()
            logger.error(f"gdpr: a WebSocket message of flow {flow.id}: the audit {outcome}: "
                         f"{'dropped' if self._timeout_action == 'block' else 'passed'}")
        elif outcome.verdict is not None and outcome.verdict.rules:
            message.drop()
            logger.warning(f"gdpr: dropped a WebSocket message to {outcome.verdict.host}: "
                           f"{', '.join(outcome.verdict.rules)}")

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._audit(flow)  # the handshake and every message the client sent

    def done(self) -> None:
        self._close()

    def _audit(self, flow: http.HTTPFlow) -> FlowAudit | None:
        """Inline (enforce) returns the audit; offloaded returns None, the verdict comes later."""
        if self.offload is not None and not self.offload.alive:
            self._fall_back()
        if self.judges is not None:  # enforce, after the request: nothing waits for it
            self.judges.judge(flow).add_done_callback(
                lambda done: self._judged_later(flow, done.result()))
            return None
        if self.offload is not None and not self._enforce:
            self.offload.submit(flow)
            if self._annotate:
                self._flows[flow.id] = flow
            return None
        if self.auditor is None:
            return None
        audit = self.auditor.audit(flow)  # never raises: an error is part of the audit
        if self.offload is not None:
            self.offload.record(audit)
        elif self.writer is not None:
            self.writer.submit(audit, "proxy")
        if audit.violations or audit.error:
            self._report(Verdict.of(audit), flow)
        return audit

    def _judged_later(self, flow: http.HTTPFlow, outcome: Judgement | str) -> None:
        if isinstance(outcome, str):
            # Said, not logged: an audit-error row would replace the request's audit, which
            # the log already holds for this flow, findings and violations included.
            logger.error(f"gdpr: flow {flow.id}: the second audit (with the response) {outcome}")
        elif outcome.verdict is not None:
            self._report(outcome.verdict, flow)

    def _fall_back(self) -> None:
        """The worker died: start another, without waiting for it (what it is handed
        meanwhile waits in the pipe). Auditing in the proxy's process instead held every
        connection while a slow flow was audited."""
        assert self.offload is not None
        self.offload.close()
        logger.error("gdpr: restarting the audit worker")
        self.offload = OffloadedAudits(self._worker_config(), self._verdicts, wait=False,
                                       on_answer=self._worker_answer)

    def _worker_answer(self, kind: str, value: Any) -> None:
        if kind == "ready":
            assert self.offload is not None
            logger.warning(f"gdpr: audit worker restarted (pid {self.offload.process.pid})")
        elif kind == "failed":  # flows wait in the pipe; the next one tries again
            logger.error(f"gdpr: the audit worker did not start again: {value}")
        elif kind == "gone":
            logger.error("gdpr: the audit worker stopped; flows handed to it since its last "
                         "commit may be missing from the log")

    def _verdicts(self, verdicts: list[Verdict]) -> None:
        """The worker's verdicts, on the event loop: log them, annotate the flows still here."""
        annotated = []
        for verdict in verdicts:
            flow = self._flows.pop(verdict.flow_id, None)
            if self._report(verdict, flow):
                annotated.append(flow)
        # so that mitmweb and the console show the mark on a flow that has already gone by
        # (mitmdump has no view: the event would cost every addon a call for nothing)
        if annotated and ctx.master.addons.get("view") is not None:
            try:
                ctx.master.addons.trigger(UpdateHook(annotated))
            except Exception as e:  # a view addon's bug must not stop the verdicts
                logger.debug(f"gdpr: update hook failed: {e}")

    def _report(self, verdict: Verdict, flow: http.HTTPFlow | None) -> bool:
        if verdict.error:
            logger.error(f"gdpr: audit error on flow {verdict.flow_id}, the flow passes: "
                         f"{verdict.error}")
        if not verdict.rules:
            return False
        self._line(verdict)
        if flow is None or not self._annotate:
            return False
        flow.marked = MARKER
        note = f"GDPR: {', '.join(verdict.rules)}"
        if note not in flow.comment:
            flow.comment = f"{flow.comment}\n{note}".strip()
        flow.metadata["gdpr_audit"] = list(verdict.rules)
        return True

    def _line(self, verdict: Verdict) -> None:
        kind = (verdict.method, verdict.host, verdict.path, verdict.rules)
        now, window = time.monotonic(), self._lines.get(kind)
        if window is None or now - window.opened >= REPEAT_SECONDS:
            if window is not None:  # closed, but its timer has not run yet
                self._flush(kind)
            _say(kind, verdict.categories, len(verdict.subjects))
            self._lines[kind] = _Window(now)
            return
        window.repeats += 1
        window.categories.update(verdict.categories)
        window.subjects.update(verdict.subjects)
        if window.timer is None:
            try:  # the first repeat: its count is printed when the window closes
                window.timer = asyncio.get_running_loop().call_later(
                    window.opened + REPEAT_SECONDS - now, self._flush, kind)
            except RuntimeError:  # no event loop (a hook called outside the proxy): at done()
                pass

    def _flush(self, kind: _Kind) -> None:
        """A window has closed: print the count of its repeats, and open the next one, so a
        kind still gets one line per REPEAT_SECONDS at most."""
        window = self._lines.get(kind)
        if window is None:
            return
        if window.timer is not None:
            window.timer.cancel()
        if window.repeats:
            _say(kind, window.categories, len(window.subjects), window.repeats)
            self._lines[kind] = _Window(time.monotonic())
        else:
            del self._lines[kind]

    def _repeats(self) -> None:
        """The repeats no line has counted yet, once the verdicts are all in."""
        for kind in list(self._lines):
            self._flush(kind)
        self._lines.clear()

    async def _barrier(self, flow: http.HTTPFlow) -> None:
        sink = self.offload or self.writer
        if self.offload is not None:
            await self.offload.barrier()
        elif self.writer is not None:
            await asyncio.to_thread(self.writer.flush)
        body = {"flushed": sink is not None, "run_id": sink.run_id if sink else None}
        flow.response = http.Response.make(200, json.dumps(body),
                                           {"content-type": "application/json"})
