"""What every rule sees (the facts of one flow) and what it reports."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from ..detectors import Finding
from ..policy import Policy, Subject
from ..recipients import Destination


@dataclass(frozen=True)
class FlowFacts:
    flow_id: str
    method: str
    scheme: str
    host: str
    path: str
    at: datetime
    destination: Destination
    findings: tuple[Finding, ...]
    """Personal data in the request (empty when nothing identifies a person)."""
    policy: Policy
    subjects: Mapping[str, Subject]
    consent_signals: Mapping[str, bool] = field(default_factory=dict)
    """Purpose -> granted, as read from consent signals in the flow itself."""
    page: str | None = None
    """The HTML page the response served, if any (responses are never disclosures)."""


@dataclass(frozen=True)
class Violation:
    rule: str
    severity: str
    message: str
    evidence: tuple[Finding, ...]
    policy_entry: str


class Rule:
    """One GDPR check. Subclasses in this package are registered by `id` (SPEC 3.6):
    each reports at most one violation per flow, carrying all of its evidence."""

    id: ClassVar[str]
    severity: ClassVar[str]
    """The default; a policy's `severity:` map may change it."""
    trigger: ClassVar[str]
    """When it fires (SPEC 3.6): `gdpr-audit rules` and the docs say it in these words."""
    articles: ClassVar[str]
    """The law behind it (GDPR articles, ePrivacy, case law)."""
    explanation: ClassVar[str]

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        raise NotImplementedError

    def violation(self, facts: FlowFacts, message: str, evidence: tuple[Finding, ...]) -> Violation:
        return Violation(self.id, facts.policy.severity.get(self.id, self.severity), message,
                         evidence, facts.destination.policy_entry)


def categories(findings: tuple[Finding, ...]) -> str:
    return ", ".join(sorted({f.category for f in findings}))
