"""Auditing off the proxy's process (log-only mode): the event loop only copies what the
audit reads out of a flow and hands it to ONE worker process, which owns the `Auditor` and the
`LogWriter`. Auditing in the proxy's process costs its event loop the audit itself and, with
the writer thread, the GIL; on another core it costs the loop a few microseconds a flow.

The hand-off is a pipe. The loop batches what one of its iterations produced and writes it
without ever blocking (what the pipe cannot take yet waits in a buffer until it can), and
reads the worker's answers (verdicts, barrier acknowledgements) from another pipe when the
loop says it is readable. No thread: a reader thread cost the loop the GIL, a wake-up call
and a few more system calls for each answer. The worker reads until the pipe's end of file,
so it stops by itself when the proxy dies, even by SIGKILL: it commits what it already
received and leaves the run unfinished, as an interrupted run."""

import asyncio
import copy
import logging
import multiprocessing
import os
import pickle
import selectors
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from mitmproxy import http, websocket

from .audit import Auditor, FlowAudit, settle_collector
from .detectors import Finding
from .fields import Field, is_html
from .recipients import Destination
from .redact import Redactor
from .rules import Violation

logger = logging.getLogger(__name__)
COALESCE = 0.05
"""Seconds the loop gathers flows before one write: fewer system calls and wake-ups, on both
sides (a worker's answer each, at 1 connection), for 50 ms more before a verdict comes back.
Against 5 ms, side by side with bare mitmdump: 1.00 against 0.975 of its throughput at 1
connection, 0.97 against 0.95 at 8; the worker's CPU a flow 1.17 ms against 1.38."""
BACKLOG = 64 * 1024 * 1024
"""Bytes of flows the worker has not taken yet beyond which new requests wait for it: the
worker runs at a lower priority than the proxy (it yields the CPU when both need it), so
the log may lag under load, but memory stays bounded and nothing is dropped."""
WORKER_NICE = 19
"""The lowest priority: on a busy machine (the proxy bench: two cores for wrk, the proxy and
the worker), nice 10 still took the proxy's core from it now and then, 0.1-0.3 ms of the
proxy's CPU time a request in side-by-side runs. The log catches up when the load drops,
and at the latest when the proxy stops."""


def idle_priority(pid: int | None = None) -> None:
    """Run only on a CPU nothing else wants (Linux's SCHED_IDLE), beyond nice 19: a nice 19
    process still counts as load, so the scheduler sends other work to the proxy's CPU
    rather than to its own. An audit loop at nice 19 on the other core cut bare mitmdump to
    115 req/s (245 alone; it waited 3-5 ms a request for its CPU); at SCHED_IDLE it served
    270. That was with other programs loading the machine about 3; at 4-6, both cut it alike
    (bench/proxy_bench.py --contention measures this). What no priority removes: a worker
    busy on the other core still slows the proxy's own instructions (shared cache). Every
    thread: one a library started at import would keep nice 0 (later ones inherit)."""
    if not hasattr(os, "SCHED_IDLE"):
        if pid is None:
            os.nice(WORKER_NICE)
        return
    _every_thread(os.getpid() if pid is None else pid, os.SCHED_IDLE)


def hurry(pid: int) -> None:
    """Back from SCHED_IDLE to nice 19, while the proxy waits for the worker (the drain at
    the stop, a backlog): on a busy machine an idle-priority worker could wait minutes for a
    free CPU. Allowed to the same user without privileges (no higher than its nice value)."""
    if hasattr(os, "SCHED_IDLE"):
        _every_thread(pid, os.SCHED_OTHER)


def _every_thread(pid: int, policy: int) -> None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), WORKER_NICE)
            os.sched_setscheduler(int(task.name), policy, os.sched_param(0))
        except OSError:  # the thread ended meanwhile
            pass


@dataclass(frozen=True)
class Verdict:
    """What the proxy needs back about an audited flow (only flows with something to say)."""

    flow_id: str
    method: str
    host: str
    """Redacted like the log's host column."""
    rules: tuple[str, ...]
    error: str | None
    path: str = ""
    """The path template without its query (redact.py), like the log's path column."""
    categories: tuple[str, ...] = ()
    """Of the violations' evidence."""
    subjects: tuple[str, ...] = ()
    """Registry ids named by the violations' evidence."""

    @classmethod
    def of(cls, audit: FlowAudit) -> "Verdict":
        evidence = [f for v in audit.violations for f in v.evidence]
        return cls(audit.flow_id, audit.method, audit.host,
                   tuple(sorted({v.rule for v in audit.violations})), audit.error,
                   audit.path.partition("?")[0], tuple(sorted({f.category for f in evidence})),
                   tuple(sorted({f.subject for f in evidence if f.subject})))


