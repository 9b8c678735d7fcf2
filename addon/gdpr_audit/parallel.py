"""Replay on every core: flows are audited by worker processes forked from the replaying one,
so they share its policy and registry index without building them again, and come back in
the order they were read, for the log and the summary."""

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType

from mitmproxy import http

from .audit import Auditor, FlowAudit

# Flows in flight: enough that while one worker chews a 5 MB batch the others go on through
# the hundreds of small flows after it; bounded in number and bytes, so that a capture of
# millions of flows, or of big ones, never sits in memory at once.
_AHEAD = 128
_AHEAD_BYTES = 256 * 1024 * 1024
_auditor: Auditor | None = None


def default_jobs() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


class ParallelAudits:
    """Forks its workers on entry, before any other thread starts (fork copies only the
    calling thread: a lock another thread held would stay locked in the child). With one
    job, without fork, or in a process that already runs threads, flows are audited here."""

    def __init__(self, auditor: Auditor, jobs: int) -> None:
        self.auditor = auditor
        self.jobs = jobs
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "ParallelAudits":
        if (self.jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
                and threading.active_count() == 1):
            global _auditor
            _auditor = self.auditor  # what the forked workers inherit
            fork = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=fork,
                                            initializer=_die_with, initargs=(os.getpid(),))
            self.pool.submit(int).result()  # fork every worker now
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def audits(self, flows: Iterable[tuple[http.HTTPFlow, str]]) -> Iterator[tuple[FlowAudit, str]]:
        """(audit, source) for every flow, in the order read."""
        pending: deque[tuple[http.HTTPFlow, str, Future[FlowAudit] | None]] = deque()
        in_flight = 0
        for flow, source in flows:
            pending.append((flow, source, self._submit(flow)))
            in_flight += _size(flow)
            while pending and (len(pending) > self.jobs * _AHEAD or in_flight > _AHEAD_BYTES):
                in_flight -= _size(pending[0][0])
                yield self._result(*pending.popleft())
        while pending:
            yield self._result(*pending.popleft())

    def _submit(self, flow: http.HTTPFlow) -> Future[FlowAudit] | None:
        if self.pool is None:
            return None
        try:
            return self.pool.submit(_audit_state, flow.get_state())
        except RuntimeError:  # the pool broke (a worker was killed): go on without it
            self.pool = None
            return None

    def _result(self, flow: http.HTTPFlow, source: str,
                future: Future[FlowAudit] | None) -> tuple[FlowAudit, str]:
        if future is not None:
            try:
                return future.result(), source
            except Exception:  # a worker died or its answer did not travel: audit it here
                pass
        return self.auditor.audit(flow), source


def _size(flow: http.HTTPFlow) -> int:
    response = flow.response.raw_content if flow.response else None
    return len(flow.request.raw_content or b"") + len(response or b"")


def _die_with(parent: int) -> None:
    """A worker holds both ends of its task pipe (fork copied them), so it would never see
    the pipe close when the replay is killed: it watches its parent instead."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # nothing of ours to save: the replaying process writes the log

    threading.Thread(target=watch, name="gdpr-audit-orphan-watch", daemon=True).start()


def _audit_state(state: dict) -> FlowAudit:
    assert _auditor is not None
    return _auditor.audit(http.HTTPFlow.from_state(state))
