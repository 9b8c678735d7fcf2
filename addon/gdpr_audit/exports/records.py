"""Machine formats: json (one document), jsonl (one event a line), csv (one violation a row)."""

import csv
import json
from typing import Any, TextIO

from .log import AuditLog, capture_name, plain


def write_json(log: AuditLog, out: TextIO) -> None:
    document = {"runs": log.runs, "violations": log.violations, "findings": log.findings}
    # ensure_ascii: no raw control or bidi character from the traffic reaches a terminal
    json.dump(document, out, indent=2, ensure_ascii=True)
    out.write("\n")


def write_jsonl(log: AuditLog, out: TextIO) -> None:
    """Flat events with a `type` and a `timestamp`, the shape log shippers (Filebeat,
    Promtail, Splunk forwarders) index without a parsing rule."""
    events: list[dict[str, Any]] = [{"type": "run", "timestamp": run["started"], **run}
                                    for run in log.runs]
    events += [{"type": "violation", **violation} for violation in log.violations]
    events += [{"type": "finding", **finding} for finding in log.findings]
    for event in events:
        out.write(json.dumps(event, ensure_ascii=True, separators=(",", ":")))
        out.write("\n")


CSV_COLUMNS = ("id", "run_id", "flow_id", "timestamp", "rule", "severity", "recipient", "host",
               "method", "path", "category", "categories", "subject", "subjects", "location",
               "field", "evidence", "message", "policy_entry", "fingerprint", "capture")


def write_csv(log: AuditLog, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for violation in log.violations:
        row = {**violation, "capture": capture_name(violation["source"])}
        writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])


def _cell(value: object) -> object:
    """Spreadsheets run a cell that starts with = + - @ as a formula (CSV injection): such
    text gets a leading quote, as OWASP advises; control characters become visible escapes."""
    if value is None or isinstance(value, int):
        return value
    text = plain(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
