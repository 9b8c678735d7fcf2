"""Score the verdicts, per corpus: precision and recall of the subjects named, of the categories
found and of the violations of each rule, with every miss and false alarm listed (flow, what, why).

    python bench/sdk_corpus/score.py [--small] [--no-write] [--sdk-only]

Two corpora:
  * `sdk`: bench/sdk_corpus/sdk.flow, eleven vendors' own SDKs driven by record.py, labelled by
    hand in truth.json (every category, behavioural and purchase included);
  * `detection`: the synthetic corpus of bench/detection/make_corpus.py (labels from what it
    inserted). It labels no behavioural, purchase or location data (its benign context is
    unlabelled), so those categories are left out of its scores on both sides.
Units: a (flow, subject) pair named, a (flow, category) pair, a (flow, rule) pair. A subject is
*named* by the product when a finding of the flow carries its registry id.
"""

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "addon"))
sys.path.insert(0, str(ROOT / "bench" / "detection"))

from gdpr_audit.audit import Auditor  # noqa: E402
from gdpr_audit.captures import CaptureReader  # noqa: E402
from gdpr_audit.policy import load_policy  # noqa: E402

UNLABELLED_IN_DETECTION = {"behavioural", "purchase", "location"}


@dataclass
class Expected:
    """What one flow should yield, with the reason a reader checks a label against."""
    index: int
    request: str
    subjects: set[str]
    categories: set[str]
    rules: set[str]
    why: str = ""
    vendor: str = ""


@dataclass
class Scores:
    name: str
    flows: int
    vendors: set[str] = field(default_factory=set)
    subjects: Counter = field(default_factory=Counter)
    categories: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    rules: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    misses: list[tuple[int, str, str]] = field(default_factory=list)
    false_alarms: list[tuple[int, str, str]] = field(default_factory=list)


def audit_capture(capture: Path, policy: Path) -> list:
    auditor = Auditor(load_policy(policy))
    reader = CaptureReader([str(capture)])
    audits = [auditor.audit(flow) for flow, _ in reader.flows()]
    if reader.errors:
        raise SystemExit(f"{capture} unreadable: {reader.errors}")
    return audits


def sdk_corpus() -> tuple[list[Expected], list]:
    truth = json.loads((HERE / "truth.json").read_text())["flows"]
    expected = [Expected(t["index"], t["request"], set(t["subjects"]), set(t["categories"]),
                         set(t["rules"]), f"{t['why']['data']} / {t['why']['rules']}", t["vendor"])
                for t in truth]
    return expected, audit_capture(HERE / "sdk.flow", HERE)


def detection_corpus(small: bool) -> tuple[list[Expected], list]:
    import make_corpus
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch)
        make_corpus.write(corpus, small)
        labels = json.loads((corpus / "labels.json").read_text())
        audits = audit_capture(corpus / "corpus.flow", corpus / "policy.yaml")
    expected = []
    for label in labels:
        items = label["truth"]
        expected.append(Expected(
            label["index"], f"{label['scheme']} {label['host']} ({label['container']})",
            {i["subject"] for i in items if i["subject"] and i.get("names", True)},
            {i["category"] for i in items}, set(label["rules"]),
            "inserted: " + (", ".join(f"{i['category']} ({i['encoding']})" for i in items)
                            or f"nothing (negative: {label.get('negative')})")))
    return expected, audits


def _evidence(findings: list, category: str | None = None, subject: str | None = None) -> str:
    """Where the product saw it: detector, location and key (never the value)."""
    seen = sorted({f"{f.detector}@{f.field.location}:{f.field.key}"
                   for f in findings if (category is None or f.category == category)
                   and (subject is None or f.subject == subject)})
    return ", ".join(seen[:4]) + (f" (+{len(seen) - 4})" if len(seen) > 4 else "")