def flow_state(flow: http.HTTPFlow) -> tuple[Any, ...]:
    """Everything `Auditor.audit` reads from a flow, as plain values (cheap to pickle: about
    ten times cheaper than `flow.get_state()`, which also copies connections and certificates)."""
    r = flow.request.data
    response = None
    if flow.response is not None and is_html(flow.response):
        s = flow.response.data
        response = (s.http_version, s.status_code, s.reason, s.headers.fields, s.content,
                    s.timestamp_start, s.timestamp_end)
    messages = None
    if flow.websocket is not None:
        messages = [(m.type, m.content, m.timestamp) for m in flow.websocket.messages
                    if m.from_client]
    return (flow.id, r.host, r.port, r.method, r.scheme, r.authority, r.path, r.http_version,
            r.headers.fields, r.content, r.timestamp_start, r.timestamp_end, response, messages)


_TEMPLATE = http.HTTPFlow(None, None)  # type: ignore[arg-type]  # the audit reads no connection


def rebuild(state: tuple[Any, ...]) -> http.HTTPFlow:
    """The flow again, from `flow_state`: as much of it as the audit reads."""
    (flow_id, host, port, method, scheme, authority, path, http_version, headers, content,
     start, end, response, messages) = state
    flow = copy.copy(_TEMPLATE)  # HTTPFlow() would spend a third of this on a uuid4 we replace
    flow.id, flow.metadata = flow_id, {}
    flow.request = http.Request(host, port, method, scheme, authority, path, http_version,
                                headers, content, None, start, end)
    if response is not None:
        flow.response = http.Response(response[0], response[1], response[2], response[3],
                                      response[4], None, response[5], response[6])
    if messages is not None:
        flow.websocket = websocket.WebSocketData()
        flow.websocket.messages = [websocket.WebSocketMessage(kind, True, content, at)
                                   for kind, content, at in messages]
    return flow


def audit_state(audit: FlowAudit) -> tuple[Any, ...]:
    """What the log writer reads from an audit, as plain values: the enforcing proxy audits
    inline and hands the result over to be written. Pickling the audit itself costs 70-110 us
    (its dataclasses pickle through Python code); this, a third of that. A violation's
    evidence is the findings' positions: the writer links them by identity."""
    position = {id(f): n for n, f in enumerate(audit.findings)}
    d = audit.destination
    # the UTC time zone object alone pickles through Python code, 20 us: sent as naive
    at = audit.at.replace(tzinfo=None) if audit.at.tzinfo is UTC else audit.at
    return (audit.flow_id, audit.method, audit.scheme, audit.host, audit.path, at,
            None if d is None else (d.host, d.kind, d.name, d.purposes, d.allowed,
                                    d.policy_entry, d.vendor),
            [(f.detector, f.category, f.field.location, f.field.key, f.field.value,
              f.field.layers, f.value, f.canonical, f.form, f.subject, f.count)
             for f in audit.findings],
            [(v.rule, v.severity, v.message, tuple(position[id(f)] for f in v.evidence),
              v.policy_entry) for v in audit.violations],
            audit.fields, audit.forms, audit.limits, audit.error, audit.consent)


def rebuild_audit(state: tuple[Any, ...]) -> FlowAudit:
    """The audit again, from `audit_state`, for the log writer (the destination without the
    policy's recipient object, which the writer does not read)."""
    (flow_id, method, scheme, host, path, at, destination, findings, violations, fields, forms,
     limits, error, consent) = state
    found = [Finding(detector, category, Field(location, key, field_value, layers), value,
                     canonical, form, subject, count)
             for (detector, category, location, key, field_value, layers, value, canonical, form,
                  subject, count) in findings]
    return FlowAudit(
        flow_id, method, scheme, host, path, at if at.tzinfo else at.replace(tzinfo=UTC),
        None if destination is None else Destination(*destination[:5], None, *destination[5:]),
        found, [Violation(rule, severity, message, tuple(found[n] for n in evidence), entry)
                for rule, severity, message, evidence, entry in violations],
        fields=fields, forms=forms, limits=limits, error=error, consent=consent)


def _frame(payload: bytes) -> bytes:
    """multiprocessing.Connection's framing, so the worker reads with `recv_bytes()`."""
    if len(payload) < 0x7FFFFFFF:
        return struct.pack("!i", len(payload)) + payload
    return struct.pack("!iQ", -1, len(payload)) + payload


