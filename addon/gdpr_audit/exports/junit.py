"""JUnit XML, which CI test-report viewers (GitLab, Jenkins, GitHub test-reporter actions)
load: a test case per audited flow, a failure per rule it violates; clean flows pass."""

import xml.etree.ElementTree as ET
from typing import TextIO

from .log import AuditLog, capture_name, plain, recipient_of, request_of


def write_junit(log: AuditLog, out: TextIO) -> None:
    by_flow = log.violations_by_flow()
    root = ET.Element("testsuites", name="gdpr-flow-audit")
    for run in log.runs:
        flows = [f for f in log.flows if f["run_id"] == run["id"]]
        suite = ET.SubElement(root, "testsuite", {
            "name": plain(f"gdpr-audit run {run['id']}: {run['command']}"),
            "tests": str(len(flows)),
            "failures": str(sum(1 for f in flows if by_flow.get(f["id"]))),
            "errors": str(sum(1 for f in flows if f["status"] == "error")),
            "skipped": "0", "time": "0", "timestamp": (run["started"] or "")[:19],
        })
        for flow in flows:
            case = ET.SubElement(suite, "testcase", {
                "classname": plain(recipient_of(flow)), "name": plain(request_of(flow)),
                "file": plain(capture_name(flow["source"])), "time": "0"})
            for violation in by_flow.get(flow["id"], []):
                failure = ET.SubElement(case, "failure", {
                    "type": violation["rule"],
                    "message": plain(f"[{violation['severity']}] {violation['message']}")})
                failure.text = "\n".join(plain(line) for line in (
                    f"rule: {violation['rule']} ({violation['severity']})",
                    f"recipient: {recipient_of(violation)}",
                    f"data: {violation['categories']}",
                    f"where: {violation['location']} {violation['field'] or ''}".rstrip(),
                    f"evidence: {violation['evidence'] or ''}",
                    f"flow: {violation['flow_id']} ({capture_name(violation['source'])})",
                    f"fingerprint: {violation['fingerprint']}",
                ))
            if flow["status"] == "error":
                ET.SubElement(case, "error", message=plain(flow["error"]))
            elif flow["limits"]:
                ET.SubElement(case, "system-out").text = plain(f"partly audited: {flow['limits']}")
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(root, encoding="unicode"))
    out.write("\n")
