"""One self-contained HTML page (inline CSS and script, no network) with filters and charts.

Every text from the traffic is escaped twice over: html.escape in the markup, and in the JSON
block every `<`, `>` and `&` is a \\u escape, so neither `</script>` nor `<!--` can end it.
A Content-Security-Policy allows only this page's own script (by hash) and no connection."""

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from html import escape
from importlib.resources import files
from typing import Any, TextIO

from ..categories import SEVERITIES
from .log import AuditLog, capture_name, plain, recipient_of

_ASSETS = files(__package__)


def write_html(log: AuditLog, out: TextIO) -> None:
    script = _ASSETS.joinpath("report.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    items = [_item(v) for v in log.violations]
    by_flow = log.violations_by_flow()
    flagged = len(by_flow)
    policy = (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
              "base-uri 'none'; form-action 'none'")
    out.write(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GDPR flow audit: {len(items)} violations</title>
<style>
{_ASSETS.joinpath("report.css").read_text(encoding="utf-8")}</style>
</head>
<body>
<h1>GDPR flow audit</h1>
<p>{len(items)} violations in {flagged} of {len(log.flows)} flows, {len(log.runs)} run(s).
Showing <strong id="shown-count"></strong> of <span id="total-count"></span>.</p>
<form class="filters" role="search" onsubmit="return false">
{_select("rule", "all rules", sorted({i["rule"] for i in items}))}
{_select("recipient", "all recipients", sorted({i["recipient"] for i in items}))}
{_select("severity", "all severities", [s for s in reversed(SEVERITIES)
                                        if any(i["severity"] == s for i in items)])}
<input id="filter-text" type="search" placeholder="search text" aria-label="search text">
</form>
<section class="charts">
{_chart("recipient", "Violations by recipient")}
{_chart("rule", "Violations by rule")}
{_chart("time", "Violations over time (UTC)")}
</section>
<table id="violations">
{_COLGROUP}
<thead><tr><th>#</th><th>Severity</th><th>Rule</th><th>Recipient</th><th>Request</th><th>Data</th><th>Subjects</th><th>Where</th><th>Evidence</th><th>Message</th><th>Time (UTC)</th><th>Flow</th></tr></thead>
<tbody>
{"".join(_row(index, item) for index, item in enumerate(items)) or _EMPTY}</tbody>
</table>
{_flows(log, by_flow)}
<script type="application/json" id="violations-data">{_json(items)}</script>
<script>{script}</script>
</body>
</html>
""")


_EMPTY = '<tr><td colspan="12" class="empty">No violation in this log.</td></tr>\n'
_COLUMNS = ("id", "severity", "rule", "recipient", "request", "categories", "subjects", "where",
            "evidence", "message", "time", "capture")
# A fixed layout with these shares of the width: an automatic one sized columns by their
# longest token and pushed the table past the window (or, with overflow-wrap: anywhere on
# every cell, squeezed columns until words broke mid-word).
_WIDTHS = (3, 6, 11, 8, 15, 8, 6, 9, 7, 12, 8, 7)
_COLGROUP = "<colgroup>" + "".join(f'<col style="width:{w}%">' for w in _WIDTHS) + "</colgroup>"
# Long tokens (a path, a field path) may wrap after these, with no hyphen added.
_SEPARATORS = re.compile(r"([/?&=.,:;_+#\-]+)")
_LONG = 14


def _item(violation: dict[str, Any]) -> dict[str, Any]:
    where = f"{violation['location'] or ''} {violation['field'] or ''}".strip()
    return {
        "id": violation["id"], "severity": plain(violation["severity"]),
        "rule": plain(violation["rule"]), "recipient": plain(recipient_of(violation)),
        "request": plain(f"{violation['method']} {violation['host']}{violation['path']}"),
        "categories": plain(violation["categories"]), "where": plain(where),
        "evidence": plain(violation["evidence"]), "message": plain(violation["message"]),
        "subjects": plain(violation["subjects"]),
        "timestamp": plain(violation["timestamp"]), "time": _second(violation["timestamp"]),
        "capture": plain(capture_name(violation["source"]) or violation["flow_id"]),
        "flow": anchor(violation["flow_id"]),
    }


def _row(index: int, item: dict[str, Any]) -> str:
    cells = []
    for column in _COLUMNS:
        if column == "severity":
            cells.append(f'<td class="sev-{escape(item[column])}">{escape(item[column])}</td>')
        elif column == "capture":
            # a capture's name (`backend.flow#12`) is one token in a narrow column
            cells.append(f'<td><a href="#{item["flow"]}">{wrappable(item[column], 1)}</a></td>')
        else:
            cells.append(f"<td>{wrappable(str(item[column]))}</td>")
    return f'<tr data-index="{index}" id="violation-{item["id"]}">{"".join(cells)}</tr>\n'


def wrappable(text: str, long: int = _LONG) -> str:
    """Escaped text whose long tokens may wrap after a separator (`<wbr>`, no hyphen) and, as a
    last resort, anywhere; other words never break."""
    out = []
    for word in re.split(r"(\s+)", text):
        if len(word) < long or word.isspace():
            out.append(escape(word))
        else:
            parts = _SEPARATORS.split(word)
            out.append('<span class="long">' + "".join(
                escape(part) + ("<wbr>" if n % 2 else "") for n, part in enumerate(parts))
                + "</span>")
    return "".join(out)


def anchor(flow_id: str) -> str:
    """The flow's element id: the flow id itself when it is a plain token (mitmproxy's are
    UUIDs), else a digest of it, so no text from a capture reaches an attribute unescaped."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,80}", flow_id or ""):
        return f"flow-{flow_id}"
    return "flow-" + hashlib.sha256(str(flow_id).encode()).hexdigest()[:16]


