from collections.abc import Iterator

from ..pages import checked_boxes
from .base import FlowFacts, Rule, Violation


class PreTickedConsent(Rule):
    id = "pre-ticked-consent"
    severity = "medium"
    trigger = "an HTML page served with a consent or marketing checkbox already checked"
    articles = "GDPR Art. 4(11), 7; CJEU C-673/17 Planet49"
    explanation = ("Consent must be an affirmative act (Art. 4(11), 7 GDPR; CJEU Planet49): a "
                   "consent, newsletter or marketing checkbox must not be checked in advance.")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        if not facts.page:
            return
        boxes = [box for box in checked_boxes(facts.page) if box.is_consent]
        if boxes:
            names = ", ".join(sorted({box.name[:40] for box in boxes}))
            yield self.violation(facts, f"the page serves checked consent boxes: {names}", ())
