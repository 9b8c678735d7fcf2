from collections.abc import Iterator

from ..recipients import DECLARED, transfer_problem
from .base import FlowFacts, Rule, Violation


class UnlawfulTransfer(Rule):
    id = "unlawful-transfer"
    severity = "medium"
    explanation = ("Transfers outside the EEA need an adequacy decision or appropriate "
                   "safeguards such as SCCs or BCRs (Chapter V GDPR).")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        recipient = facts.destination.recipient
        if facts.destination.kind != DECLARED or recipient is None or not facts.findings:
            return
        problem = transfer_problem(recipient)
        if problem:
            yield self.violation(facts, f"{recipient.name}: {problem}", facts.findings)
