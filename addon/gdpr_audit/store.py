"""The audit log: SQLite through sqlite-utils (SPEC 3.8).

Raw personal data never reaches this module's tables: evidence is masked, and a keyed
fingerprint (HMAC-SHA256 with a key kept outside the database) links equal values across
flows. The key lives in `GDPR_AUDIT_KEY` or in `<db>.key`, readable by its owner only;
a plain hash would let anyone holding the log confirm a guessed email.
"""

import hashlib
import hmac
import json
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils

from .audit import FlowAudit
from .detectors import Finding

SCHEMA_VERSION = 1
_KEY_ENV = "GDPR_AUDIT_KEY"


def mask(category: str, value: str) -> str:
    """A preview that shows the shape of a value, never the value (`m****@e******.fr`)."""
    value = value.strip()
    if category == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        host, _, tld = domain.rpartition(".")
        return f"{_stars(local)}@{_stars(host)}.{tld[:3]}" if host else f"{_stars(local)}@{_stars(domain)}"
    return _stars(value)


def _stars(text: str) -> str:
    if len(text) <= 2:
        return "*" * len(text) or "*"
    first = text[0] if text[0].isascii() and text[0].isprintable() else "?"
    return first + "*" * min(len(text) - 1, 11)


def load_key(db_path: str) -> bytes:
    if os.environ.get(_KEY_ENV):
        return os.environ[_KEY_ENV].encode()
    if db_path == ":memory:":
        return secrets.token_bytes(32)
    key_file = Path(f"{db_path}.key")
    for _ in range(50):
        try:
            text = key_file.read_text().strip()
            if text:
                return bytes.fromhex(text)
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process is creating it: read theirs
                continue
            with os.fdopen(fd, "w") as out:
                out.write(key.hex())
            return key
        time.sleep(0.1)  # created but not yet written by the other process
    raise ValueError(f"{key_file}: the fingerprint key file is empty")


def _while_locked(work: Callable[[], Any], attempts: int = 30) -> Any:
    """Run `work`, again while SQLite says another writer holds the database: busy_timeout
    does not cover every case (WAL switch, a transaction that began before the other's)."""
    for attempt in range(attempts):
        try:
            return work()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
    return None


def refuse_link(path: str) -> None:
    """Writing a log through a symbolic link would overwrite what it points to."""
    if os.path.islink(path):
        raise ValueError(f"{path}: is a symbolic link: refusing to write a log through it "
                         "(give the real path)")


def log_key(path: str) -> bytes:
    """The fingerprint key of the log at `path`, which is created empty if there is none.
    A replay's workers fingerprint with it before the log is opened (AuditStore(path, key))."""
    if path != ":memory:":
        refuse_link(path)
        if Path(path).exists() and Path(path).stat().st_size and not has_key(path):
            # a new key would match nothing in the log: stop before writing anything
            raise ValueError(f"{path}: this log's fingerprint key is missing: restore "
                             f"{path}.key or set {_KEY_ENV}")
        if not Path(path).exists():
            Path(path).touch(mode=0o600)
    # the key before the first write: a log with content always has its key, so the
    # check above does not fail a second writer that finds the log just begun
    return load_key(path)


