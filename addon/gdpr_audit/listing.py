"""A run's violations, one by one: on the terminal after `replay`, and under GitHub Actions
as workflow annotations and a Markdown job summary.

Every value printed is a log column, so it went through the allow-list (redact.py): rule,
severity, recipient, method, host, path template, categories, subject ids (only counted here)
and the rule's message. Text from the traffic is still untrusted: it reaches the terminal
through `safe_text`, and a workflow command through `plain` and GitHub's own escapes."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import sqlite_utils
from rich.console import Console

from .exports.log import load, plain
from .exports.markdown import write_markdown
from .sanitize import safe_text

SHOWN = 20
"""Violations listed on the terminal; the rest are counted."""
ANNOTATED = 50
"""Workflow annotations at most: GitHub keeps 50 a job (10 errors and 10 warnings a step)."""
_ORDER = "case v.severity when 'high' then 0 when 'medium' then 1 else 2 end, v.id"
_SELECT = f"""
select v.id, v.rule, v.severity, coalesce(v.recipient, v.host, '?'), f.method, f.host, f.path,
       v.categories, v.subjects, v.message, v.fingerprint
from violations v join flows f on f.id = v.flow_id where v.run_id = ? order by {_ORDER}"""


class Listed(NamedTuple):
    id: int
    rule: str
    severity: str
    recipient: str
    method: str
    host: str
    path: str
    categories: str | None
    subjects: str | None
    message: str | None
    fingerprint: str

    @property
    def request(self) -> str:
        return f"{self.method} {self.host}{self.path}"

    @property
    def subject_count(self) -> int:
        return len(self.subjects.split(", ")) if self.subjects else 0


def run_violations(db: sqlite_utils.Database, run_id: int) -> Iterator[Listed]:
    """The run's violations, most severe first (a cursor: a long run is not held in memory)."""
    for row in db.execute(_SELECT, [run_id]):
        yield Listed(*row)


def print_violations(console: Console, db: sqlite_utils.Database, run_id: int, db_path: str,
                     known: frozenset[str] = frozenset()) -> None:
    """The first SHOWN violations, two lines each, then how many more and where to see them."""
    total = db.execute("select count(*) from violations where run_id = ?", [run_id]).fetchone()[0]
    if not total:
        return
    shown = min(total, SHOWN)
    console.print(safe_text(f"Violations: the first {shown} of {total}, most severe first",
                            1000, "bold"), soft_wrap=True)
    for number, v in enumerate(run_violations(db, run_id)):
        if number == SHOWN:
            break
        baseline = " (in the baseline)" if v.fingerprint in known else ""
        console.print(safe_text(f"  #{v.id} [{v.severity}] {v.rule} to {v.recipient}: "
                                f"{v.request}{baseline}", 1000,
                                "red" if v.severity == "high" else "yellow"), soft_wrap=True)
        console.print(safe_text(f"      data: {v.categories or '-'}; subjects: "
                                f"{v.subject_count}; why: {v.message or '-'}", 1000),
                      soft_wrap=True)
    if total > SHOWN:
        console.print(safe_text(f"  ... and {total - SHOWN} more: gdpr-audit violations "
                                f"--db {db_path} --run {run_id}", 1000), soft_wrap=True)


def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def workflow_data(text: object) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (`escapeData`), after
    every control character is spelled out."""
    return plain(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: object) -> str:
    """A workflow command's property value (`escapeProperty`): also `:` and `,`."""
    return workflow_data(text).replace(":", "%3A").replace(",", "%2C")


def annotate(console: Console, db: sqlite_utils.Database, run_id: int,
             known: frozenset[str] = frozenset()) -> None:
    """An `::error` (high) or `::warning` per violation not in the baseline: GitHub shows them
    on the run's page (it keeps the first few per step; the summary has every one)."""
    out, annotated, more = console.file, 0, 0
    for v in run_violations(db, run_id):
        if v.fingerprint in known:
            continue
        if annotated == ANNOTATED:
            more += 1
            continue
        annotated += 1
        level = "error" if v.severity == "high" else "warning"
        out.write(f"::{level} title={workflow_property(v.rule)}::"
                  f"{workflow_data(f'{v.recipient}: {v.request}: {v.message or v.rule}')}\n")
    if more:
        out.write(f"::notice title=gdpr-audit::{more} more violations, not annotated: the job "
                  "summary lists them\n")
    out.flush()


def step_summary(db: sqlite_utils.Database, run_id: int, path: str) -> None:
    """Append the run's Markdown report (the `md` export) to $GITHUB_STEP_SUMMARY."""
    with Path(path).open("a", encoding="utf-8") as out:
        write_markdown(load(db, run_id), out)
        out.write("\n")


def tell(console: Console, db: sqlite_utils.Database, run_id: int, db_path: str,
         known: frozenset[str] = frozenset()) -> None:
    """What `replay` says after its summary: the violations; on GitHub Actions, also their
    annotations and the job summary."""
    print_violations(console, db, run_id, db_path, known)
    if on_github():
        annotate(console, db, run_id, known)
        if os.environ.get("GITHUB_STEP_SUMMARY"):
            step_summary(db, run_id, os.environ["GITHUB_STEP_SUMMARY"])