class OffloadedAudits:
    """The proxy's side: `submit()` from the event loop, `barrier()` awaits the log, `close()`
    drains and ends the run. `on_verdicts` is called on the event loop (or in `close()`)."""

    def __init__(self, config: dict[str, Any], on_verdicts: Callable[[list[Verdict]], None],
                 start_timeout: float = 120.0, target: Callable[..., None] | None = None,
                 on_answer: Callable[[str, Any], None] | None = None, wait: bool = True) -> None:
        """`target` runs in the process (default: `work`); `on_answer` gets on the event
        loop the answers this class does not know, "gone" (the process exited unasked), and
        without `wait` "ready" or "failed" (a restart must not hold the loop while the
        process imports and loads the policy)."""
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        inbox, self._outbox = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        self.process = context.Process(target=target or work, args=(inbox, answers_out, config),
                                       name="gdpr-audit-worker", daemon=True)
        # The worker imports this package by name. mitmproxy puts a script's folder on
        # sys.path only while it loads the script, and spawn hands the child our sys.path.
        root = str(Path(__file__).resolve().parents[1])
        added = root not in sys.path
        if added:
            sys.path.insert(0, root)
        try:
            self.process.start()
        finally:
            if added:
                sys.path.remove(root)
        # only the worker holds these ends now: its death is end of file here, ours is there
        inbox.close()
        answers_out.close()
        self._fd = self._outbox.fileno()
        self._waiting = 0  # requests in caught_up()
        self._on_verdicts = on_verdicts
        self._pending: list[tuple[Any, ...]] = []
        self._buffer = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self._barriers: dict[int, asyncio.Future[None]] = {}
        self._next_barrier = 0
        self._received = bytearray()
        self._clean = False
        self.errors: list[str] = []
        self.alive = True
        self._on_answer = on_answer
        self.run_id: int = 0
        if wait:
            self.started(start_timeout)
        os.set_blocking(self._fd, False)
        self._answers_fd = self._answers.fileno()
        os.set_blocking(self._answers_fd, False)
        try:
            self._attach(asyncio.get_running_loop())
        except RuntimeError:  # no loop yet: the first hand-off on one attaches it
            pass

    def started(self, start_timeout: float) -> None:
        """Wait (blocking) for the process's "ready"; raises RuntimeError if it failed."""
        started = self._answers.poll(start_timeout)
        kind, value = self._answers.recv() if started else ("failed", "timeout")
        if kind != "ready":
            self.process.join(5)
            raise RuntimeError(f"the audit worker did not start: {value}")
        self.run_id = value

    # --- the event loop's side ---
    def submit(self, flow: http.HTTPFlow) -> None:
        self._put(("audit", flow_state(flow)))

    def record(self, audit: FlowAudit) -> None:
        """An audit made in the proxy (enforce), for the worker to write."""
        self._put(("record", audit_state(audit)))

    def recorded(self, state: bytes) -> None:
        """An audit made by a judge (judges.py), pickled `audit_state`, for the worker to write."""
        self._put(("recorded", state))

    def undecided(self, flow: http.HTTPFlow, reason: str) -> None:
        """A flow no audit decided (out of time, its judge died): logged as an audit error."""
        state = flow_state(flow)
        self._put(("undecided", (*state[:9], b"", *state[10:12], None, None), reason))

    def pump(self, timeout: float) -> None:
        """Off the event loop (at the stop): send what is pending, handle what answers come
        within `timeout` seconds."""
        self._send()
        if self.alive and self._answers.poll(timeout):
            self._receive()

    def ask(self, items: list[tuple[Any, ...]]) -> None:
        """Hand `items` over now, in one write (a judge waits for them)."""
        self._pending += items
        self._running_loop()
        self._send()

    async def barrier(self) -> None:
        """Returns once the log holds everything submitted before."""
        if not self.alive:
            return
        token, self._next_barrier = self._next_barrier, self._next_barrier + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._barriers[token] = future
        self._put(("barrier", token), now=True)
        await future

    @property
    def backlogged(self) -> bool:
        """Handed-over flows the worker has not taken yet exceed `BACKLOG` bytes."""
        return len(self._buffer) > BACKLOG

    async def caught_up(self) -> None:
        """Wait until the backlog is back under `BACKLOG` (or the worker is gone). The
        worker is raised while any request waits, and idle again when the last one stops."""
        self._waiting += 1
        try:
            if self._waiting == 1:
                hurry(self.process.pid)
            while self.backlogged and self.alive:
                await asyncio.sleep(0.05)
        except OSError:  # gone (no /proc entry): the end of file tells the rest
            pass
        finally:
            self._waiting -= 1
            if self._waiting == 0 and self.alive:
                try:
                    idle_priority(self.process.pid)
                except OSError:
                    pass

    def _put(self, item: tuple[Any, ...], now: bool = False) -> None:
        self._pending.append(item)
        loop = self._running_loop()
        if loop is None:  # no loop (hooks called directly, the stop): write now
            self._send()
            return
        if now:
            loop.call_soon(self._send)
        elif len(self._pending) == 1:  # one write per COALESCE seconds, however many flows
            loop.call_later(COALESCE, self._send)

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop this runs on, whose reader reads the answers; None off a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if loop is not self._loop:
            self._attach(loop)
        return loop

    def _send(self) -> None:
        items, self._pending = self._pending, []
        if not items or not self.alive:
            return
        self._buffer += _frame(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
        self._write()

    def _write(self) -> None:
        try:
            written = os.write(self._fd, self._buffer)
        except BlockingIOError:
            written = 0
        except OSError:  # the worker is gone: reading its answers finds the end of file
            written = len(self._buffer)
        del self._buffer[:written]
        # a full pipe (the worker is behind): finish when the loop says it is writable
        if self._buffer and not self._writing and self._loop is not None:
            self._loop.add_writer(self._fd, self._write)
            self._writing = True
        elif not self._buffer and self._writing and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read the answers on this loop (from now on; a test may run several loops)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._answers_fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
                self._writing = False
        self._loop = loop
        if self.alive:
            loop.add_reader(self._answers_fd, self._receive)

    # --- the answers, read on the loop ---
    def _receive(self) -> bool:
        """Handle every complete answer the pipe holds; False once the worker is gone."""
        open_ = True
        while open_:
            try:
                chunk = os.read(self._answers_fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            open_ = bool(chunk)
            self._received += chunk
        while len(self._received) >= 4:
            (size,) = struct.unpack_from("!i", self._received)
            start = 4
            if size == -1:  # Connection's framing of a message over 2 GiB
                if len(self._received) < 12:
                    break
                (size,), start = struct.unpack_from("!Q", self._received, 4), 12
            if len(self._received) < start + size:
                break
            answer = pickle.loads(self._received[start:start + size])
            del self._received[:start + size]
            self._answer(*answer)
        if not open_:  # after the answers read with it: "closed" comes just before the end
            self._gone()
        return open_

    def _answer(self, kind: str, value: Any) -> None:
        if kind == "verdicts":
            self._on_verdicts(value)
        elif kind == "flushed":
            _resolve(self._barriers.pop(value))
        elif kind == "closed":
            self.errors += value
            self._clean = True
        elif self._on_answer is not None:
            if kind == "ready":
                self.run_id = value
            self._on_answer(kind, value)
        elif kind == "ready":
            self.run_id = value

    def _gone(self) -> None:
        """End of file: the worker has exited, after "closed" or not."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._answers_fd)
        unasked = self.alive and not self._clean
        if unasked and self._on_answer is None:
            logger.error("gdpr: the audit worker stopped; flows handed to it since its last "
                         "commit may be missing from the log")
        self.alive = False
        for waiting in self._barriers.values():  # nobody is left to answer them
            _resolve(waiting)
        self._barriers.clear()
        if unasked and self._on_answer is not None:
            self._on_answer("gone", None)

    def close(self, timeout: float = 600.0) -> None:
        """Hand over what is pending, let the worker commit it and end the run."""
        if self.alive:
            try:
                hurry(self.process.pid)
            except OSError:  # gone already (no /proc entry): the end of file tells the rest
                pass
            self._pending.append(("close",))
            items, self._pending = self._pending, []
            self._buffer += _frame(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
            if self._loop is not None and not self._loop.is_closed():
                if self._writing:
                    self._loop.remove_writer(self._fd)
                self._loop.remove_reader(self._answers_fd)
            self._writing = False
            # Write the rest while reading the answers: a worker blocked on a full answers
            # pipe reads nothing more. It answers "closed" once the log holds everything,
            # then exits (end of file).
            deadline = time.monotonic() + timeout
            with selectors.DefaultSelector() as selector:
                selector.register(self._answers_fd, selectors.EVENT_READ)
                selector.register(self._fd, selectors.EVENT_WRITE)
                writing = True
                while self._receive() and time.monotonic() < deadline:
                    if self._buffer:
                        try:
                            del self._buffer[:os.write(self._fd, self._buffer)]
                        except BlockingIOError:
                            pass
                        except OSError:  # the worker is gone: its end of file comes next
                            self._buffer.clear()
                    if writing and not self._buffer:
                        selector.unregister(self._fd)
                        writing = False
                    selector.select(max(0.0, deadline - time.monotonic()))
            if self.alive:
                self._gone()
        self._outbox.close()
        self._answers.close()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done() and not future.get_loop().is_closed():
        future.set_result(None)


def _failed(auditor: Auditor, state: tuple[Any, ...], error: Exception) -> FlowAudit:
    """A flow the worker could not even rebuild: logged as an audit error, never dropped."""
    return _unaudited(auditor.redactor, state, f"{type(error).__name__} in the audit worker")


def _unaudited(redactor: Redactor, state: tuple[Any, ...], error: str,
               method: str = "OTHER", scheme: str = "*") -> FlowAudit:
    try:
        path = redactor.path(state[6].decode("utf-8", "replace"))
        host, at = redactor.host(str(state[1])), datetime.fromtimestamp(state[10], UTC)
    except Exception:
        path, host, at = "*", "*", datetime.now(UTC)
    return FlowAudit(str(state[0]), method, scheme, host, path, at, error=error)


def _undecided(redactor: Redactor, state: tuple[Any, ...], reason: str) -> FlowAudit:
    """`OffloadedAudits.undecided`'s flow, as an audit error with its reason."""
    try:
        method = redactor.method(state[3].decode("ascii", "replace"))
        scheme = state[4].decode("ascii", "replace")
    except Exception:
        method, scheme = "OTHER", "*"
    return _unaudited(redactor, state, reason, method, scheme)


def batches(inbox: Connection) -> Iterator[list[Any]]:
    """What the proxy hands a worker process, batch by batch, until it is gone: end of file
    on the inbox, or its sentinel, in case another process inherited the inbox's other end."""
    parent = multiprocessing.parent_process()
    watched = [inbox, parent.sentinel] if parent is not None else [inbox]
    while True:
        try:
            if inbox not in wait(watched):
                return
            yield pickle.loads(inbox.recv_bytes())
        except (EOFError, OSError):
            return


def work(inbox: Connection, answers: Connection, config: dict[str, Any]) -> None:
    """The worker process: audit (or take the proxy's audits, in enforce mode), write in
    batches, answer barriers; stop at "close" or at end of file (the proxy is gone)."""
    from .policy import load_policy  # here, not at the top: only the worker needs them
    from .store import LogWriter

    idle_priority()  # the proxy's traffic first; the log catches up when the CPU is free
    # Ctrl-C in a terminal, or systemd stopping the unit, signals the whole group: the proxy
    # then closes the worker itself, once everything is written. The worker must not die first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    auditor, redactor = None, None
    try:
        if config["audit"]:
            policy = load_policy(config["policy"], config["subjects"])
            auditor = Auditor(policy, max_body=config["max_body"])
            sources = policy.sources
        else:  # enforce: the proxy audits, and only needs the log written
            sources = config["sources"]
        writer = LogWriter(config["db"], "proxy", sources)
        settle_collector()
    except Exception as e:
        answers.send(("failed", f"{type(e).__name__}: {e}"))
        return
    answers.send(("ready", writer.run_id))
    # The proxy gone: keep what it handed over, leave the run unfinished (it was
    # interrupted), and exit.
    for items in batches(inbox):
        verdicts = []
        for item in items:
            if item[0] == "record":
                writer.submit(rebuild_audit(item[1]), "proxy")
            elif item[0] == "recorded":
                writer.submit(rebuild_audit(pickle.loads(item[1])), "proxy")
            elif item[0] == "undecided":
                if redactor is None:  # enforce: only the first such flow builds it
                    redactor = (auditor.redactor if auditor is not None else Redactor.for_policy(
                        load_policy(config["policy"], config["subjects"])))
                writer.submit(_undecided(redactor, item[1], item[2]), "proxy")
            elif item[0] == "audit":
                assert auditor is not None
                try:
                    audit = auditor.audit(rebuild(item[1]))  # never raises: errors are audits
                except Exception as e:
                    audit = _failed(auditor, item[1], e)
                writer.submit(audit, "proxy")
                if audit.violations or audit.error:
                    verdicts.append(Verdict.of(audit))
            elif item[0] == "barrier":
                writer.flush()
                if verdicts:
                    answers.send(("verdicts", verdicts))
                    verdicts = []
                answers.send(("flushed", item[1]))
            elif item[0] == "close":
                if verdicts:
                    answers.send(("verdicts", verdicts))
                writer.close()
                answers.send(("closed", writer.errors))
                return
        if verdicts:
            answers.send(("verdicts", verdicts))
    writer.flush()
    os._exit(0)
