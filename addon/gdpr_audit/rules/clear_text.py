from collections.abc import Iterator

from .base import FlowFacts, Rule, Violation, categories


class ClearText(Rule):
    id = "clear-text"
    severity = "high"
    trigger = "personal data over http:// or ws://"
    articles = "GDPR Art. 32"
    explanation = "Personal data must not travel unencrypted (Art. 32 GDPR): use https:// or wss://."

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if facts.scheme in ("http", "ws") and facts.findings:
            yield self.violation(facts, f"{categories(facts.findings)} sent over {facts.scheme}://",
                                 facts.findings)
