"""audit._per_shape merges the findings at the same place of every element of an array: it
keeps a group's first finding and collects the others only where there are several (a text's
thousands of findings are each alone). Compared with the plain grouping it replaced."""

import random
from dataclasses import replace

from gdpr_audit.audit import _per_shape, _shape_of
from gdpr_audit.detectors.base import Finding
from gdpr_audit.fields import Field


def _every_group_listed(findings: list[Finding]) -> list[Finding]:
    """The grouping _per_shape made before: a list for every group."""
    shapes: dict[tuple, list[Finding]] = {}
    for finding in findings:
        key = finding.field.key
        shape = _shape_of(finding.field.location, key)
        group = (finding.field.location, shape, finding.category, finding.detector, finding.form,
                 finding.subject, finding.canonical if shape == key else None)
        shapes.setdefault(group, []).append(finding)
    merged = []
    for (_, shape, *_), group in shapes.items():
        first = group[0]
        if len(group) > 1 or first.count > 1:
            first = replace(first, field=replace(first.field, key=shape),
                            count=sum(f.count for f in group))
        merged.append(first)
    return merged


def test_per_shape_merges_as_every_group_listed() -> None:
    rng = random.Random(28)
    merged = 0
    for _ in range(2000):
        findings = []
        for _ in range(rng.randrange(0, 20)):
            location = rng.choice(("body", "body", "body", "query", "path"))
            key = rng.choice(("email", "users[0].email", "users[1].email", "users[12].email",
                              "a[0].b[1]", "a[3].b[1]", "phone"))
            category = rng.choice(("email", "phone"))
            findings.append(Finding(
                rng.choice((category, category, "registry")), category,
                Field(location, key, "v"), "v", rng.choice(("a", "b")),
                rng.choice(("plain", "plain", "plain", "url")),
                rng.choice((None, None, None, "cust-1")), rng.choice((1, 1, 1, 3))))
        expected = _every_group_listed(findings)
        got = _per_shape(findings)
        assert got == expected
        # a finding alone in its group is the one found, not a copy
        assert [f is e for f, e in zip(got, expected, strict=True)] == [
            any(f is g for g in findings) for f in expected]
        merged += len(findings) - len(got)
    assert merged > 1000  # not vacuous: many groups of several
