"""Audit the labelled corpus with gdpr_audit's Auditor and report precision and recall per
category, per encoding and per rule, as Markdown (stdout and bench/detection/RESULTS.md).

    python bench/detection/run.py [CORPUS_DIR] [--small] [--no-write]

Without CORPUS_DIR a fresh corpus is written to a temporary folder by make_corpus.py.
Definitions:
  * a flow is *flagged* when the audit reports an identifying finding (any category but
    behavioural, purchase, location); it *should* be flagged when anything was inserted;
  * an inserted registry identifier is *found* when a finding of its category names its
    subject; an unknown person's when a finding of its category is there;
  * a finding is *right* when its flow holds an inserted item of that category (and, when it
    names a subject, that subject);
  * a rule's expected flows are written by make_corpus.py from what each flow carries.
"""

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_corpus  # noqa: E402

from gdpr_audit.audit import CONTEXTUAL, Auditor  # noqa: E402
from gdpr_audit.captures import CaptureReader  # noqa: E402
from gdpr_audit.policy import load_policy  # noqa: E402

CHECKSUMMED = ("iban", "payment_card", "national_id")


def audit(corpus: Path) -> tuple[list[dict], dict]:
    labels = json.loads((corpus / "labels.json").read_text())
    auditor = Auditor(load_policy(corpus / "policy.yaml"))
    reader = CaptureReader([str(corpus / "corpus.flow")])
    audits = {flow.id: auditor.audit(flow) for flow, _ in reader.flows()}
    if reader.errors:
        raise SystemExit(f"corpus unreadable: {reader.errors}")
    return labels, audits


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def score(labels: list[dict], audits: dict) -> dict:
    """Every number the report shows, as plain data (the test asserts on it)."""
    flows = Counter()
    by_category = defaultdict(Counter)
    by_encoding = defaultdict(Counter)
    by_layer = defaultdict(Counter)
    by_depth = defaultdict(Counter)
    by_rule = defaultdict(Counter)
    misses, false_flags, checksum_errors = [], [], []
    for label in labels:
        result = audits[label["flow_id"]]
        findings = [f for f in result.findings if f.category not in CONTEXTUAL]
        flagged, positive = bool(findings), bool(label["truth"])
        flows["tp" if flagged and positive else "fp" if flagged else
              "fn" if positive else "tn"] += 1
        if flagged and not positive:
            false_flags.append((label["index"], label.get("negative"),
                                sorted({(f.category, f.detector, f.form) for f in findings})))
        if not positive:
            checksum_errors += [(label["index"], label.get("negative"), f.category)
                                for f in findings if f.category in CHECKSUMMED]
        named = {(f.category, f.subject) for f in findings}
        categories_found = {f.category for f in findings}
        for item in label["truth"]:
            # A quasi-identifier of a subject names nobody by itself (SPEC 3.7): found for no one.
            whose = item["subject"] if item.get("names", True) else None
            found = ((item["category"], whose) in named if item["subject"]
                     else item["category"] in categories_found)
            outcome = "found" if found else "missed"
            kind = "registry" if item["subject"] else "unknown person"
            by_category[(item["category"], kind)][outcome] += 1
            by_encoding[_encoding_family(item)][outcome] += 1
            layers = item.get("layers", [])
            for layer in set(layers):
                by_layer[layer][outcome] += 1
            if label["kind"] == "registry":
                by_depth[len(layers)][outcome] += 1
            if not found:
                misses.append((label["index"], item["category"], item["encoding"],
                               label["container"]))
        truth = {(i["category"], i["subject"]) for i in label["truth"]}
        truth_categories = {i["category"] for i in label["truth"]}
        for finding in findings:
            right = (finding.category, finding.subject) in truth or (
                finding.subject is None and finding.category in truth_categories)
            kind = "registry" if finding.subject else "unknown person"
            by_category[(finding.category, kind)]["right" if right else "wrong"] += 1
        fired = {v.rule for v in result.violations}
        for rule in fired | set(label["rules"]):
            expected, got = rule in label["rules"], rule in fired
            by_rule[rule]["tp" if expected and got else "fp" if got else "fn"] += 1
    return {"flows": flows, "category": by_category, "encoding": by_encoding, "layer": by_layer,
            "depth": by_depth, "rule": by_rule, "misses": misses, "false_flags": false_flags,
            "checksum_errors": checksum_errors, "count": len(labels)}