class AuditStore:
    def __init__(self, path: str, key: bytes | None = None) -> None:
        self.path = path
        self.key = log_key(path) if key is None else key
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA busy_timeout = 10000")  # another writer (a replay, a proxy)
        self.db.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            _while_locked(lambda: self.db.execute("PRAGMA journal_mode = WAL"))
        _while_locked(self._migrate)

    def _migrate(self) -> None:
        db = self.db
        with db.conn:
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            check = hmac.new(self.key, b"gdpr-flow-audit key check", hashlib.sha256).hexdigest()[:16]
            # insert first (a write takes the lock), then read: two new writers agree on one key
            db.execute("insert or ignore into meta (key, value) values ('key_check', ?), "
                       "('schema_version', ?)", [check, str(SCHEMA_VERSION)])
            stored = db.execute("select value from meta where key = 'key_check'").fetchone()
            if stored[0] != check:
                raise ValueError(f"{self.path}: this log was written with another fingerprint key "
                                 f"(set {_KEY_ENV} or restore {self.path}.key)")
            db.table("runs").create({
                "id": int, "started": str, "finished": str, "command": str, "policy": str,
                "flows": int, "violations": int, "errors": int, "input_errors": str,
            }, pk="id", if_not_exists=True)
            db.table("flows").create({
                "id": str, "run_id": int, "source": str, "method": str, "scheme": str,
                "host": str, "path": str, "timestamp": str, "recipient": str,
                "recipient_kind": str, "purposes": str, "status": str, "limits": str,
                "error": str, "violations": int, "consent": str,
            }, pk="id", foreign_keys=[("run_id", "runs")], if_not_exists=True)
            if "consent" not in db.table("flows").columns_dict:  # logs from before it existed
                db.table("flows").add_column("consent", str)
            db.table("findings").create({
                "id": int, "flow_id": str, "detector": str, "category": str, "subject": str,
                "location": str, "field": str, "form": str, "evidence": str, "fingerprint": str,
                "count": int,
            }, pk="id", foreign_keys=[("flow_id", "flows")], if_not_exists=True)
            if "count" not in db.table("findings").columns_dict:  # logs from before it existed
                db.table("findings").add_column("count", int)
            db.table("violations").create({
                "id": int, "run_id": int, "flow_id": str, "rule": str, "severity": str,
                "host": str, "recipient": str, "category": str, "categories": str,
                "subject": str, "subjects": str, "location": str, "field": str,
                "evidence": str, "message": str, "policy_entry": str, "fingerprint": str,
                "timestamp": str,
            }, pk="id", foreign_keys=[("run_id", "runs"), ("flow_id", "flows")],
                if_not_exists=True)
            db.table("violation_findings").create(
                {"violation_id": int, "finding_id": int}, pk=("violation_id", "finding_id"),
                foreign_keys=[("violation_id", "violations"), ("finding_id", "findings")],
                if_not_exists=True)
            # every foreign key's column too: deleting a parent looks its children up
            for table, columns in (("findings", ["flow_id"]), ("violations", ["flow_id"]),
                                   ("violations", ["run_id"]), ("violations", ["rule"]),
                                   ("findings", ["fingerprint"]), ("flows", ["run_id"]),
                                   ("violation_findings", ["finding_id"])):
                db.table(table).create_index(columns, if_not_exists=True)
            # A run killed before it finished counted nothing: count what it committed.
            # (A run still going is counted again when it finishes.)
            db.execute(_RECOUNT + " where finished is null")

    def fingerprint(self, category: str, canonical: str) -> str:
        return fingerprint(self.key, category, canonical)

    def close(self) -> bool:
        """Leave the whole log in the database file (see `checkpoint`), then close it.
        Returns whether the file holds it all."""
        whole = checkpoint(self.db)
        self.db.close()
        return whole

    def start_run(self, command: str, policy_sources: Iterable[str]) -> int:
        with self.db.conn:
            table = self.db.table("runs")
            table.insert({"started": _now(), "command": command,
                          "policy": ", ".join(policy_sources), "flows": 0, "violations": 0,
                          "errors": 0})
            return int(table.last_pk)

    def finish_run(self, run_id: int, input_errors: list[str]) -> None:
        with self.db.conn:
            self.db.execute(
                """update runs set finished = ?, input_errors = ?,
                   flows = (select count(*) from flows where run_id = runs.id),
                   violations = (select count(*) from violations where run_id = runs.id),
                   errors = (select count(*) from flows where run_id = runs.id and status = 'error')
                   where id = ?""", [_now(), json.dumps(input_errors), run_id])

    def record(self, run_id: int, audits: Iterable[tuple[FlowAudit, str]]) -> None:
        """Write audited flows in one transaction (see record_rows)."""
        self.record_rows(run_id, [flow_rows(self.key, audit, source) for audit, source in audits])

    def record_rows(self, run_id: int, flows: Iterable["FlowRows"]) -> None:
        """Write flows prepared by flow_rows in one transaction. Auditing a flow again (same
        mitmproxy flow id) replaces what the log held for it, so a replay never duplicates flows.

        Plain SQL here: sqlite-utils' table writes commit on their own, which would split
        the transaction and let a killed process leave a flow without its violations."""
        flows = list(flows)

        def write() -> None:
            with self.db.conn as conn:
                # take the write lock up front: a read that later turns into a write cannot
                # wait for another writer and fails at once with "database is locked"
                conn.execute("BEGIN IMMEDIATE")
                segment: list[FlowRows] = []
                ids: set[str] = set()
                for rows in flows:
                    if rows.flow_id in ids:  # the same flow twice: the later replaces it
                        _write_rows(conn, run_id, segment)
                        segment, ids = [], set()
                    segment.append(rows)
                    ids.add(rows.flow_id)
                _write_rows(conn, run_id, segment)

        _while_locked(write)


class FlowRows(NamedTuple):
    """One audited flow as the log stores it: rows without their ids, made wherever the flow
    was audited (a worker process), so that writing them costs the writer little. Masked and
    fingerprinted already: no raw value in here."""

    flow_id: str
    flow: tuple[Any, ...]
    """The flows row, from `source` on (`id` and `run_id` are added when written)."""
    findings: list[tuple[Any, ...]]
    """findings rows, from `detector` on."""
    violations: list[tuple[tuple[Any, ...], list[int]]]
    """violations rows, from `rule` on, each with the indexes in `findings` of its evidence."""


