from collections.abc import Iterator

from ..recipients import DECLARED, UNDECLARED, catalogue_transfer_problem, transfer_problem
from .base import FlowFacts, Rule, Violation


class UnlawfulTransfer(Rule):
    id = "unlawful-transfer"
    severity = "medium"
    trigger = ("a recipient outside the EEA with no adequacy decision and no transfer mechanism "
               "(declared: its country/transfer; undeclared: its company's country in the "
               "catalogue)")
    articles = "GDPR Art. 44-46"
    explanation = ("Transfers outside the EEA need an adequacy decision or appropriate "
                   "safeguards such as SCCs or BCRs (Chapter V GDPR).")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if facts.destination.kind == UNDECLARED and facts.findings:
            # judged by the catalogue's country of its company (SPEC 3.6)
            entity = facts.destination.entity
            problem = catalogue_transfer_problem(entity)
            if entity is not None and problem:
                yield self.violation(facts, f"{entity.name}: {problem}", facts.findings)
            return
        recipient = facts.destination.recipient
        if facts.destination.kind != DECLARED or recipient is None or not facts.findings:
            return
        problem = transfer_problem(recipient)
        if problem:
            yield self.violation(facts, f"{recipient.name}: {problem}", facts.findings)
