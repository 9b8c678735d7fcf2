"""One self-contained HTML page (inline CSS and script, no network) with filters and charts.

Every text from the traffic is escaped twice over: html.escape in the markup, and in the JSON
block every `<`, `>` and `&` is a \\u escape, so neither `</script>` nor `<!--` can end it.
A Content-Security-Policy allows only this page's own script (by hash) and no connection."""

import base64
import hashlib
import json
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
    flagged = len({v["flow_id"] for v in log.violations})
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
<thead><tr><th>#</th><th>Severity</th><th>Rule</th><th>Recipient</th><th>Request</th><th>Data</th><th>Where</th><th>Evidence</th><th>Message</th><th>Time</th><th>Flow</th></tr></thead>
<tbody>
{"".join(_row(index, item) for index, item in enumerate(items)) or _EMPTY}</tbody>
</table>
<script type="application/json" id="violations-data">{_json(items)}</script>
<script>{script}</script>
</body>
</html>
""")


_EMPTY = '<tr><td colspan="11" class="empty">No violation in this log.</td></tr>\n'
_COLUMNS = ("id", "severity", "rule", "recipient", "request", "categories", "where", "evidence",
            "message", "timestamp", "capture")


def _item(violation: dict[str, Any]) -> dict[str, Any]:
    where = f"{violation['location'] or ''} {violation['field'] or ''}".strip()
    return {
        "id": violation["id"], "severity": plain(violation["severity"]),
        "rule": plain(violation["rule"]), "recipient": plain(recipient_of(violation)),
        "request": plain(f"{violation['method']} {violation['host']}{violation['path']}"),
        "categories": plain(violation["categories"]), "where": plain(where),
        "evidence": plain(violation["evidence"]), "message": plain(violation["message"]),
        "timestamp": plain(violation["timestamp"]),
        "capture": plain(capture_name(violation["source"]) or violation["flow_id"]),
    }


def _row(index: int, item: dict[str, Any]) -> str:
    cells = "".join(f"<td>{escape(str(item[c]))}</td>" if c != "severity" else
                    f'<td class="sev-{escape(item[c])}">{escape(item[c])}</td>' for c in _COLUMNS)
    return f'<tr data-index="{index}">{cells}</tr>\n'


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