_FLOW_COLUMNS = ("source", "method", "scheme", "host", "path", "timestamp", "recipient",
                 "recipient_kind", "purposes", "status", "limits", "error", "violations", "consent")
_FINDING_COLUMNS = ("detector", "category", "subject", "location", "field", "form", "evidence",
                    "fingerprint", "count")
_VIOLATION_COLUMNS = ("rule", "severity", "host", "recipient", "category", "categories",
                      "subject", "subjects", "location", "field", "evidence", "message",
                      "policy_entry", "fingerprint", "timestamp")


def _insert_sql(table: str, columns: tuple[str, ...], first: tuple[str, ...]) -> str:
    names = (*first, *columns)
    return f"insert into {table} ({', '.join(names)}) values ({', '.join('?' * len(names))})"


_INSERT_FLOW = _insert_sql("flows", _FLOW_COLUMNS, ("id", "run_id"))
_INSERT_FINDING = _insert_sql("findings", _FINDING_COLUMNS, ("id", "flow_id"))
_INSERT_VIOLATION = _insert_sql("violations", _VIOLATION_COLUMNS, ("id", "run_id", "flow_id"))


def flow_rows(key: bytes, audit: FlowAudit, source: str) -> FlowRows:
    destination = audit.destination
    recipient = destination.name if destination else None
    at = audit.at.isoformat()
    flow = (source, audit.method, audit.scheme, audit.host, audit.path, at, recipient,
            destination.kind if destination else None,
            ", ".join(destination.purposes) if destination else None,
            audit.status, "; ".join(audit.limits) or None, audit.error, len(audit.violations),
            json.dumps(audit.consent, separators=(",", ":")) if audit.consent else None)
    findings = []
    position = {}
    for index, (finding, field, form) in enumerate(
            zip(audit.findings, audit.fields, audit.forms, strict=True)):
        findings.append((
            finding.detector, finding.category, finding.subject, finding.field.location, field,
            form,
            mask(finding.category, finding.value),
            fingerprint(key, finding.category, finding.canonical), finding.count))
        position[id(finding)] = index
    violations = []
    for violation in audit.violations:
        first = violation.evidence[0] if violation.evidence else None
        violations.append(((
            violation.rule, violation.severity, audit.host, recipient,
            first.category if first else None,
            ", ".join(sorted({f.category for f in violation.evidence})),
            first.subject if first else None,
            ", ".join(sorted({f.subject for f in violation.evidence if f.subject})),
            first.field.location if first else None,
            audit.field_of(first) if first else None,
            mask(first.category, first.value) if first else None,
            violation.message, violation.policy_entry,
            violation_fingerprint(violation.rule, audit, violation.evidence), at,
        ), [position[id(f)] for f in violation.evidence]))
    return FlowRows(audit.flow_id, flow, findings, violations)


