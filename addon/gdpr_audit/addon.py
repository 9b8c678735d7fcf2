"""GdprAudit: the mitmproxy addon. The hooks stay thin: auditing is `Auditor.audit`, the
same call `replay` makes, and the log is written off the event loop by a `LogWriter`."""

import asyncio
import json
import logging
import sqlite3
from typing import Any

from mitmproxy import ctx, exceptions, http

from .audit import DEFAULT_MAX_BODY, Auditor, FlowAudit
from .documents import PolicyError
from .policy import load_policy
from .rules import RULES
from .store import LogWriter

logger = logging.getLogger(__name__)
MARKER = ":warning:"
# Requests to this host never leave the proxy: they wait until the log holds every flow seen
# so far, so a test can read it (the pytest plugin does). `.invalid` cannot be a real host.
BARRIER_HOST = "flush.gdpr-audit.invalid"


class GdprAudit:
    def __init__(self) -> None:
        self.auditor: Auditor | None = None
        self.writer: LogWriter | None = None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "gdpr_policy", str | None, None,
            "The sharing policy: a YAML file, or a folder whose *.yaml files are merged. "
            "Auditing is off until it is set.")
        loader.add_option(
            "gdpr_subjects", str | None, None,
            "The subject registry (YAML, JSON or CSV). Default: the subjects inside the policy.")
        loader.add_option(
            "gdpr_db", str, "audit.db",
            "The SQLite audit log. Its fingerprint key is read from GDPR_AUDIT_KEY or <db>.key.")
        loader.add_option(
            "gdpr_enforce", bool, False,
            "Answer a violating request with HTTP 451 and a JSON explanation instead of "
            "forwarding it, and drop violating WebSocket messages.")
        loader.add_option(
            "gdpr_max_body", int, DEFAULT_MAX_BODY,
            "Bodies and messages are read up to this many bytes once decoded; a flow over the "
            "cap is logged as partially audited.")
        loader.add_option(
            "gdpr_annotate", bool, True,
            "Mark violating flows and add their rules to the flow's comment, so they stand out "
            "in mitmweb and in saved .flow files.")

    def configure(self, updated: set[str]) -> None:
        if updated & {"gdpr_policy", "gdpr_subjects", "gdpr_max_body"} and ctx.options.gdpr_policy:
            if ctx.options.gdpr_max_body <= 0:
                raise exceptions.OptionsError("gdpr_max_body: must be a positive number of bytes")
            try:
                policy = load_policy(ctx.options.gdpr_policy, ctx.options.gdpr_subjects)
            except PolicyError as e:
                raise exceptions.OptionsError(f"gdpr_policy: {e}") from None
            self.auditor = Auditor(policy, max_body=ctx.options.gdpr_max_body)
        if self.auditor and (updated & {"gdpr_db", "gdpr_policy"} or self.writer is None):
            if self.writer is not None:
                self.writer.close()
            try:
                self.writer = LogWriter(ctx.options.gdpr_db, "proxy", self.auditor.policy.sources)
            except (OSError, sqlite3.Error, ValueError) as e:
                raise exceptions.OptionsError(f"gdpr_db: {e}") from None

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.pretty_host == BARRIER_HOST:
            await self._barrier(flow)
            return
        audit = self._audit(flow)
        if audit and audit.violations and ctx.options.gdpr_enforce:
            flow.response = self._refusal(audit)

    def response(self, flow: http.HTTPFlow) -> None:
        # A page may serve pre-ticked consent boxes: audit again with the response, which
        # replaces the request-time entry of this flow in the log.
        content_type = flow.response.headers.get("content-type", "") if flow.response else ""
        if "html" in content_type.lower() and flow.request.pretty_host != BARRIER_HOST:
            self._audit(flow)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        assert flow.websocket is not None
        message = flow.websocket.messages[-1]
        if not message.from_client or self.auditor is None or not ctx.options.gdpr_enforce:
            return
        audit = self.auditor.audit_message(flow, message.content)
        if audit.violations:
            message.drop()
            logger.warning(f"gdpr: dropped a WebSocket message to {audit.host}: "
                           f"{', '.join(v.rule for v in audit.violations)}")

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._audit(flow)  # the handshake and every message the client sent

    def done(self) -> None:
        if self.writer is not None:
            self.writer.close()
            for error in self.writer.errors:
                logger.error(f"gdpr: {error}")
            self.writer = None

    def _audit(self, flow: http.HTTPFlow) -> FlowAudit | None:
        if self.auditor is None or self.writer is None:
            return None
        audit = self.auditor.audit(flow)  # never raises: an error is part of the audit
        self.writer.submit(audit, "proxy")
        if audit.error:
            logger.error(f"gdpr: audit error on flow {flow.id}, the flow passes: {audit.error}")
        if audit.violations:
            rules = sorted({v.rule for v in audit.violations})
            logger.log(logging.WARNING, f"gdpr: {audit.method} {audit.host}: {', '.join(rules)}")
            if ctx.options.gdpr_annotate:
                flow.marked = MARKER
                note = f"GDPR: {', '.join(rules)}"
                if note not in flow.comment:
                    flow.comment = f"{flow.comment}\n{note}".strip()
                flow.metadata["gdpr_audit"] = rules
        return audit

    @staticmethod
    def _refusal(audit: FlowAudit) -> http.Response:
        """The 451 answer: rules, recipient and why, never the personal data."""
        body = {
            "error": "blocked by gdpr-flow-audit: this request would breach the sharing policy",
            "recipient": audit.destination.name if audit.destination else audit.host,
            "host": audit.host,
            "rules": [{"rule": v.rule, "severity": v.severity,
                       "categories": sorted({f.category for f in v.evidence}),
                       "why": RULES[v.rule].explanation} for v in audit.violations],
        }
        return http.Response.make(451, json.dumps(body, indent=2),
                                  {"content-type": "application/json"})

    async def _barrier(self, flow: http.HTTPFlow) -> None:
        if self.writer is not None:
            await asyncio.to_thread(self.writer.flush)
        body = {"flushed": self.writer is not None,
                "run_id": self.writer.run_id if self.writer else None}
        flow.response = http.Response.make(200, json.dumps(body),
                                           {"content-type": "application/json"})