def _encoding_family(item: dict) -> str:
    """`sha256>md5/base64 + url` -> `hash chain (base64)`; `url + hex` -> `2 layers`."""
    head = item["encoding"].split(" + ")[0]
    name, _, style = head.partition("/")
    if name in make_corpus.HASHES or ">" in name:
        return f"{'hash chain' if '>' in name else name} ({style or 'hex'})"
    if name in ("plain", "split-fields", "keystroke", "sha256+salt", "sha256(gmail-normalised)"):
        return name
    depth = len(item.get("layers", []))
    return f"{depth} layer{'s' if depth > 1 else ''}"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(scores: dict) -> str:
    flows = scores["flows"]
    lines = [f"Corpus: {scores['count']} flows "
             f"({flows['tp'] + flows['fn']} carrying personal data, "
             f"{flows['fp'] + flows['tn']} tempting negatives).", ""]
    precision = ratio(flows["tp"], flows["tp"] + flows["fp"])
    recall = ratio(flows["tp"], flows["tp"] + flows["fn"])
    lines += ["| flows | flagged right | flagged wrongly | missed | precision | recall |",
              "|---|---:|---:|---:|---:|---:|",
              f"| all | {flows['tp']} | {flows['fp']} | {flows['fn']} | {_fmt(precision)} | "
              f"{_fmt(recall)} |", ""]
    lines += ["| category | whose | inserted | found | recall | findings | right | precision |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (category, kind), c in sorted(scores["category"].items()):
        inserted = c["found"] + c["missed"]
        reported = c["right"] + c["wrong"]
        lines.append(f"| {category} | {kind} | {inserted} | {c['found']} | "
                     f"{_fmt(ratio(c['found'], inserted))} | {reported} | {c['right']} | "
                     f"{_fmt(ratio(c['right'], reported))} |")
    lines += ["", "| encoding (registry and unknown identifiers) | inserted | found | recall |",
              "|---|---:|---:|---:|"]
    for name, c in sorted(scores["encoding"].items()):
        total = c["found"] + c["missed"]
        lines.append(f"| {name} | {total} | {c['found']} | {_fmt(ratio(c['found'], total))} |")
    lines += ["", "| layer, in any position of a chain | inserted | found | recall |",
              "|---|---:|---:|---:|"]
    for name, c in sorted(scores["layer"].items()):
        total = c["found"] + c["missed"]
        lines.append(f"| {name} | {total} | {c['found']} | {_fmt(ratio(c['found'], total))} |")
    lines += ["", "| registry identifiers, layers deep | inserted | found | recall |",
              "|---|---:|---:|---:|"]
    for depth, c in sorted(scores["depth"].items()):
        total = c["found"] + c["missed"]
        lines.append(f"| {depth} | {total} | {c['found']} | {_fmt(ratio(c['found'], total))} |")
    lines += ["", "| rule | expected | fired right | fired wrongly | missed | precision | recall |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for rule, c in sorted(scores["rule"].items()):
        lines.append(f"| {rule} | {c['tp'] + c['fn']} | {c['tp']} | {c['fp']} | {c['fn']} | "
                     f"{_fmt(ratio(c['tp'], c['tp'] + c['fp']))} | "
                     f"{_fmt(ratio(c['tp'], c['tp'] + c['fn']))} |")
    lines += ["", f"Checksum-invalid IBAN, card or NIR values reported as such: "
                  f"{len(scores['checksum_errors'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?")
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--misses", action="store_true", help="list misses and false flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        corpus = args.corpus or Path(scratch)
        if args.corpus is None:
            make_corpus.write(corpus, args.small)
        scores = score(*audit(corpus))
    report = markdown(scores)
    print(report)
    if args.misses:
        for miss in scores["misses"]:
            print("missed", miss)
        for flag in scores["false_flags"]:
            print("false flag", flag)
    if not args.no_write:
        command = "python bench/detection/run.py" + (" --small" if args.small else "")
        (HERE / "RESULTS.md").write_text(f"# Detection benchmark\n\nMade by `{command}`.\n\n{report}")


if __name__ == "__main__":
    main()
