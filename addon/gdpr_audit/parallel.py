"""Replay on every core: worker processes forked from the replaying one read the captures
and audit them, so they share its policy and registry index without building them again.
The replaying process only cuts the captures into chunks (a .flow file is framed by its
records' length prefixes, never parsed there) and writes what comes back, in read order."""

import gc
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType
from typing import Any, Generic, TypeVar

from .audit import Auditor, FlowAudit, settle_collector
from .captures import CaptureError, CaptureReader, Chunk, read_chunk

T = TypeVar("T")
# Chunks in flight per worker: enough that while one worker chews a 5 MB batch the others
# go on through the hundreds of small flows after it; bounded in number and bytes, so that a
# capture of millions of flows, or of big ones, never sits in memory at once.
_AHEAD = 8
_AHEAD_BYTES = 256 * 1024 * 1024
# What the forked workers inherit: the auditor, and what makes an audit into a result.
_work: tuple[Auditor, Callable[[FlowAudit, str], Any]] | None = None
_chunks = 0
"""Chunks a worker audited: every _FULL_COLLECTION_EVERY-th, all generations are collected."""
_FULL_COLLECTION_EVERY = 64


def default_jobs() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


class ParallelAudits(Generic[T]):
    """Forks its workers on entry, before any other thread starts (fork copies only the
    calling thread: a lock another thread held would stay locked in the child). With one
    job, without fork, or in a process that already runs threads, flows are audited here.

    `prepare(audit, source)` runs where the flow was audited and is what comes back: only
    what the log and the summary need, which costs less to send than the audit."""

    def __init__(self, auditor: Auditor, jobs: int, prepare: Callable[[FlowAudit, str], T]) -> None:
        self.auditor = auditor
        self.jobs = jobs
        self.prepare = prepare
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "ParallelAudits[T]":
        if (self.jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
                and threading.active_count() == 1):
            global _work
            _work = (self.auditor, self.prepare)
            self.auditor.warm_up()
            fork = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(self.jobs, mp_context=fork,
                                            initializer=_start_worker, initargs=(os.getpid(),))
            self.pool.submit(int)  # forks every worker now (and returns: no need to wait)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def audits(self, reader: CaptureReader) -> Iterator[T]:
        """prepare(audit, source) for every flow of the reader's captures, in the order
        read; the reader keeps the errors. The workers get their first chunks here, before
        the first result is asked for: what the caller does meanwhile (open the log) keeps
        no core idle."""
        chunks = reader.chunks()
        pending: deque[tuple[Chunk, Future[list[T | CaptureError]] | None]] = deque()
        in_flight = 0
        for chunk in chunks if self.pool is not None else ():
            pending.append((chunk, self._submit(chunk)))
            in_flight += chunk.end - chunk.start
            if len(pending) >= self.jobs * _AHEAD or in_flight > _AHEAD_BYTES:
                break
        return self._results(reader, chunks, pending, in_flight)

    def _results(self, reader: CaptureReader, chunks: Iterator[Chunk],
                 pending: "deque[tuple[Chunk, Future[list[T | CaptureError]] | None]]",
                 in_flight: int) -> Iterator[T]:
        for chunk in chunks:
            if self.pool is None and not pending:
                yield from reader.accept(chunk, _outcomes(chunk, self.auditor, self.prepare))
                continue
            pending.append((chunk, self._submit(chunk)))
            in_flight += chunk.end - chunk.start
            while pending and (len(pending) > self.jobs * _AHEAD or in_flight > _AHEAD_BYTES):
                in_flight -= pending[0][0].end - pending[0][0].start
                yield from reader.accept(*self._result(*pending.popleft()))
        self._biggest_first(pending)
        while pending:
            yield from reader.accept(*self._result(*pending.popleft()))

    def _biggest_first(
            self, pending: "deque[tuple[Chunk, Future[list[T | CaptureError]] | None]]") -> None:
        """The last chunks, those no worker has taken yet, handed out again biggest first:
        a big one left to the end keeps one worker busy while the others have nothing left."""
        waiting = [n for n, (_, future) in enumerate(pending)
                   if future is not None and future.cancel()]
        for n in sorted(waiting, key=lambda n: pending[n][0].start - pending[n][0].end):
            pending[n] = (pending[n][0], self._submit(pending[n][0]))

    def _submit(self, chunk: Chunk) -> "Future[list[T | CaptureError]] | None":
        if self.pool is None:
            return None
        try:
            return self.pool.submit(_audit_chunk, chunk)
        except RuntimeError:  # the pool broke (a worker was killed): go on without it
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
            return None

    def _result(self, chunk: Chunk, future: "Future[list[T | CaptureError]] | None",
                ) -> tuple[Chunk, Iterator[T | CaptureError]]:
        if future is not None:
            try:
                return chunk, iter(future.result())
            except Exception:  # a worker died or its answer did not travel: read it here
                pass
        return chunk, _outcomes(chunk, self.auditor, self.prepare)


def _outcomes(chunk: Chunk, auditor: Auditor, prepare: Callable[[FlowAudit, str], T],
              ) -> Iterator[T | CaptureError]:
    for item in read_chunk(chunk):
        if isinstance(item, CaptureError):
            yield item
        else:
            flow, source = item
            yield prepare(auditor.audit(flow), source)


def _audit_chunk(chunk: Chunk) -> list[Any]:
    assert _work is not None
    outcomes = list(_outcomes(chunk, *_work))
    global _chunks
    _chunks += 1
    # The chunk's cycles (see _start_worker), while few objects are alive; now and then
    # the oldest generation too, where what outlived a chunk (a memo's entries) ends up.
    gc.collect(2 if _chunks % _FULL_COLLECTION_EVERY == 0 else 1)
    return outcomes


def _start_worker(parent: int) -> None:
    """A worker only audits (settle_collector), and collects cycles once per chunk, not as it
    allocates: the cycles are what reading a flow leaves (mitmproxy's type checks), a chunk
    is 32 flows, or about 1 MB of them, or one bigger flow, and at its end little else is
    alive to scan. On issue 19's replay corpus, collections took 1.5-1.8% of a worker's CPU
    this way, 2.6-3.0% every 5,000 allocations. It holds both ends of its task pipe (fork
    copied them), so it would never see the pipe close when the replay is killed: it
    watches its parent instead."""
    settle_collector()
    gc.disable()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # nothing of ours to save: the replaying process writes the log

    threading.Thread(target=watch, name="gdpr-audit-orphan-watch", daemon=True).start()
