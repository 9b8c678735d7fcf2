"""Enforce mode's judges: each request is audited in a worker process, off mitmproxy's event
loop, and its hook awaits the verdict with a deadline. Audited inline, one request that was
slow to judge (200 values of base64(gzip(1 MB)): 39-55 s before the decode budget, 2 s
after) held every other connection of the proxy for as long.

A judge takes one batch at a time: what waited for it, small requests together, a big one
alone. So a request slow to judge holds only its own judge, and the other takes the rest of
the traffic. A request not judged by its deadline (it waited for a free judge, or its judge
was still at it) is decided by gdpr_enforce_timeout_action, and its judge, if it had one, is
killed and started again, so that its CPU goes back to the traffic. A judge that dies is
started again too (after a delay if it died starting: see RESTART_DELAY); what it was
judging is decided the same way.
Judges only audit: what they found goes, already pickled, to the one log writer (offload.py).
The plumbing (pipes read and written on the loop, no thread) is offload.py's."""

import asyncio
import collections
import itertools
import json
import logging
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mitmproxy import http

from .audit import Auditor, FlowAudit, settle_collector
from .offload import OffloadedAudits, Verdict, _failed, audit_state, batches, flow_state, rebuild
from .rules import RULES

logger = logging.getLogger(__name__)
JUDGES = 2
"""Judge processes: a request slow to judge takes one, the other keeps the traffic moving.
Each holds its own registry index (its memory counts twice)."""
BATCH_BYTES = 32 * 1024
"""An idle judge is handed every request that waits, up to this many bytes (one over it goes
alone): one write, one wake-up of the judge and one answer for the batch, not for each. At 8
connections (bench/proxy_bench.py, bare mitmdump beside it: 1.01 and 1.05), the proxy's CPU
went from 1.37 to 1.16 ms a request, and all CPU (proxy, judges, writer, wrk) from 2.16 to
1.69. A batch of small requests holds its judge milliseconds (the audit's budget bounds a
flow's cost by its size); were one of them to overrun the deadline all the same, its batch
would be decided with it (gdpr_enforce_timeout_action)."""
ANSWER_EVERY = 0.001
"""Seconds of judging after which a judge answers what it has judged of its batch so far,
rather than the whole batch at its end: at 32 connections a judge would take 16 requests at
once and the proxy, with nothing left to serve, sat idle 0.08-0.09 ms a request until the
batch's end (/proc schedstat: run, wait and idle time); answering each millisecond, 0.00."""
RESTART_DELAY = (1.0, 60.0)
"""Seconds before starting again a judge that stopped before it was ready (its policy no
longer loads, say), doubling from the first to the second at each failure in a row: started
again at once, each attempt cost a core a second or two of imports, over and over. A judge
that stopped after its start is started again at once."""
COMM = "gdpr-judge"
"""The judges' process name (ps, top, /proc/PID/comm)."""


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict | None
    """None: nothing to say (no violation, no audit error)."""
    refusal: bytes | None
    """The 451 answer's JSON body, when the request breaks a rule."""


def refusal(audit: FlowAudit) -> bytes:
    """The 451 answer: rules, recipient and why, never the personal data."""
    body = {
        "error": "blocked by gdpr-flow-audit: this request would breach the sharing policy",
        "recipient": audit.destination.name if audit.destination else audit.host,
        "host": audit.host,
        "rules": [{"rule": v.rule, "severity": v.severity,
                   "categories": sorted({f.category for f in v.evidence}),
                   "why": RULES[v.rule].explanation} for v in audit.violations],
    }
    # compact: with an indent, json.dumps takes its pure-Python path, 100 us slower
    return json.dumps(body).encode()


class _Job:
    __slots__ = ("token", "item", "future", "timer", "judge", "size")

    def __init__(self, token: int, item: tuple[Any, ...],
                 future: "asyncio.Future[Judgement | str]", size: int) -> None:
        self.token, self.item, self.future, self.size = token, item, future, size
        self.timer: asyncio.TimerHandle | None = None
        self.judge: _Judge | None = None


class _Judge:
    __slots__ = ("offload", "ready", "jobs", "restarted", "up", "delay", "timer")

    def __init__(self) -> None:
        self.offload: OffloadedAudits | None = None
        self.ready, self.restarted = False, False
        self.up = False
        """Its process said "ready" (ready is False again while it is being stopped)."""
        self.delay = 0.0
        """Before the next start, after failed ones (RESTART_DELAY)."""
        self.timer: asyncio.TimerHandle | None = None
        """The next start, while it waits out its delay."""
        self.jobs: dict[int, _Job] = {}
        """The batch it is judging, by token."""