def _write_rows(conn: sqlite3.Connection, run_id: int, flows: list[FlowRows]) -> None:
    """Insert flows whose ids are distinct, replacing what the log held for them. Row ids
    are given here (the next after the largest, as SQLite would), so that every table is
    written with one executemany."""
    if not flows:
        return
    ids = json.dumps([rows.flow_id for rows in flows])
    held = conn.execute("select id from flows where id in (select value from json_each(?))",
                        [ids]).fetchall()
    if held and len(flows) > 1:  # replacing flows (a capture replayed again): one by one,
        for rows in flows:        # which gives every row the id it always had
            _write_rows(conn, run_id, [rows])
        return
    if held:
        conn.executemany("delete from violation_findings where violation_id in "
                         "(select id from violations where flow_id = ?)", held)
        conn.executemany("delete from violations where flow_id = ?", held)
        conn.executemany("delete from findings where flow_id = ?", held)
        conn.executemany("delete from flows where id = ?", held)
    finding_id = conn.execute("select coalesce(max(id), 0) from findings").fetchone()[0]
    violation_id = conn.execute("select coalesce(max(id), 0) from violations").fetchone()[0]
    findings, violations, links = [], [], []
    for rows in flows:
        first_finding = finding_id + 1
        for row in rows.findings:
            finding_id += 1
            findings.append((finding_id, rows.flow_id, *row))
        for row, evidence in rows.violations:
            violation_id += 1
            violations.append((violation_id, run_id, rows.flow_id, *row))
            links += dict.fromkeys((violation_id, first_finding + index) for index in evidence)
    conn.executemany(_INSERT_FLOW, [(rows.flow_id, run_id, *rows.flow) for rows in flows])
    conn.executemany(_INSERT_FINDING, findings)
    conn.executemany(_INSERT_VIOLATION, violations)
    conn.executemany("insert into violation_findings (violation_id, finding_id) values (?, ?)",
                     links)


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = conn.execute(f"insert into {table} ({columns}) values ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


@lru_cache(maxsize=4096)  # the same people come back in flow after flow: 5 us each
def fingerprint(key: bytes, category: str, canonical: str) -> str:
    message = f"{category}:{canonical}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def violation_fingerprint(rule: str, audit: FlowAudit, evidence: Iterable[Finding]) -> str:
    """Stable across runs and machines (no key, no time, no flow id) so that baselines match:
    the rule, the recipient, the request's shape, and what kind of data it carried where.

    Where is the location and the allow-listed field key (the `field` column) with array
    indexes as `[*]`: another person's email in the same place is known, the same email under
    a new query key or in a new category is new (issue 20). A path segment's index is its
    place, so it stays."""
    shape = re.sub(r"\d+", "N", audit.path.split("?")[0])
    keys = {id(finding): key for finding, key in zip(audit.findings, audit.fields, strict=False)}
    places = {f"{f.category}:{f.field.location}:{_key_shape(f.field.location, keys.get(id(f), ''))}"
              for f in evidence}
    parts = [rule, audit.destination.name if audit.destination else audit.host, audit.method,
             shape, *sorted(places)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _key_shape(location: str, key: str) -> str:
    """`to[3].email` -> `to[*].email`: which element of a list is not a new place."""
    return key if location == "path" else re.sub(r"\[\d+\]", "[*]", key)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_TABLES = ("runs", "flows", "findings", "violations", "violation_findings", "meta")
_QUERY_SECONDS_ENV = "GDPR_AUDIT_QUERY_SECONDS"
_timed_out: list[float] = []
"""Budgets that stopped a query in this process (query_timeout words the error)."""


def open_existing(path: str) -> sqlite_utils.Database:
    """A log for reading; a clear error rather than an empty new database on a typo, and
    rather than a hang on a crafted file: its schema is its author's code (a `flows` view
    over an endless recursive query, a generated column that costs what they want)."""
    if path != ":memory:" and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no audit log here (run `gdpr-audit replay` first)")
    try:
        db = sqlite_utils.Database(path)
        db.execute("PRAGMA trusted_schema = OFF")  # no function with side effects in it
        limit_queries(db.conn)
        marks = ", ".join("?" * len(_TABLES))
        schema = {name: (kind, sql or "") for name, kind, sql in db.execute(
            f"select name, type, sql from sqlite_master where name in ({marks})", _TABLES)}
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not an audit log ({e})") from e
    for name in _TABLES:
        kind, sql = schema.get(name, (None, ""))
        if kind is None:
            raise ValueError(f"{path}: not an audit log (it has no `{name}` table)")
        if kind != "table" or sql.upper().startswith("CREATE VIRTUAL"):
            kind = "virtual table" if kind == "table" else kind
            raise ValueError(f"{path}: not an audit log (`{name}` is a {kind}, not a table)")
    return db


def limit_queries(conn: sqlite3.Connection) -> None:
    """Stop any statement that runs longer than GDPR_AUDIT_QUERY_SECONDS (default 60). The
    clock restarts with each statement, so a long review of a big log is not cut short."""
    text = os.environ.get(_QUERY_SECONDS_ENV) or "60"
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"{_QUERY_SECONDS_ENV}={text!r}: not a number of seconds") from None
    deadline = time.monotonic() + seconds

    def started(_sql: str) -> None:
        nonlocal deadline
        deadline = time.monotonic() + seconds

    def over() -> bool:
        if time.monotonic() < deadline:
            return False
        _timed_out.append(seconds)
        return True  # SQLite stops the statement: OperationalError("interrupted")

    conn.set_trace_callback(started)  # called as each statement starts running
    # every 1,000 virtual machine steps (a few microseconds): a step can be slow itself
    conn.set_progress_handler(over, 1000)


def lift_query_limit(conn: sqlite3.Connection) -> None:
    """Erasing runs to its end: a deletion or VACUUM stopped midway is rolled back, and the
    person's data stays."""
    conn.set_trace_callback(None)
    conn.set_progress_handler(None, 0)


def query_timeout(error: BaseException) -> str | None:
    """The message for a statement stopped by limit_queries; None for any other error."""
    if isinstance(error, sqlite3.OperationalError) and str(error) == "interrupted" and _timed_out:
        return f"query took longer than {_timed_out[-1]:g} s: is this a real audit log?"
    return None


class LogWriter:
    """Writes audits from a thread of its own, in batches, so that the proxy's event loop
    never waits for SQLite. `flush()` waits until everything submitted is committed;
    `close()` also ends the run.

    A batch gathers what arrives within `gather` seconds of its first audit: at a few hundred
    requests a second, committing each flow alone cost a third of a millisecond of CPU a flow
    (the transaction and the WAL's fsync), as much as half its audit. Commits also skip the
    fsync (synchronous=NORMAL: in WAL mode a killed process still loses nothing committed,
    only a power cut can lose the last commits). Both cut what the writer costs the proxy
    on the other core (the kernel's I/O work is not at the worker's idle priority): log-only
    mitmdump served 0.95 of bare mitmdump's requests instead of 0.89 in side-by-side runs,
    gathering for 0.2 s rather than 0.02 s."""

    _STOP = object()
    _FLUSH = object()

    def __init__(self, path: str, command: str, policy_sources: Iterable[str],
                 batch_size: int = 500, gather: float = 0.25) -> None:
        AuditStore(path).db.close()  # a bad path or key fails here, at start-up, in the caller
        self.path = path
        self.batch_size = batch_size
        self.gather = gather
        self.queue: queue.Queue[Any] = queue.Queue()
        self.errors: list[str] = []
        self._ready = threading.Event()
        self.run_id = 0
        self._thread = threading.Thread(target=self._work, args=(command, tuple(policy_sources)),
                                        name="gdpr-audit-writer", daemon=True)
        self._thread.start()
        self._ready.wait()

    def submit(self, audit: FlowAudit, source: str) -> None:
        self.queue.put((audit, source))

    def flush(self) -> None:
        if self._thread.is_alive():  # (after close(), nothing would take the marker)
            self.queue.put(self._FLUSH)  # committed at once, not at the end of the gathering
        self.queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self.queue.put(self._STOP)
            self._thread.join()

    def _work(self, command: str, policy_sources: tuple[str, ...]) -> None:
        store = AuditStore(self.path)
        store.db.execute("PRAGMA synchronous = NORMAL")
        self.run_id = store.start_run(command, policy_sources)
        self._ready.set()
        stopping = False
        while not stopping:
            batch = [self.queue.get()]
            until = time.monotonic() + self.gather
            while len(batch) < self.batch_size and batch[-1] not in (self._STOP, self._FLUSH):
                try:
                    batch.append(self.queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            stopping = batch[-1] is self._STOP
            audits = [item for item in batch if item not in (self._STOP, self._FLUSH)]
            try:
                if audits:
                    store.record(self.run_id, audits)
            except sqlite3.Error as e:  # keep serving; the error is reported at the end
                self.errors.append(f"{len(audits)} flow(s) not written: {e}")
            for _ in batch:
                self.queue.task_done()
        store.finish_run(self.run_id, self.errors)
        store.close()  # the proxy's log in one file when it stops


# --- Maintenance of the log: erasure, retention, merging (SPEC 3.1 forget, purge, merge) ---
# Each works in one transaction and leaves no dangling row (`pragma foreign_key_check`).

_RECOUNT = """update runs set
    flows = (select count(*) from flows where run_id = runs.id),
    violations = (select count(*) from violations where run_id = runs.id),
    errors = (select count(*) from flows where run_id = runs.id and status = 'error')"""


def recount(conn: sqlite3.Connection) -> None:
    """Keep the counts that runs and flows carry equal to the rows that are left."""
    conn.execute("update flows set violations = "
                 "(select count(*) from violations where flow_id = flows.id)")
    conn.execute(_RECOUNT)


def _ids_table(conn: sqlite3.Connection, name: str, values: Iterable[Any]) -> None:
    conn.execute(f"create temp table if not exists {name} (value primary key)")
    conn.execute(f"delete from {name}")
    conn.executemany(f"insert or ignore into {name} values (?)", [(v,) for v in values])


def forget(store: AuditStore, fingerprints: Iterable[str],
           subjects: Iterable[str]) -> dict[str, Any]:
    """Erase one person from the log: their findings, and every violation whose evidence was
    only theirs. A violation that also rests on someone else's data stays, rewritten from the
    evidence that is left. Returns what was removed (no identifier in it)."""
    subjects = sorted(set(subjects))
    _erasing(store.db)
    with store.db.conn as conn:
        _ids_table(conn, "forget_fingerprints", fingerprints)
        _ids_table(conn, "forget_subjects", subjects)
        conn.execute("""create temp table if not exists forget_findings as
                        select id as value from findings where 0""")
        conn.execute("delete from forget_findings")
        conn.execute("""insert into forget_findings select id from findings
                        where fingerprint in (select value from forget_fingerprints)
                           or subject in (select value from forget_subjects)""")
        findings = conn.execute(
            """select f.recipient, x.category, count(*) from findings x
               join flows f on f.id = x.flow_id where x.id in (select value from forget_findings)
               group by 1, 2 order by 1, 2""").fetchall()
        touched = [r[0] for r in conn.execute(
            """select distinct violation_id from violation_findings
               where finding_id in (select value from forget_findings)""")]
        conn.execute("delete from violation_findings "
                     "where finding_id in (select value from forget_findings)")
        _ids_table(conn, "forget_violations", touched)
        removed = conn.execute(
            """select id, rule, recipient from violations
               where id in (select value from forget_violations)
                 and id not in (select violation_id from violation_findings)
               order by id""").fetchall()
        conn.executemany("delete from violations where id = ?", [(r[0],) for r in removed])
        kept = sorted(set(touched) - {r[0] for r in removed})
        # and any other violation whose words name them (a message lists every subject)
        named = {r[0] for r in conn.execute(
            """select v.id from violations v join forget_subjects s on v.subject = s.value
               or instr(v.subjects, s.value) or instr(v.message, s.value)""")}
        for violation_id in sorted(set(kept) | named):
            _rewrite_from_evidence(conn, violation_id, subjects)
        conn.execute("delete from findings where id in (select value from forget_findings)")
        recount(conn)
    return {"findings": findings, "violations": removed, "rewritten": kept}


def _rewrite_from_evidence(conn: sqlite3.Connection, violation_id: int,
                           erased: list[str]) -> None:
    """A violation's summary columns describe its first finding, its categories and subjects
    all of its evidence: describe what is left, in words that no longer name the erased."""
    left = conn.execute(
        """select x.category, x.subject, x.location, x.field, x.evidence from findings x
           join violation_findings vf on vf.finding_id = x.id
           where vf.violation_id = ? order by x.id""", [violation_id]).fetchall()
    message, was = conn.execute("select message, categories from violations where id = ?",
                                [violation_id]).fetchone()
    if not left:  # a rule that needs no evidence: only its words can name them
        conn.execute("update violations set message = ? where id = ?",
                     [_reworded(message or "", erased, "", ""), violation_id])
        return
    first = left[0]
    categories = ", ".join(sorted({row[0] for row in left}))
    conn.execute(
        """update violations set category = ?, subject = ?, location = ?, field = ?,
           evidence = ?, categories = ?, subjects = ?, message = ? where id = ?""",
        [first[0], first[1], first[2], first[3], first[4], categories,
         ", ".join(sorted({row[1] for row in left if row[1]})),
         _reworded(message or "", erased, was or "", categories), violation_id])


def _reworded(message: str, erased: list[str], was: str, categories: str) -> str:
    """`message` without the erased people: a clause about one of them goes ("cust-003 never
    consented to newsletter; ..." says what she had not consented to), they leave lists
    ("data of cust-005, cust-006 sent ..."), and the categories it lists are those left."""
    if erased:
        names = "|".join(re.escape(s) for s in erased)
        about = re.compile(rf"(?<![\w-])(?:{names})(?![\w-])")
        clauses = message.split("; ")
        message = "; ".join([c for c in clauses if not about.search(c)] or clauses)
        message = re.sub(rf"(?<![\w-])(?:{names}), |, (?:{names})(?![\w-])", "", message)
        message = about.sub("an erased subject", message)
    if was and was != categories:  # rules list the evidence's categories as the column does
        message = re.sub(rf"(?<![\w-]){re.escape(was)}(?![\w-])", categories, message, count=1)
    return message


def purge(db: sqlite_utils.Database, cutoff: datetime) -> dict[str, int]:
    """Retention: drop flows (with their findings and violations) that happened before
    `cutoff`, and runs started before it that no longer hold anything. Needs no key."""
    when = cutoff.astimezone(UTC).isoformat()
    db.execute("PRAGMA foreign_keys = ON")
    _erasing(db)
    with db.conn as conn:
        conn.execute("create temp table if not exists purge_flows (value primary key)")
        conn.execute("delete from purge_flows")
        conn.execute("insert into purge_flows select id from flows "
                     "where julianday(timestamp) < julianday(?)", [when])
        counts = {
            "flows": conn.execute("select count(*) from purge_flows").fetchone()[0],
            "findings": conn.execute("select count(*) from findings where flow_id in "
                                     "(select value from purge_flows)").fetchone()[0],
            "violations": conn.execute("select count(*) from violations where flow_id in "
                                       "(select value from purge_flows)").fetchone()[0],
        }
        conn.execute("""delete from violation_findings
                        where violation_id in (select id from violations
                                               where flow_id in (select value from purge_flows))
                           or finding_id in (select id from findings
                                             where flow_id in (select value from purge_flows))""")
        conn.execute("delete from violations where flow_id in (select value from purge_flows)")
        conn.execute("delete from findings where flow_id in (select value from purge_flows)")
        conn.execute("delete from flows where id in (select value from purge_flows)")
        counts["runs"] = conn.execute(
            """delete from runs where julianday(started) < julianday(?)
               and id not in (select run_id from flows)
               and id not in (select run_id from violations)""", [when]).rowcount
        recount(conn)
    return counts


def key_check(path: str) -> str:
    """The log's fingerprint-key check value, read without the key."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no audit log here")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            row = conn.execute("select value from meta where key = 'key_check'").fetchone()
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not an audit log ({e})") from e
    if row is None:
        raise ValueError(f"{path}: not an audit log (no key check in its meta table)")
    return str(row[0])


def merge(out_path: str, in_paths: list[str]) -> dict[str, int]:
    """Combine the logs of sharded jobs into `out_path`. Runs get new ids, flows are upserted
    by their (mitmproxy) id, findings and violations are copied under new ids.

    All logs must share one fingerprint key, or the same person would not link across them."""
    if any(Path(p).resolve() == Path(out_path).resolve() for p in in_paths):
        raise ValueError(f"{out_path}: the merged log cannot also be one of the inputs")
    checks = {path: key_check(path) for path in in_paths}
    if Path(out_path).exists():
        checks[out_path] = key_check(out_path)
    if len(set(checks.values())) > 1:
        groups: dict[str, list[str]] = {}
        for path, check in checks.items():
            groups.setdefault(check, []).append(path)
        described = "; ".join(", ".join(paths) for paths in groups.values())
        raise ValueError(f"these logs were written with different fingerprint keys and cannot "
                         f"be merged: {described} (give every shard the same {_KEY_ENV})")
    source_key = Path(f"{in_paths[0]}.key")
    if Path(out_path).exists() and not has_key(out_path):
        raise ValueError(f"{out_path}: its fingerprint key is missing (restore {out_path}.key "
                         f"or set {_KEY_ENV})")
    if not Path(out_path).exists() and not os.environ.get(_KEY_ENV):
        if not source_key.exists():
            raise ValueError(f"{in_paths[0]}: its fingerprint key is not beside it "
                             f"({source_key}); set {_KEY_ENV} to the key the shards used")
        fd = os.open(f"{out_path}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(source_key.read_text())
    store = AuditStore(out_path)
    totals = {"runs": 0, "flows": 0, "findings": 0, "violations": 0}
    try:
        for path in in_paths:
            for name, count in _merge_one(store, path).items():
                totals[name] += count
    finally:
        store.close()
    return totals


def _merge_one(store: AuditStore, path: str) -> dict[str, int]:
    conn = store.db.conn
    conn.execute("attach database ? as shard", [path])
    try:
        with conn:
            columns = {table: _common_columns(conn, table)
                       for table in ("runs", "flows", "findings", "violations")}
            runs = _copy(conn, "runs", columns["runs"], {})
            for (flow_id,) in conn.execute("select id from shard.flows").fetchall():
                conn.execute("delete from violation_findings where violation_id in "
                             "(select id from violations where flow_id = ?)", [flow_id])
                conn.execute("delete from violations where flow_id = ?", [flow_id])
                conn.execute("delete from findings where flow_id = ?", [flow_id])
                conn.execute("delete from flows where id = ?", [flow_id])
            _copy(conn, "flows", columns["flows"], {"run_id": runs}, keep_id=True)
            findings = _copy(conn, "findings", columns["findings"], {})
            violations = _copy(conn, "violations", columns["violations"], {"run_id": runs})
            links = conn.execute("select violation_id, finding_id from shard.violation_findings")
            conn.executemany("insert or ignore into violation_findings values (?, ?)",
                             [(violations[v], findings[f]) for v, f in links.fetchall()])
            recount(conn)
        flows = conn.execute("select count(*) from shard.flows").fetchone()[0]
        return {"runs": len(runs), "flows": flows, "findings": len(findings),
                "violations": len(violations)}
    finally:
        conn.execute("detach database shard")


def _common_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Columns both logs have: a shard written by an older or newer version still merges."""
    ours = [row[1] for row in conn.execute(f"pragma main.table_info({table})")]
    theirs = {row[1] for row in conn.execute(f"pragma shard.table_info({table})")}
    return [c for c in ours if c in theirs]


def _copy(conn: sqlite3.Connection, table: str, columns: list[str],
          remap: dict[str, dict[Any, int]], keep_id: bool = False) -> dict[Any, int]:
    """Copy a shard's table row by row; returns its old id -> new id."""
    copied = [c for c in columns if keep_id or c != "id"]
    new_ids: dict[Any, int] = {}
    for row in conn.execute(f"select {', '.join(columns)} from shard.{table}").fetchall():
        values = dict(zip(columns, row, strict=True))
        for column, mapping in remap.items():
            values[column] = mapping[values[column]]
        new_ids[values["id"]] = _insert(conn, table, {c: values[c] for c in copied})
    return new_ids


def _erasing(db: sqlite_utils.Database) -> None:
    """Set before deleting what must leave the disk. Deletes zero what they free: the pages
    of the deleting transaction sit in the WAL until a checkpoint, and VACUUM may not run.
    Temp tables (which list the person's fingerprints) stay in memory, not in a temp file."""
    db.execute("pragma secure_delete = on")
    db.execute("pragma temp_store = memory")


class Residue(NamedTuple):
    """What of deleted rows a checkpoint could not take off the disk."""

    pending: int
    """Pages of the WAL not copied into the database file (-1: unknown)."""
    frames: int
    """Pages the WAL holds (-1: unknown)."""
    wal_bytes: int
    problem: str
    """SQLite's error when VACUUM itself could not run, else empty."""

    def describe(self, path: str) -> str:
        if self.problem or self.pending < 0:
            why = f"VACUUM could not run ({self.problem})" if self.problem else \
                "the checkpoint could not run"
            where = f"{path} and {path}-wal still hold them: {why}"
        elif self.pending:
            where = (f"the old pages of {path} still hold them: {self.pending} of the "
                     f"{self.frames} pages in {path}-wal ({self.wal_bytes} bytes) could not be "
                     f"copied into it yet")
        else:
            where = (f"{path}-wal ({self.frames} pages, {self.wal_bytes} bytes) could not be "
                     f"emptied and may still hold them")
        return (f"{where}, because another connection has the log open (a report, Datasette, "
                f"a proxy)")


def compact(db: sqlite_utils.Database, wait: float = 10.0) -> Residue | None:
    """Deleted rows stay in the file's pages and in the WAL until overwritten: rewrite the file
    (VACUUM), copy the WAL into it and cut the WAL to nothing (checkpoint TRUNCATE). Another
    connection reading an older snapshot needs the old pages, so SQLite keeps them: wait up to
    `wait` seconds for it. Returns None once the disk holds only what the tables hold, else
    what is left."""
    path = db.execute("pragma database_list").fetchone()[2]
    deadline = time.monotonic() + wait
    vacuumed = False
    while True:
        # SQLite's busy handler does the waiting: for another writer, then for readers
        db.execute(f"pragma busy_timeout = {int(max(0.0, deadline - time.monotonic()) * 1000)}")
        try:
            if not vacuumed:
                db.execute("vacuum")
                vacuumed = True
            busy, frames, copied = db.execute("pragma wal_checkpoint(truncate)").fetchone()
            problem = ""
        except sqlite3.OperationalError as e:  # "database is locked" (a writer held on)
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            busy, frames, copied, problem = 1, -1, -1, str(e)
        # (0, -1, -1): not in WAL mode, VACUUM rewrote the file itself
        if not busy and frames == copied:
            return None
        if time.monotonic() >= deadline:
            wal = Path(f"{path}-wal")
            return Residue(frames - copied if frames >= 0 else -1, frames,
                           wal.stat().st_size if wal.exists() else 0, problem)
        time.sleep(0.1)


def checkpoint(db: sqlite_utils.Database, wait: float = 2.0) -> bool:
    """Copy the WAL into the database file and cut the WAL to nothing, so that the file alone
    is the whole log: a CI job that keeps only `audit.db`, or a user who copies it, would
    otherwise get a header whose pages sit in `audit.db-wal` (SQLite checkpoints by itself
    only when the last connection closes, which a process that exits may never do).

    Another connection reading an older snapshot (a report, Datasette, a proxy) holds the
    pages it reads: SQLite waits up to `wait` seconds for it, then leaves them in the WAL,
    where they are safe and from which the next checkpoint copies them. Returns whether the
    file now holds everything; never raises for a busy or locked log."""
    db.execute(f"pragma busy_timeout = {int(wait * 1000)}")
    try:
        busy, frames, copied = db.execute("pragma wal_checkpoint(truncate)").fetchone()
    except sqlite3.OperationalError as e:  # "database is locked": a writer held on
        if "locked" not in str(e) and "busy" not in str(e):
            raise
        return False
    # (0, -1, -1) when not in WAL mode (`:memory:`): the file is all there is
    return not busy and frames == copied


def has_key(path: str) -> bool:
    """Whether the key of an existing log is at hand (opening it without would make a new one)."""
    return bool(os.environ.get(_KEY_ENV)) or Path(f"{path}.key").exists()