def _second(timestamp: str | None) -> str:
    """`2026-06-15T10:00:00.123456+00:00` as `2026-06-15 10:00:00` (UTC)."""
    try:
        moment = datetime.fromisoformat(timestamp or "")
    except ValueError:
        return plain(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _flows(log: AuditLog, by_flow: dict[str, list[dict[str, Any]]]) -> str:
    """A row per flow with violations, the target of their Flow links, with links back to its
    violations."""
    if not by_flow:
        return ""
    rows = []
    for flow in log.flows:
        violations = by_flow.get(flow["id"])
        if not violations:
            continue
        back = ", ".join(f'<a href="#violation-{v["id"]}">#{v["id"]}&nbsp;'
                         f'{escape(plain(v["rule"]))}</a>' for v in violations)
        subjects = sorted({s for v in violations for s in (v["subjects"] or "").split(", ") if s})
        request = f"{flow['method']} {flow['host']}{flow['path']}"
        rows.append(
            f'<tr id="{anchor(flow["id"])}"><td>{wrappable(plain(flow["id"]))}</td>'
            f"<td>{wrappable(plain(capture_name(flow['source'])))}</td>"
            f"<td>{_second(flow['timestamp'])}</td>"
            f"<td>{wrappable(plain(recipient_of(flow)))}</td><td>{wrappable(plain(request))}</td>"
            f"<td>{wrappable(plain(', '.join(subjects)))}</td><td>{back}</td></tr>\n")
    widths = "".join(f'<col style="width:{w}%">' for w in (14, 10, 8, 10, 28, 10, 20))
    return ('<h2>Flows with violations</h2>\n<table id="flows">'
            f"<colgroup>{widths}</colgroup>\n<thead><tr><th>Flow</th><th>Capture</th>"
            "<th>Time (UTC)</th><th>Recipient</th><th>Request</th><th>Subjects</th>"
            f"<th>Violations</th></tr></thead>\n<tbody>\n{''.join(rows)}</tbody>\n</table>")


def _chart(name: str, caption: str) -> str:
    """An empty SVG that the page's script draws into (and redraws as filters change)."""
    return (f'<figure><figcaption>{caption}</figcaption><svg id="chart-{name}" class="chart" '
            f'role="img" aria-label="{caption}"></svg></figure>')


def _select(name: str, everything: str, values: list[str]) -> str:
    options = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return (f'<select id="filter-{name}" aria-label="{everything}">'
            f'<option value="">{everything}</option>{options}</select>')


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