def score(name: str, expected: list[Expected], audits: list,
          ignore_categories: set[str] = frozenset()) -> Scores:
    if len(expected) != len(audits):
        raise SystemExit(f"{name}: {len(expected)} labels for {len(audits)} flows")
    scores = Scores(name, len(expected))
    for want, got in zip(expected, audits, strict=True):
        scores.vendors.add(want.vendor or got.host)
        named = {f.subject for f in got.findings if f.subject}
        for subject in named | want.subjects:
            hit, fired = subject in want.subjects, subject in named
            scores.subjects["tp" if hit and fired else "fp" if fired else "fn"] += 1
            if fired and not hit:
                scores.false_alarms.append((want.index, f"subject {subject}",
                                            _evidence(got.findings, subject=subject)))
            elif hit and not fired:
                scores.misses.append((want.index, f"subject {subject}", want.why))
        found = {f.category for f in got.findings} - ignore_categories
        for category in found | (want.categories - ignore_categories):
            hit, fired = category in want.categories, category in found
            scores.categories[category]["tp" if hit and fired else "fp" if fired else "fn"] += 1
            if fired and not hit:
                scores.false_alarms.append((want.index, f"category {category}",
                                            _evidence(got.findings, category)))
            elif hit and not fired:
                scores.misses.append((want.index, f"category {category}", want.why))
        reported = {v.rule for v in got.violations}
        for rule in reported | want.rules:
            hit, fired = rule in want.rules, rule in reported
            scores.rules[rule]["tp" if hit and fired else "fp" if fired else "fn"] += 1
            if fired and not hit:
                violation = next(v for v in got.violations if v.rule == rule)
                scores.false_alarms.append((want.index, f"rule {rule}",
                                            f"{violation.message} [{_evidence(list(violation.evidence))}]"))
            elif hit and not fired:
                scores.misses.append((want.index, f"rule {rule}", want.why))
    return scores


def precision(c: Counter) -> float | None:
    return c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None


def recall(c: Counter) -> float | None:
    return c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _row(what: str, c: Counter) -> str:
    return (f"| {what} | {c['tp'] + c['fn']} | {c['tp']} | {c['fp']} | {c['fn']} | "
            f"{_fmt(precision(c))} | {_fmt(recall(c))} |")


def markdown(scores: Scores) -> str:
    head = ["| {} | expected | right | false alarms | misses | precision | recall |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    lines = [f"### Corpus `{scores.name}`: {scores.flows} flows", ""]
    lines += [head[0].format("subjects named"), head[1], _row("(flow, subject) pairs", scores.subjects), ""]
    lines += [head[0].format("category"), head[1]]
    total = Counter()
    for category, c in sorted(scores.categories.items()):
        lines.append(_row(category, c))
        total.update(c)
    lines += [_row("**all categories**", total), ""]
    lines += [head[0].format("rule"), head[1]]
    total = Counter()
    for rule, c in sorted(scores.rules.items()):
        lines.append(_row(f"`{rule}`", c))
        total.update(c)
    lines += [_row("**all violations**", total), ""]
    for title, rows in (("Misses", scores.misses), ("False alarms", scores.false_alarms)):
        lines.append(f"{title} ({len(rows)}):" if rows else f"{title}: none.")
        lines += [f"- flow {index}: {what} — {why}" for index, what, why in rows[:60]]
        if len(rows) > 60:
            lines.append(f"- ... and {len(rows) - 60} more")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small detection corpus")
    parser.add_argument("--sdk-only", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    reports = [markdown(score("sdk", *sdk_corpus()))]
    if not args.sdk_only:
        reports.append(markdown(score("detection", *detection_corpus(args.small),
                                      ignore_categories=UNLABELLED_IN_DETECTION)))
    report = "\n".join(reports)
    print(report)
    if not args.no_write and not args.sdk_only:
        command = "python bench/sdk_corpus/score.py" + (" --small" if args.small else "")
        (HERE / "RESULTS.md").write_text(f"# Verdicts per corpus\n\nMade by `{command}`.\n\n{report}")


if __name__ == "__main__":
    main()
