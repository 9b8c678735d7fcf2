"""SARIF 2.1.0, the format code-scanning dashboards (GitHub, GitLab, Azure DevOps) load:
one result per violation, located in the capture that holds the flow."""

import json
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from .. import __version__
from ..rules import RULES
from .log import AuditLog, capture_name, capture_of, plain, rule_info

SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/os/schemas/sarif-schema-2.1.0.json"
LEVELS = {"high": "error", "medium": "warning", "low": "note"}


def write_sarif(log: AuditLog, out: TextIO) -> None:
    rule_ids = sorted(set(RULES) | {v["rule"] for v in log.violations})
    document = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "gdpr-flow-audit",
                "version": __version__,
                "rules": [_rule(rule_id) for rule_id in rule_ids],
            }},
            "results": [_result(v, rule_ids.index(v["rule"])) for v in log.violations],
            "properties": {"auditRuns": [
                {"id": run["id"], "command": plain(run["command"]), "started": run["started"],
                 "finished": run["finished"], "flows": run["flows"]} for run in log.runs]},
        }],
    }
    json.dump(document, out, indent=2, ensure_ascii=True)
    out.write("\n")


def _rule(rule_id: str) -> dict[str, Any]:
    info = rule_info(rule_id)
    return {
        "id": info.id,
        "name": info.name,
        "shortDescription": {"text": info.explanation.split(": ")[0].rstrip(".")},
        "fullDescription": {"text": info.explanation},
        "help": {"text": info.explanation},
        "defaultConfiguration": {"level": LEVELS.get(info.severity, "warning")},
        "properties": {"tags": ["gdpr", "privacy"], "severity": info.severity},
    }


def _result(violation: dict[str, Any], rule_index: int) -> dict[str, Any]:
    where = f"{violation['location']} {violation['field']}".strip() if violation["field"] else ""
    message = plain(violation["message"]) + (f" ({plain(where)})" if where else "")
    location: dict[str, Any] = {"logicalLocations": [{
        "name": f"flow {violation['flow_id']}",
        "fullyQualifiedName": plain(capture_name(violation["source"]) or violation["flow_id"]),
        "kind": "element",
    }]}
    capture = capture_of(violation["source"])
    if capture is not None:
        path, index = capture
        artifact = {"uri": _uri(path)}
        location["physicalLocation"] = {"artifactLocation": artifact}
        if index is not None:
            location["message"] = {"text": f"flow #{index} of {plain(Path(path).name)}"}
    elif violation["host"]:  # seen live (the proxy): no capture file, the request is the place
        location["physicalLocation"] = {"artifactLocation": {"uri": _request_uri(violation)}}
    return {
        "ruleId": violation["rule"],
        "ruleIndex": rule_index,
        "level": LEVELS.get(violation["severity"], "warning"),
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {"gdprViolation/v1": violation["fingerprint"]},
        "properties": {key: plain(violation[key]) for key in (
            "flow_id", "severity", "recipient", "host", "method", "path", "category",
            "subjects", "location", "field", "evidence", "timestamp")},
    }


def _request_uri(violation: dict[str, Any]) -> str:
    """`https://host/path-template` from the log's allow-listed scheme, host and path columns
    (the query left out), so that code-scanning UIs have something to click."""
    scheme = plain(violation["scheme"] or "https").lower()
    path = plain(violation["path"] or "/").split("?")[0]
    return (f"{quote(scheme, safe='')}://{quote(plain(violation['host']), safe='.-:[]*')}"
            f"{quote(path if path.startswith('/') else '/' + path, safe='/*{}-._~:@')}")


def _uri(path: str) -> str:
    """A file URI for an absolute capture path, else a relative URI reference."""
    if Path(path).is_absolute():
        return Path(path).as_uri()
    return quote(Path(path).as_posix())
