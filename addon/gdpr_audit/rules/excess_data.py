from collections.abc import Iterator

from ..categories import SENSITIVE
from ..recipients import DECLARED
from .base import FlowFacts, Rule, Violation, categories


class ExcessData(Rule):
    id = "excess-data"
    severity = "medium"
    trigger = ("a declared recipient receives a non-sensitive category it is not declared for "
               "(minimisation)")
    articles = "GDPR Art. 5(1)(c)"
    explanation = ("Data minimisation (Art. 5(1)(c) GDPR): a recipient gets only the categories "
                   "declared for it.")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        allowed = facts.destination.allowed or frozenset()
        if facts.destination.kind != DECLARED:
            return
        excess = tuple(f for f in facts.findings
                       if f.category not in allowed and f.category not in SENSITIVE)
        if excess:
            yield self.violation(facts, f"{facts.destination.name} is not declared for "
                                        f"{categories(excess)}", excess)
