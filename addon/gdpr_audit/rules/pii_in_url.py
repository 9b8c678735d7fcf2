from collections.abc import Iterator

from ..categories import DIRECT_IDENTIFIERS
from .base import FlowFacts, Rule, Violation, categories


class PiiInUrl(Rule):
    id = "pii-in-url"
    severity = "medium"
    trigger = ("a direct identifier (email, phone, name, postal address, birth date, payment "
               "card, IBAN, national id, credentials; plain, hashed or encoded) in the URL path "
               "or query of a third-party request")
    articles = "GDPR Art. 5(1)(f), 32"
    explanation = ("URLs end up in server logs, proxies and referrers: direct identifiers, even "
                   "hashed, belong in the body of an encrypted request.")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if not facts.destination.is_third_party:
            return
        in_url = tuple(f for f in facts.findings
                       if f.field.location in ("path", "query") and f.category in DIRECT_IDENTIFIERS)
        if in_url:
            yield self.violation(facts, f"{categories(in_url)} in the URL of "
                                        f"{facts.destination.name}", in_url)
