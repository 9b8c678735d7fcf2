"""Exports of the audit log. Every value comes from the log, which holds no raw identifier;
text that came from the traffic is escaped for each format (see exports/)."""

from collections.abc import Callable
from typing import TextIO

import sqlite_utils

from .exports.html import write_html
from .exports.junit import write_junit
from .exports.log import AuditLog, load, rows
from .exports.markdown import write_markdown
from .exports.records import write_csv, write_json, write_jsonl
from .exports.sarif import write_sarif

WRITERS: dict[str, Callable[[AuditLog, TextIO], None]] = {
    "json": write_json,
    "jsonl": write_jsonl,
    "csv": write_csv,
    "sarif": write_sarif,
    "junit": write_junit,
    "md": write_markdown,
    "html": write_html,
}
FORMATS = tuple(WRITERS)


def export(db: sqlite_utils.Database, fmt: str, out: TextIO) -> None:
    if fmt not in WRITERS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    WRITERS[fmt](load(db), out)


__all__ = ["FORMATS", "export", "rows"]  # rows: the other commands read the log the same way
