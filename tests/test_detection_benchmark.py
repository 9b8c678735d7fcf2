"""The detection benchmark (bench/detection), small version, against issue 4's bars.

Strategy: make_corpus.py writes real mitmproxy flows and labels them from what it inserted
(it never imports gdpr_audit, so no label comes from a detector); run.py audits the flows with
the Auditor and scores them. The bars: recall >= 0.98 for registry identifiers at every depth
of encoding up to 3 layers and in every encoding, precision >= 0.98 for flagged flows, and no
checksum-invalid IBAN, card or NIR reported as one.
"""

import ast
import sys
from collections import Counter

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench" / "detection"))
import make_corpus  # noqa: E402
import run  # noqa: E402


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict:
    corpus = tmp_path_factory.mktemp("corpus")
    make_corpus.write(corpus, small=True)
    return run.score(*run.audit(corpus))


def test_labels_never_come_from_the_code_under_test() -> None:
    tree = ast.parse((ROOT / "bench" / "detection" / "make_corpus.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name and name.startswith("gdpr_audit") for name in imported)


def test_the_corpus_covers_every_encoding_depth_and_negative(scores: dict) -> None:
    assert set(scores["layer"]) == set(make_corpus.ENCODINGS)
    assert {0, 1, 2, 3} <= set(scores["depth"])
    assert scores["flows"]["tn"] + scores["flows"]["fp"] >= 30


def recall(counter: Counter) -> float:
    return counter["found"] / (counter["found"] + counter["missed"])


def test_registry_identifiers_found_at_every_depth_and_in_every_encoding(scores: dict) -> None:
    for depth, counts in scores["depth"].items():
        assert recall(counts) >= 0.98, (depth, counts, scores["misses"])
    for layer, counts in scores["layer"].items():
        assert recall(counts) >= 0.98, (layer, counts, scores["misses"])
    registry = Counter()
    for (_, whose), counts in scores["category"].items():
        if whose == "registry":
            registry.update(counts)
    assert recall(registry) >= 0.98, scores["misses"]


def test_flagged_flows_are_precise(scores: dict) -> None:
    flows = scores["flows"]
    assert flows["tp"] / (flows["tp"] + flows["fp"]) >= 0.98, scores["false_flags"]
    assert flows["tp"] / (flows["tp"] + flows["fn"]) >= 0.98, scores["misses"]


def test_checksum_invalid_values_are_never_reported_as_such(scores: dict) -> None:
    assert scores["checksum_errors"] == []


def test_markdown_report_has_every_table(scores: dict) -> None:
    report = run.markdown(scores)
    for heading in ("| flows |", "| category |", "| encoding", "| layer,", "| rule |"):
        assert heading in report


VENDOR_HASHES = ("md5", "sha1", "sha256", "sha512", "sha256+salt")


def is_research_hash(encoding: str) -> bool:
    """A label's encoding (`sha3_224/base64 + url`, `md5>sha256`) of the research set only."""
    name = encoding.split(" + ")[0].partition("/")[0]
    return name in make_corpus.HASHES and name not in VENDOR_HASHES or ">" in name


def test_the_default_hash_scope_misses_only_research_hashes(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without `detection: {hashes: research}`, the chains and the papers' other hashes are
    missed, and only they: plain, encoded and vendor-hashed identifiers keep their recall."""
    corpus = tmp_path_factory.mktemp("vendor")
    make_corpus.write(corpus, small=True, hashes="vendor")
    labels, audits = run.audit(corpus)
    vendor = run.score(labels, audits)
    research_items = [item for label in labels for item in label["truth"]
                      if is_research_hash(item.get("encoding", ""))]
    assert research_items  # the corpus has them
    others = Counter()
    for family, counts in vendor["encoding"].items():  # `md2 (hex)`, `hash chain (base64)`
        name = family.split(" (")[0]
        if name != "hash chain" and not is_research_hash(name):
            others.update(counts)
    assert recall(others) >= 0.98, [m for m in vendor["misses"] if not is_research_hash(m[2])]
    assert all(is_research_hash(miss[2]) for miss in vendor["misses"]), vendor["misses"]
    assert vendor["flows"]["fp"] == 0 or vendor["flows"]["tp"] / (
        vendor["flows"]["tp"] + vendor["flows"]["fp"]) >= 0.98
