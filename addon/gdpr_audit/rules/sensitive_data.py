from collections.abc import Iterator

from ..categories import SENSITIVE
from .base import FlowFacts, Rule, Violation, categories


class SensitiveData(Rule):
    id = "sensitive-data"
    severity = "high"
    trigger = ("payment card, IBAN, national id or credentials to a recipient not declared for "
               "that category")
    articles = "GDPR Art. 9, 32"
    explanation = ("Payment cards, bank accounts, national ids and credentials go only to a "
                   "recipient declared for them (Art. 5(1)(f), 32 GDPR).")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if not facts.destination.is_third_party:
            return
        allowed = facts.destination.allowed or frozenset()
        sensitive = tuple(f for f in facts.findings
                          if f.category in SENSITIVE and f.category not in allowed)
        if sensitive:
            yield self.violation(facts, f"{categories(sensitive)} sent to "
                                        f"{facts.destination.name}", sensitive)
