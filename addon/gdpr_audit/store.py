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
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    try:
        return bytes.fromhex(key_file.read_text().strip())
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key.hex())
        return key


class AuditStore:
    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:" and not Path(path).exists():
            Path(path).touch(mode=0o600)
        self.db = sqlite_utils.Database(path)
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA busy_timeout = 10000")  # another writer (a replay, a proxy)
        if path != ":memory:":
            self.db.execute("PRAGMA journal_mode = WAL")
        self.key = load_key(path)
        self._migrate()

    def _migrate(self) -> None:
        db = self.db
        with db.conn:
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            check = hmac.new(self.key, b"gdpr-flow-audit key check", hashlib.sha256).hexdigest()[:16]
            stored = db.execute("select value from meta where key = 'key_check'").fetchone()
            if stored is None:
                db.table("meta").insert_all([{"key": "key_check", "value": check},
                                             {"key": "schema_version", "value": str(SCHEMA_VERSION)}])
            elif stored[0] != check:
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
            }, pk="id", foreign_keys=[("flow_id", "flows")], if_not_exists=True)
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
            for table, columns in (("findings", ["flow_id"]), ("violations", ["flow_id"]),
                                   ("violations", ["run_id"]), ("violations", ["rule"]),
                                   ("findings", ["fingerprint"]), ("flows", ["run_id"])):
                db.table(table).create_index(columns, if_not_exists=True)

    def fingerprint(self, category: str, canonical: str) -> str:
        message = f"{category}:{canonical}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]

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
        """Write audited flows in one transaction. Auditing a flow again (same mitmproxy
        flow id) replaces what the log held for it, so a replay never duplicates flows.

        Plain SQL here: sqlite-utils' table writes commit on their own, which would split
        the transaction and let a killed process leave a flow without its violations."""
        with self.db.conn as conn:
            for audit, source in audits:
                self._record_one(conn, run_id, audit, source)

    def _record_one(self, conn: sqlite3.Connection, run_id: int, audit: FlowAudit,
                    source: str) -> None:
        conn.execute("delete from violation_findings where violation_id in "
                     "(select id from violations where flow_id = ?)", [audit.flow_id])
        conn.execute("delete from violations where flow_id = ?", [audit.flow_id])
        conn.execute("delete from findings where flow_id = ?", [audit.flow_id])
        conn.execute("delete from flows where id = ?", [audit.flow_id])
        destination = audit.destination
        _insert(conn, "flows", {
            "id": audit.flow_id, "run_id": run_id, "source": source, "method": audit.method,
            "scheme": audit.scheme, "host": audit.host, "path": audit.path,
            "timestamp": audit.at.isoformat(), "recipient": destination.name if destination else None,
            "recipient_kind": destination.kind if destination else None,
            "purposes": ", ".join(destination.purposes) if destination else None,
            "status": audit.status, "limits": "; ".join(audit.limits) or None,
            "error": audit.error, "violations": len(audit.violations),
            "consent": json.dumps(audit.consent, separators=(",", ":")) if audit.consent else None,
        })
        finding_ids = {id(f): _insert(conn, "findings", self._finding_row(audit, f))
                       for f in audit.findings}
        for violation in audit.violations:
            first = violation.evidence[0] if violation.evidence else None
            violation_id = _insert(conn, "violations", {
                "run_id": run_id, "flow_id": audit.flow_id, "rule": violation.rule,
                "severity": violation.severity, "host": audit.host,
                "recipient": destination.name if destination else None,
                "category": first.category if first else None,
                "categories": ", ".join(sorted({f.category for f in violation.evidence})),
                "subject": first.subject if first else None,
                "subjects": ", ".join(sorted({f.subject for f in violation.evidence if f.subject})),
                "location": first.field.location if first else None,
                "field": audit.fields.get(id(first)) if first else None,
                "evidence": mask(first.category, first.value) if first else None,
                "message": violation.message, "policy_entry": violation.policy_entry,
                "fingerprint": violation_fingerprint(violation.rule, audit, violation.evidence),
                "timestamp": audit.at.isoformat(),
            })
            conn.executemany(
                "insert or ignore into violation_findings (violation_id, finding_id) values (?, ?)",
                [(violation_id, finding_ids[id(f)]) for f in violation.evidence])

    def _finding_row(self, audit: FlowAudit, finding: Finding) -> dict[str, Any]:
        layers = " -> ".join(finding.field.layers)
        return {
            "flow_id": audit.flow_id, "detector": finding.detector, "category": finding.category,
            "subject": finding.subject, "location": finding.field.location,
            "field": audit.fields.get(id(finding), ""),
            "form": f"{layers} -> {finding.form}" if layers else finding.form,
            "evidence": mask(finding.category, finding.value),
            "fingerprint": self.fingerprint(finding.category, finding.canonical),
        }


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cursor = conn.execute(f"insert into {table} ({columns}) values ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


def violation_fingerprint(rule: str, audit: FlowAudit, evidence: Iterable[Finding]) -> str:
    """Stable across runs and machines (no key, no time, no flow id) so that baselines match:
    the rule, the recipient, the request's shape, and what kind of data it carried."""
    shape = re.sub(r"\d+", "N", audit.path.split("?")[0])
    parts = [rule, audit.destination.name if audit.destination else audit.host, audit.method,
             shape, *sorted({f"{f.category}:{f.field.location}" for f in evidence})]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_existing(path: str) -> sqlite_utils.Database:
    """A log for reading; a clear error rather than an empty new database on a typo."""
    if path != ":memory:" and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no audit log here (run `gdpr-audit replay` first)")
    try:
        db = sqlite_utils.Database(path)
        db.execute("select 1 from runs limit 1")
    except sqlite3.DatabaseError as e:
        raise ValueError(f"{path}: not an audit log ({e})") from e
    return db


class LogWriter:
    """Writes audits from a thread of its own, in batches, so that the proxy's event loop
    never waits for SQLite. `flush()` waits until everything submitted is committed;
    `close()` also ends the run."""

    _STOP = object()

    def __init__(self, path: str, command: str, policy_sources: Iterable[str],
                 batch_size: int = 200) -> None:
        AuditStore(path).db.close()  # a bad path or key fails here, at start-up, in the caller
        self.path = path
        self.batch_size = batch_size
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
        self.queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self.queue.put(self._STOP)
            self._thread.join()

    def _work(self, command: str, policy_sources: tuple[str, ...]) -> None:
        store = AuditStore(self.path)
        self.run_id = store.start_run(command, policy_sources)
        self._ready.set()
        stopping = False
        while not stopping:
            batch = [self.queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is self._STOP for item in batch)
            audits = [item for item in batch if item is not self._STOP]
            try:
                store.record(self.run_id, audits)
            except sqlite3.Error as e:  # keep serving; the error is reported at the end
                self.errors.append(f"{len(audits)} flow(s) not written: {e}")
            for _ in batch:
                self.queue.task_done()
        store.finish_run(self.run_id, self.errors)
        store.db.close()
