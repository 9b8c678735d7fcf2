"""A Markdown summary that fits a CI job summary (GitHub's $GITHUB_STEP_SUMMARY, GitLab notes)."""

from collections import Counter
from typing import TextIO

from ..categories import SEVERITIES
from .log import AuditLog, capture_name, plain, recipient_of

MAX_ROWS = 500  # a job summary is capped (1 MiB on GitHub); the csv export has every row
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
_PUNCTUATION = set("\\`*_{}[]()#|~!")  # cells never start a line: no need for + - . escapes


def md(value: object) -> str:
    """Traffic text as inert Markdown: HTML characters as entities, every other Markdown
    punctuation (links, code, emphasis, table pipes) backslash-escaped, no raw newline
    or control character."""
    return "".join(_ENTITIES.get(ch) or ("\\" + ch if ch in _PUNCTUATION else ch)
                   for ch in plain(value))


def _table(header: tuple[str, ...], body: list[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return lines + [""]


def write_markdown(log: AuditLog, out: TextIO) -> None:
    violations = log.violations
    flagged = {v["flow_id"] for v in violations}
    lines = ["## GDPR flow audit", "",
             f"**{len(violations)} violations** in {len(flagged)} of {len(log.flows)} flows "
             f"({len(log.runs)} run{'s' if len(log.runs) != 1 else ''}).", ""]
    if violations:
        severity_rank = {s: -i for i, s in enumerate(SEVERITIES)}
        by_rule = Counter((v["rule"], v["severity"]) for v in violations)
        lines += ["### By rule and severity", ""]
        lines += _table(("Rule", "Severity", "Violations"), [
            (md(rule), md(severity), count) for (rule, severity), count in sorted(
                by_rule.items(), key=lambda item: (severity_rank.get(item[0][1], 1), item[0][0]))])
        by_recipient = Counter(recipient_of(v) for v in violations)
        flows_by_recipient = Counter(recipient_of(f) for f in log.flows if f["id"] in flagged)
        lines += ["### By recipient", ""]
        lines += _table(("Recipient", "Violations", "Flows"), [
            (md(name), count, flows_by_recipient[name])
            for name, count in sorted(by_recipient.items(), key=lambda item: (-item[1], item[0]))])
        lines += ["### Violations", ""]
        lines += _table(
            ("#", "Severity", "Rule", "Recipient", "Request", "Data", "Where", "Message", "Flow"),
            [(v["id"], md(v["severity"]), md(v["rule"]), md(recipient_of(v)),
              md(f"{v['method']} {v['host']}{v['path']}"), md(v["categories"]),
              md(f"{v['location']} {v['field'] or ''}".strip()), md(v["message"]),
              md(capture_name(v["source"]) or v["flow_id"])) for v in violations[:MAX_ROWS]])
        if len(violations) > MAX_ROWS:
            lines += [f"… and {len(violations) - MAX_ROWS} more: "
                      "`gdpr-audit export --format csv` has them all.", ""]
    out.write("\n".join(lines))