class JudgePool:
    """`judge(flow)` from the event loop: a future that ends in a `Judgement`, or in why the
    request was not judged in time (a str). `close()` ends the judges."""

    def __init__(self, config: dict[str, Any], on_record: Callable[[bytes], None],
                 timeout: float, count: int = JUDGES, start_timeout: float = 120.0) -> None:
        self.config, self.timeout, self._on_record = config, timeout, on_record
        self._queue: collections.deque[_Job] = collections.deque()
        self._tokens = itertools.count()
        self._judges = [_Judge() for _ in range(count)]
        self._closing, self._dispatching = False, False
        try:
            for judge in self._judges:  # all start at once, then the proxy waits for them
                self._start(judge)
            for judge in self._judges:
                assert judge.offload is not None
                judge.offload.started(start_timeout)
                judge.ready = True
        except BaseException:
            self.close()
            raise

    def judge(self, flow: http.HTTPFlow,
              message: bytes | None = None) -> "asyncio.Future[Judgement | str]":
        """The request (or, with `message`, that WebSocket message in its flow's context)."""
        loop = asyncio.get_running_loop()
        state = flow_state(flow)
        if message is not None:  # its context, not the whole conversation again
            state = (*state[:13], [])
            size = len(message)
        else:  # what the audit reads, roughly: the budget bounds its cost by it
            size = len(state[6]) + len(state[9] or b"") + sum(
                len(name) + len(value) for name, value in state[8])
        token = next(self._tokens)
        job = _Job(token, ("judge", token, state, message), loop.create_future(), size)
        job.timer = loop.call_later(self.timeout, self._expire, job)
        self._queue.append(job)
        if not self._dispatching:  # once the loop has read every request it has now
            self._dispatching = True
            loop.call_soon(self._dispatch)
        return job.future

    @property
    def pids(self) -> list[int]:
        return [j.offload.process.pid for j in self._judges
                if j.offload is not None and j.offload.process.pid is not None]

    def _dispatch(self) -> None:
        """What waits goes to the free judges, in batches. (Keeping the second judge as a
        spare for when a slow request holds the first, and batches bigger, measured worse:
        the two judges taking turns answer sooner.)"""
        self._dispatching = False
        for judge in self._judges:
            if not self._queue:
                return
            if not judge.ready or judge.jobs or judge.offload is None:
                continue
            size = 0
            while self._queue and (not judge.jobs or size + self._queue[0].size <= BATCH_BYTES):
                job = self._queue.popleft()
                job.judge, judge.jobs[job.token] = judge, job
                size += job.size
            judge.offload.ask([job.item for job in judge.jobs.values()])

    def _expire(self, job: _Job) -> None:
        judge = job.judge
        if judge is None:
            self._queue.remove(job)
            self._decide(job, f"waited over {self.timeout:g} s for a free judge")
            return
        for other in judge.jobs.values():  # its batch: started together, late together
            self._decide(other, f"did not finish within {self.timeout:g} s")
        judge.jobs, judge.ready = {}, False
        assert judge.offload is not None
        logger.warning(f"gdpr: a judge spent over {self.timeout:g} s on one request: "
                       f"stopping it (pid {judge.offload.process.pid}) and starting another")
        judge.offload.process.kill()  # its end of file comes to _answer as "gone"

    @staticmethod
    def _decide(job: _Job, outcome: "Judgement | str") -> None:
        if job.timer is not None:
            job.timer.cancel()
        if not job.future.done():
            job.future.set_result(outcome)

    def _start(self, judge: _Judge) -> None:
        judge.timer, judge.up = None, False
        judge.offload = OffloadedAudits(
            self.config, lambda verdicts: None, target=judge_work, wait=False,
            on_answer=lambda kind, value: self._answer(judge, kind, value))

    def _answer(self, judge: _Judge, kind: str, value: Any) -> None:
        if kind == "judged":
            for token, verdict, body, record in value:
                job = judge.jobs.pop(token, None)
                if record is not None:
                    self._on_record(record)
                if job is not None:
                    self._decide(job, Judgement(verdict, body))
            self._dispatch()
        elif kind == "ready":
            judge.ready, judge.up, judge.delay = True, True, 0.0
            if judge.restarted:
                assert judge.offload is not None
                logger.warning(f"gdpr: judge restarted (pid {judge.offload.process.pid})")
            self._dispatch()
        elif kind == "failed":
            logger.error(f"gdpr: a judge did not start: {value}")
        elif kind == "gone" and not self._closing:
            self._restart(judge)

    def _restart(self, judge: _Judge) -> None:
        assert judge.offload is not None
        old, jobs, unasked = judge.offload, judge.jobs, judge.ready
        judge.jobs, judge.ready, judge.restarted = {}, False, True
        for job in jobs.values():
            self._decide(job, "was not finished: its judge stopped")
        if unasked:  # (not the one _expire stopped)
            logger.error(f"gdpr: a judge stopped (pid {old.process.pid}, exit code "
                         f"{old.process.exitcode}): starting another")
        old.process.kill()
        old.close(timeout=0)
        if judge.up:
            self._start(judge)
            return
        judge.offload = None  # (until it starts: no pid, nothing to close)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the proxy is stopping (close() pumps off the loop)
            return
        first, most = RESTART_DELAY
        judge.delay = min(most, max(first, judge.delay * 2))
        logger.error(f"gdpr: starting a judge again in {judge.delay:g} s")
        judge.timer = loop.call_later(judge.delay, self._start, judge)

    def close(self) -> None:
        """What is being judged or waits for a judge (responses, WebSocket conversations
        that ended) gets its usual deadline to be logged; the rest is not judged."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._dispatch()
            busy = [j.offload for j in self._judges if j.jobs and j.offload]
            if not busy:
                break
            for offload in busy:
                offload.pump(0.02)
        self._closing = True
        for job in self._queue:
            self._decide(job, "was not judged: the proxy is stopping")
        self._queue.clear()
        for judge in self._judges:
            if judge.timer is not None:
                judge.timer.cancel()
            if judge.offload is None:
                continue
            if judge.jobs or not judge.ready:  # nothing of theirs to wait for
                judge.offload.process.kill()
            for job in judge.jobs.values():
                self._decide(job, "was not judged: the proxy is stopping")
            judge.jobs = {}
            judge.ready = False
            judge.offload.close(timeout=10)
            judge.offload = None


def _judged(auditor: Auditor, state: tuple[Any, ...],
            message: bytes | None) -> tuple[Verdict | None, bytes | None, bytes | None]:
    try:
        flow = rebuild(state)
        # never raises: an error is part of the audit
        audit = auditor.audit(flow) if message is None else auditor.audit_message(flow, message)
    except Exception as e:
        audit = _failed(auditor, state, e)
    verdict = Verdict.of(audit) if audit.violations or audit.error else None
    body = refusal(audit) if audit.violations else None
    # a message is logged with its conversation, at its end (websocket_end)
    record = None if message is not None else pickle.dumps(audit_state(audit),
                                                           protocol=pickle.HIGHEST_PROTOCOL)
    return verdict, body, record


def judge_work(inbox: Connection, answers: Connection, config: dict[str, Any]) -> None:
    """A judge process: audit each request handed over, answer at once; stop at "close" or
    at end of file (the proxy is gone). At normal priority: the proxy waits for it."""
    from .policy import load_policy  # here, not at the top: only the judge needs it

    try:
        Path("/proc/self/comm").write_text(COMM)
    except OSError:
        pass
    # Ctrl-C signals the whole group: the proxy closes its judges itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        auditor = Auditor(load_policy(config["policy"], config["subjects"]),
                          max_body=config["max_body"])
        auditor.warm_up()
        settle_collector()
    except Exception as e:
        answers.send(("failed", f"{type(e).__name__}: {e}"))
        return
    answers.send(("ready", 0))
    for items in batches(inbox):
        judged, since = [], time.monotonic()  # answers in one write each ANSWER_EVERY
        for item in items:
            if item[0] == "judge":
                _, token, state, message = item
                judged.append((token, *_judged(auditor, state, message)))
                if time.monotonic() - since >= ANSWER_EVERY:
                    answers.send(("judged", judged))
                    judged, since = [], time.monotonic()
            elif item[0] == "close":
                if judged:
                    answers.send(("judged", judged))
                answers.send(("closed", []))
                return
        if judged:
            answers.send(("judged", judged))
    os._exit(0)  # the proxy is gone
