from collections.abc import Iterator

from ..recipients import UNDECLARED
from .base import FlowFacts, Rule, Violation, categories


class UndeclaredRecipient(Rule):
    id = "undeclared-recipient"
    severity = "high"
    trigger = "personal data to a third party that the policy does not declare"
    articles = "GDPR Art. 13(1)(e), 14, 28"
    explanation = ("Every recipient of personal data must be declared (Art. 13-14, 30 GDPR): "
                   "add it to the policy with its purposes, data and transfer basis, or stop the flow.")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if facts.destination.kind == UNDECLARED and facts.findings:
            who = f" ({facts.destination.vendor})" if facts.destination.vendor else ""
            yield self.violation(
                facts, f"{categories(facts.findings)} sent to {facts.destination.name}{who}, "
                       "which the policy does not declare", facts.findings)
