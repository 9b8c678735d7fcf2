"""The audit log as the exports read it: plain rows, in id order, plus the rules' metadata."""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from ..rules import RULES
from ..sanitize import safe_str

VIOLATIONS = """
select v.id, v.run_id, v.flow_id, v.rule, v.severity, v.host, v.recipient, v.category,
       v.categories, v.subject, v.subjects, v.location, v.field, v.evidence, v.message,
       v.policy_entry, v.fingerprint, v.timestamp, f.method, f.scheme, f.path, f.source
from violations v join flows f on f.id = v.flow_id {where} order by v.id"""
FINDINGS = """
select x.id, f.run_id, x.flow_id, f.host, f.recipient, x.detector, x.category, x.subject,
       x.location, x.field, x.form, x.evidence, x.fingerprint, x.count, f.timestamp
from findings x join flows f on f.id = x.flow_id {where} order by x.id"""
FLOWS = "select * from flows {where} order by timestamp, source, id"
RUNS = "select * from runs {where} order by id"


def rows(db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


@dataclass(frozen=True)
class AuditLog:
    runs: list[dict[str, Any]]
    flows: list[dict[str, Any]]
    violations: list[dict[str, Any]]
    findings: list[dict[str, Any]]

    def violations_by_flow(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for violation in self.violations:
            grouped.setdefault(violation["flow_id"], []).append(violation)
        return grouped


def load(db: sqlite_utils.Database, run_id: int | None = None) -> AuditLog:
    """The whole log, or one run of it (read as that run, not filtered after reading all)."""
    if run_id is None:
        return AuditLog(*(rows(db, sql.format(where="")) for sql in (RUNS, FLOWS, VIOLATIONS,
                                                                       FINDINGS)))
    return AuditLog(*(rows(db, sql.format(where=where), (run_id,)) for sql, where in (
        (RUNS, "where id = ?"), (FLOWS, "where run_id = ?"), (VIOLATIONS, "where v.run_id = ?"),
        (FINDINGS, "where f.run_id = ?"))))


@dataclass(frozen=True)
class RuleInfo:
    id: str
    name: str
    severity: str
    explanation: str


def rule_info(rule_id: str) -> RuleInfo:
    """A rule of this version, or a bare entry for a rule that an older log still names."""
    rule = RULES.get(rule_id)
    if rule is None:
        return RuleInfo(rule_id, rule_id, "medium", f"{rule_id}: a rule this version does not have")
    return RuleInfo(rule.id, type(rule).__name__, rule.severity, rule.explanation)


def plain(value: object) -> str:
    """Text from the traffic with every non-printable character (ESC, newlines, bidi
    overrides) spelled as a visible escape, at full length; None becomes ''."""
    return safe_str(value, limit=sys.maxsize)


def recipient_of(row: dict[str, Any]) -> str:
    return row["recipient"] or row["host"] or "?"


def request_of(row: dict[str, Any]) -> str:
    return f"{row['method']} {row['host']} {row['path']}"


def capture_of(source: str | None) -> tuple[str, int | None] | None:
    """`captures/backend.flow#3` -> (`captures/backend.flow`, 3); None for live traffic."""
    if not source or "#" not in source:
        return None
    path, _, index = source.rpartition("#")
    return path, int(index) if index.isdigit() else None


def capture_name(source: str | None) -> str:
    capture = capture_of(source)
    if capture is None:
        return source or ""
    return f"{Path(capture[0]).name}#{capture[1]}"
