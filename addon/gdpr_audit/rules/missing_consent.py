from collections.abc import Iterator
from datetime import datetime

from ..consent import SignalDecisions
from ..policy import Subject
from .base import FlowFacts, Rule, Violation


class MissingConsent(Rule):
    id = "missing-consent"
    severity = "high"
    trigger = ("a purpose that needs consent, and the identified subject had not granted it at "
               "the flow's time (or had withdrawn it); for an unidentified subject, the flow's "
               "own consent signal denies it, or there is none and unknown_subject: deny")
    articles = "GDPR Art. 6(1)(a), 7; ePrivacy 5(3)"
    explanation = ("A purpose that needs consent (Art. 6(1)(a), 7 GDPR) was served without it: "
                   "the person had not granted it at the time, or had withdrawn it.")

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        needed = [p for p in facts.destination.purposes if facts.policy.purposes.get(p)]
        if not needed or not facts.findings:
            return
        identified = sorted({f.subject for f in facts.findings if f.subject})
        reasons = []
        evidence = []
        for subject_id in identified:
            missing = [p for p in needed
                       if not facts.subjects[subject_id].has_consent(p, facts.at)]
            if missing:
                subject = facts.subjects[subject_id]
                reasons.append(f"{subject_id} {why_not(subject, missing, facts.at)}")
                evidence += [f for f in facts.findings if f.subject == subject_id]
        if not identified:
            for purpose in needed:
                if self._unknown_person_consents(facts, purpose):
                    continue
                how = (self._signal_reason(facts, purpose) if purpose in facts.consent_signals
                       else f"no registry subject and no {self._usable(facts)}consent signal "
                            "(unknown_subject: deny)")
                reasons.append(f"{purpose} for an unidentified person: {how}")
                evidence = list(facts.findings)
        if reasons:
            yield self.violation(facts, "; ".join(reasons), tuple(evidence))

    @staticmethod
    def _unknown_person_consents(facts: FlowFacts, purpose: str) -> bool:
        if purpose in facts.consent_signals:
            return facts.consent_signals[purpose]
        return facts.policy.unknown_subject == "allow"

    @staticmethod
    def _signal_reason(facts: FlowFacts, purpose: str) -> str:
        """Which signal decided, e.g. "TCF purpose 1 not consented"."""
        signals = facts.consent_signals
        reason = signals.reasons.get(purpose) if isinstance(signals, SignalDecisions) else None
        return f"the request's consent signal denies it ({reason})" if reason else \
            "the consent signal in the request denies it"

    @staticmethod
    def _usable(facts: FlowFacts) -> str:
        signals = facts.consent_signals
        malformed = signals.malformed if isinstance(signals, SignalDecisions) else []
        return f"usable (malformed: {', '.join(malformed)}) " if malformed else ""


def why_not(subject: Subject, purposes: list[str], at: datetime) -> str:
    """What the registry's history says of purposes not granted at `at`, purposes in the same
    state together: "withdrew consent to newsletter on 2026-03-01", "never consented to
    analytics", "consented to advertising only after this flow, on 2026-07-01". One clause
    for the subject (erasure drops a clause that names them)."""
    states: dict[str, list[str]] = {}
    for purpose in purposes:
        events = subject.consents.get(purpose, ())
        before = [e for e in events if e.at <= at]
        later = [e for e in events if e.at > at and e.granted]
        if before:  # the latest at or before `at` is not a grant: a withdrawal
            state = f"withdrew consent to {{}} on {before[-1].at.date().isoformat()}"
        elif later:
            state = f"consented to {{}} only after this flow, on {later[0].at.date().isoformat()}"
        else:
            state = "never consented to {}"
        states.setdefault(state, []).append(purpose)
    return ", ".join(state.format(", ".join(names)) for state, names in states.items())
