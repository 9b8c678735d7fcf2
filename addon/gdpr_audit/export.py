"""Exports of the audit log. Every value comes from the log, which holds no raw identifier."""

import json
from typing import Any, TextIO

import sqlite_utils

FORMATS = ("json",)

_VIOLATIONS = """
select v.id, v.run_id, v.flow_id, v.rule, v.severity, v.host, v.recipient, v.category,
       v.categories, v.subject, v.subjects, v.location, v.field, v.evidence, v.message,
       v.policy_entry, v.fingerprint, v.timestamp, f.method, f.scheme, f.path, f.source
from violations v join flows f on f.id = v.flow_id order by v.id"""
_FINDINGS = """
select x.id, f.run_id, x.flow_id, f.host, f.recipient, x.detector, x.category, x.subject,
       x.location, x.field, x.form, x.evidence, x.fingerprint
from findings x join flows f on f.id = x.flow_id order by x.id"""


def rows(db: sqlite_utils.Database, sql: str) -> list[dict[str, Any]]:
    cursor = db.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def export_json(db: sqlite_utils.Database, out: TextIO) -> None:
    document = {
        "runs": rows(db, "select * from runs order by id"),
        "violations": rows(db, _VIOLATIONS),
        "findings": rows(db, _FINDINGS),
    }
    json.dump(document, out, indent=2, ensure_ascii=False)
    out.write("\n")


def export(db: sqlite_utils.Database, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        export_json(db, out)
    else:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
