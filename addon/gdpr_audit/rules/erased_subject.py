from collections.abc import Iterator

from .base import FlowFacts, Rule, Violation


class ErasedSubject(Rule):
    id = "erased-subject"
    severity = "high"
    trigger = "data of a subject sent after their erasure request"
    articles = "GDPR Art. 17"
    explanation = "Data of a person who asked for erasure must not be processed or shared (Art. 17 GDPR)."

    def check(self, facts: FlowFacts) -> Iterator[Violation]:
        erased = set()
        for subject_id in {f.subject for f in facts.findings if f.subject}:
            requested = facts.subjects[subject_id].erasure_requested
            if requested is not None and requested <= facts.at:
                erased.add(subject_id)
        if erased:
            evidence = tuple(f for f in facts.findings if f.subject in erased)
            yield self.violation(facts, f"data of {', '.join(sorted(erased))} sent after their "
                                        "erasure request", evidence)
