"""Fuzz the whole audit of one flow against the sample policy and registry: Auditor.audit
must not raise nor record an audit error (an error on any input is a bug), and no
identifier of the registry may come out raw in what the log keeps of the flow: its path,
host, field paths, violation messages, consent record, limits or error.

Input: a raw HTTP/1 request (fuzz/seeds.py); the seeds carry the registry's identifiers."""

import json
import re

import _common
import atheris

with atheris.instrument_imports(include=["gdpr_audit"]):
    from mitmproxy.test import tflow

    from gdpr_audit.audit import Auditor
    from gdpr_audit.policy import load_policy

AUDITOR = Auditor(load_policy(_common.POLICY), max_body=64 * 1024)
# Short values ("Hugo") occur in ordinary words; the registry's full identifiers do not. Like
# the detectors, an identifier counts where it stands as a word: "Marie Dupont2" is not one
# (a limit of word-boundary matching, reported with issue #7).
SECRETS = {v.lower(): re.compile(rf"(?<![^\W_]){re.escape(v.lower())}(?![^\W_])")
           for v in _common.registry_values() if len(v) >= 6}


def kept_text(audit) -> dict[str, str]:
    """Everything of an audited flow that reaches the log, by part, lowercased."""
    parts = {"path": audit.path, "host": audit.host, "error": audit.error or "",
             "limits": "\n".join(audit.limits), "fields": "\n".join(audit.fields),
             "consent": json.dumps(audit.consent, ensure_ascii=False, default=str),
             "violations": "\n".join(f"{v.message}\n{v.policy_entry}" for v in audit.violations)}
    return {name: text.lower() for name, text in parts.items()}


def test_one_input(data: bytes) -> None:
    try:
        audit = AUDITOR.audit(tflow.tflow(req=_common.request_from_bytes(data)))
    except ValueError as e:  # Auditor.audit must never raise, unless a bug is known (_common)
        if _common.known_error(e):
            return
        raise
    if audit.error is not None and _common.known_error(audit.error):
        return
    assert audit.error is None, audit.error
    leaked = [(part, secret) for part, text in kept_text(audit).items()
              for secret, pattern in SECRETS.items()
              if pattern.search(text)]
    assert not leaked, f"raw registry identifier in the audit record: {leaked}"


if __name__ == "__main__":
    _common.run(test_one_input, "audit")
