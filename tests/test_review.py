"""Reviewing a real log: `report`, `violations`, `show`, `subject`, `forget`, `purge`, `map`,
`replay --baseline`, `merge`, each in a real process on a log made by replaying captures/.

Expected values come from captures/expected.json (written by hand beside each case), the
policy and the registry; every command's output is searched for every registry identifier
in every form (test_cli.identifier_forms)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from test_cli import ROOT, identifier_forms, registry_values

CASES = json.loads((ROOT / "captures" / "expected.json").read_text())
POLICY = str(ROOT / "policies")
SUBJECTS = {s["id"]: s for s in yaml.safe_load((ROOT / "policies" / "subjects.yaml").read_text())["subjects"]}
FORMS = {form.lower() for value in registry_values() for form in identifier_forms(value)}


def expected_rules(cases: list[dict] = CASES) -> Counter[str]:
    return Counter(rule for case in cases for rule in case["rules"])


def case_key(source: str) -> tuple[str, int]:
    """A flow's case in expected.json, from the log's `source` (file#index)."""
    path, _, index = source.rpartition("#")
    return Path(path).name, int(index)


def expected_violations(cases: list[dict] = CASES) -> set[tuple[tuple[str, int], str]]:
    return {((c["file"], c["index"]), rule) for c in cases for rule in c["rules"]}


def violations_in(db: sqlite3.Connection) -> set[tuple[tuple[str, int], str]]:
    return {(case_key(source), rule) for source, rule in db.execute(
        "select f.source, v.rule from violations v join flows f on f.id = v.flow_id")}


def assert_no_identifier(text: str, where: str) -> None:
    lowered = text.lower()
    assert [f for f in FORMS if f in lowered] == [], where


def gdpr(*args: str, cwd: Path, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console script in a real process; its output never holds a registry identifier."""
    result = subprocess.run(
        [sys.executable, "-m", "gdpr_audit", *args], cwd=cwd, capture_output=True, text=True,
        timeout=300, input=stdin,
        env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin", "COLUMNS": "250",
             **(env or {})})
    assert_no_identifier(result.stdout + result.stderr, " ".join(args[:1]))
    return result


def section(stdout: str, title: str) -> list[list[str]]:
    """The rows of one plain-text table (`# title`, a header line, tab-separated rows)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {title}"))
    body = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        body.append(line.split("\t"))
    return body


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("review")
    result = gdpr("replay", str(ROOT / "captures"), "--policy", POLICY, "--db", "audit.db", cwd=work)
    assert result.returncode == 1, result.stderr
    return work / "audit.db"


@pytest.fixture
def copy(log: Path, tmp_path: Path) -> Path:
    """A log of one's own to change."""
    for path in log.parent.glob("audit.db*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "audit.db"


def test_report_counts_violations_by_rule_and_subject(log: Path) -> None:
    result = gdpr("report", "--db", str(log), cwd=log.parent)
    assert result.returncode == 0, result.stderr
    by_rule = {row[0]: int(row[2]) for row in section(result.stdout, "Violations by rule")}
    assert by_rule == expected_rules()
    by_subject = {row[0]: int(row[1]) for row in section(result.stdout, "Violations by subject")}
    assert by_subject["cust-003"] == sum(len(c["rules"]) for c in CASES if c["subjects"] == ["cust-003"])
    assert by_subject["cust-005"] == sum(len(c["rules"]) for c in CASES if c["subjects"] == ["cust-005"])
    runs = section(result.stdout, "Runs")
    assert [(r[0], r[3], r[4]) for r in runs] == [("1", str(len(CASES)), str(sum(expected_rules().values())))]
    categories = {row[0] for row in section(result.stdout, "Violations by category")}
    assert {"iban", "national_id", "payment_card", "email"} <= categories


@pytest.mark.parametrize(("filters", "cases", "rules"), [
    (["--rule", "pii-in-url"], CASES, {"pii-in-url"}),
    (["--recipient", "HubSpot"], [c for c in CASES if c["host"] == "api.hubapi.com"], None),
    (["--recipient", "api.stripe.com"], [c for c in CASES if c["host"] == "api.stripe.com"], None),
    # the SPEC's default severities: clear-text, undeclared-recipient, missing-consent,
    # erased-subject and sensitive-data are high
    (["--severity", "high"], CASES, {"clear-text", "undeclared-recipient", "missing-consent",
                                     "erased-subject", "sensitive-data"}),
    (["--since", "2026-06-15T10:08:00+00:00"], [c for c in CASES if c["file"] == "browser.har"], None),
    (["--subject", "cust-009"], [c for c in CASES if c["subjects"] == ["cust-009"]], None),
    (["--run", "1", "--rule", "erased-subject"], CASES, {"erased-subject"}),
    (["--run", "2"], [], None),
])
def test_violations_filters(log: Path, filters: list[str], cases: list[dict],
                            rules: set[str] | None) -> None:
    result = gdpr("violations", "--db", str(log), *filters, cwd=log.parent)
    assert result.returncode == 0, result.stderr
    listed = section(result.stdout, "")
    expected = Counter({r: n for r, n in expected_rules(cases).items() if rules is None or r in rules})
    assert Counter(row[3] for row in listed) == expected
    assert result.stdout.splitlines()[0] == f"# {sum(expected.values())} violations"


def test_bad_filter_is_a_clear_error(log: Path) -> None:
    result = gdpr("violations", "--db", str(log), "--since", "last tuesday", cwd=log.parent)
    assert result.returncode == 2 and "--since" in result.stderr and "last tuesday" in result.stderr


def test_show_one_violation_in_full(log: Path) -> None:
    listed = gdpr("violations", "--db", str(log), "--rule", "sensitive-data", "--recipient",
                  "Salesforce", cwd=log.parent)
    (row,) = section(listed.stdout, "")
    result = gdpr("show", row[0], "--db", str(log), "--policy", POLICY, cwd=log.parent)
    assert result.returncode == 0, result.stderr
    fields = {r[0]: r[1] for r in section(result.stdout, f"Violation {row[0]}")}
    case = next(c for c in CASES if c["name"] == "salesforce-contact-nir")
    assert fields["request"].startswith(f"{case['method']} https://{case['host']}/services/data/")
    assert fields["flow"] == case["flow_id"]
    assert fields["subjects"] == "cust-008"
    assert "Payment cards, bank accounts, national ids and credentials" in fields["rule"]
    assert fields["policy entry"] == "recipients[Salesforce]"
    # the entry's declared data, as policies/policy.yaml lists it
    declared = next(r for r in yaml.safe_load((ROOT / "policies" / "policy.yaml").read_text())["recipients"]
                    if r["name"] == "Salesforce")["data"]
    assert fields["  declared data"] == ", ".join(sorted(declared))
    evidence = section(result.stdout, "Evidence")
    assert [(e[0], e[1], e[3]) for e in evidence] == [("national_id", "cust-008", "body")]
    assert evidence[0][4] and "*" in evidence[0][6]  # a field path, a masked value
    missing = gdpr("show", "9999", "--db", str(log), cwd=log.parent)
    assert missing.returncode == 2 and "no violation 9999" in missing.stderr


def flows_of(subject: str) -> set[str]:
    return {c["flow_id"] for c in CASES if subject in c["subjects"]}


def requests_listed(stdout: str) -> list[list[str]]:
    return section(stdout, "Requests")


@pytest.mark.parametrize("identifier", [
    SUBJECTS["cust-001"]["identifiers"]["email"],
    " MARIE.DUPONT@example.FR ",                    # the same email, spelled otherwise
    "+33 6 12 34 56 78",                            # her phone, national spacing
    "cust-001",                                     # her registry id
])
def test_subject_access_finds_every_request_of_that_person(log: Path, identifier: str) -> None:
    result = gdpr("subject", identifier, "--db", str(log), "--policy", POLICY, cwd=log.parent)
    assert result.returncode == 0, result.stderr
    expected_hosts = Counter(c["host"] for c in CASES if "cust-001" in c["subjects"])
    assert Counter(r[2] for r in requests_listed(result.stdout)) == expected_hosts
    assert result.stdout.startswith("cust-001: ")
    kinds = {r[0]: r[1] for r in section(result.stdout, "Recipients")}
    assert kinds["HubSpot"] == "declared" and kinds["Boutique Exemple SAS"] == "first_party"


def test_subject_access_through_fingerprints_alone(log: Path, tmp_path: Path) -> None:
    """Without the registry, only the keyed fingerprint of the email links the flows."""
    result = gdpr("subject", "-", "--db", str(log), "--policy", str(ROOT / "policies" / "policy.yaml"),
                  cwd=tmp_path, stdin="marie.dupont@example.fr\n")
    assert result.returncode == 0, result.stderr
    # the requests of cust-001 that carry her email (captures/generate.py): HubSpot, the
    # Mailchimp hash in a path, Brevo's lookup, Meta CAPI (hashed), TikTok, the Meta pixel
    assert {r[2] for r in requests_listed(result.stdout)} == {
        "api.hubapi.com", "us21.api.mailchimp.com", "api.brevo.com", "graph.facebook.com",
        "business-api.tiktok.com", "www.facebook.com"}
    nobody = gdpr("subject", "nobody@example.org", "--db", str(log), "--policy", POLICY, cwd=tmp_path)
    assert nobody.returncode == 0 and "Nothing in this log" in nobody.stdout


def consistency(db: sqlite3.Connection) -> None:
    assert db.execute("pragma foreign_key_check").fetchall() == []
    assert db.execute("""select count(*) from flows where violations !=
                         (select count(*) from violations where flow_id = flows.id)""").fetchone() == (0,)
    assert db.execute("""select count(*) from runs where violations !=
                         (select count(*) from violations where run_id = runs.id) or flows !=
                         (select count(*) from flows where run_id = runs.id)""").fetchone() == (0,)


def test_forget_erases_the_person_and_only_the_violations_resting_on_them(copy: Path) -> None:
    with sqlite3.connect(copy) as db:
        fingerprints = {r[0] for r in db.execute("select fingerprint from findings where subject = 'cust-001'")}
        before = db.execute("select count(*) from violations").fetchone()[0]
    assert fingerprints
    result = gdpr("forget", SUBJECTS["cust-001"]["identifiers"]["phone"], "--db", str(copy),
                  "--policy", POLICY, cwd=copy.parent)
    assert result.returncode == 0, result.stderr
    # by construction, these violations of cust-001's flows rest on her identifiers alone
    gone = {(key, r) for key, r in expected_violations([c for c in CASES if c["subjects"] == ["cust-001"]])
            if r in ("pii-in-url", "excess-data")}
    assert len(gone) == 4
    removed = section(result.stdout, "Violations removed")
    assert sorted(r[1] for r in removed) == sorted(r for _, r in gone)
    with sqlite3.connect(copy) as db:
        assert db.execute("select count(*) from violations").fetchone()[0] == before - len(gone)
        assert violations_in(db) == expected_violations() - gone
        for table, column in (("findings", "subject"), ("violations", "subjects"),
                              ("violations", "subject"), ("violations", "message")):
            assert db.execute(f"select count(*) from {table} where {column} like '%cust-001%'"
                              ).fetchone() == (0,), (table, column)
        consistency(db)
    # gone from the disk too, not only from the tables
    disk = b"".join(p.read_bytes() for p in copy.parent.glob("audit.db*") if not p.name.endswith(".key"))
    assert [f for f in fingerprints if f.encode() in disk] == []
    again = gdpr("subject", "cust-001", "--db", str(copy), "--policy", POLICY, cwd=copy.parent)
    assert "Nothing in this log" in again.stdout


def test_forget_keeps_a_violation_that_rests_on_someone_else_too(copy: Path) -> None:
    with sqlite3.connect(copy) as db:
        # make one finding of another person part of cust-006's zapier violation
        (violation,) = db.execute("""select id from violations where rule = 'sensitive-data'
                                     and subjects = 'cust-006' and host = 'hooks.zapier.com'""").fetchone(),
        other = db.execute("select id from findings where subject = 'cust-009' limit 1").fetchone()[0]
        db.execute("insert into violation_findings values (?, ?)", [violation[0], other])
    result = gdpr("forget", "cust-006", "--db", str(copy), "--policy", POLICY, cwd=copy.parent)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(copy) as db:
        row = db.execute("select subjects, subject, evidence from violations where id = ?",
                         [violation[0]]).fetchone()
        assert row[0] == "cust-009" and row[1] == "cust-009" and "*" in row[2]
        consistency(db)


def test_purge_removes_what_is_older_than_the_duration(copy: Path) -> None:
    now = datetime.now(UTC)
    old, recent = (now - timedelta(days=40)).isoformat(), (now - timedelta(days=10)).isoformat()
    with sqlite3.connect(copy) as db:
        db.execute("update flows set timestamp = ? where source like '%backend.flow#%'", [old])
        db.execute("update flows set timestamp = ? where source like '%browser.har#%'", [recent])
        db.execute("insert into runs (started, command, flows, violations, errors) "
                   "values (?, 'an old run', 0, 0, 0)", [(now - timedelta(days=60)).isoformat()])
    bad = gdpr("purge", "--older-than", "30 days", "--db", str(copy), cwd=copy.parent)
    assert bad.returncode == 2 and "30d, 12h or 2w" in bad.stderr
    result = gdpr("purge", "--older-than", "4w", "--db", str(copy), cwd=copy.parent)  # 28 days
    assert result.returncode == 0, result.stderr
    backend = [c for c in CASES if c["file"] == "backend.flow"]
    assert f"{len(backend)} flows" in result.stdout and "1 runs" in result.stdout
    with sqlite3.connect(copy) as db:
        assert db.execute("select count(*) from flows").fetchone()[0] == len(CASES) - len(backend)
        assert db.execute("select count(*) from violations").fetchone()[0] == \
            sum(expected_rules(CASES).values()) - sum(expected_rules(backend).values())
        assert [r[0] for r in db.execute("select command from runs")] == [
            f"replay {ROOT / 'captures'}"]
        consistency(db)
    nothing = gdpr("purge", "--older-than", "480h", "--db", str(copy), cwd=copy.parent)  # 20 days
    assert "0 flows" in nothing.stdout


def test_map_sets_observed_recipients_beside_the_policy(log: Path, tmp_path: Path) -> None:
    result = gdpr("map", "--db", str(log), "--policy", POLICY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r[0]: r for r in section(result.stdout, "Recipients x categories x purposes")}
    undeclared_hosts = {c["host"] for c in CASES if "undeclared-recipient" in c["rules"]}
    assert {host for r in rows.values() if r[1] == "undeclared" for host in r[2].split(", ")} == undeclared_hosts
    # excess-data and sensitive-data cases, by construction: categories a declared recipient
    # received without being declared for them
    assert "postal_address" in rows["HubSpot"][6].split(", ")
    assert "national_id" in rows["Salesforce"][6].split(", ")
    assert rows["Stripe"][6] == "iban"
    assert rows["Boutique Exemple SAS"][1] == "first party"
    # undeclared hosts are named: who owns them (the vendor register, captures' hosts)
    who = {r[2]: r[8] for r in rows.values() if r[1] == "undeclared"}
    assert who["sslwidget.criteo.com"].startswith("Criteo") and ", FR," in who["sslwidget.criteo.com"]
    assert who["hooks.zapier.com"].startswith("Zapier")
    assert "Observed, undeclared recipients: " in result.stdout


def test_map_documents_escape_text_from_the_log(copy: Path) -> None:
    hostile = "<script>alert(1)</script>|**x**[a](http://evil.example)"
    with sqlite3.connect(copy) as db:
        db.execute("update flows set recipient = ? where host = 'hooks.zapier.com'", [hostile])
    md, page = copy.parent / "map.md", copy.parent / "map.html"
    for fmt, path in (("md", md), ("html", page)):
        result = gdpr("map", "--db", str(copy), "--policy", POLICY, "--format", fmt,
                      "--output", str(path), cwd=copy.parent)
        assert result.returncode == 0, result.stderr
        assert_no_identifier(path.read_text(), fmt)
    html_text = page.read_text()
    assert "<script>" not in html_text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert '<tr class="undeclared">' in html_text
    md_text = md.read_text()
    assert "<script>" not in md_text and "](http" not in md_text
    row = next(line for line in md_text.splitlines() if "alert" in line)
    assert row.count(" | ") == 8  # the hostile | did not add a column
    assert "## Observed, undeclared recipients" in md_text


def test_hostile_text_is_neutralised_in_rich_output(copy: Path) -> None:
    evil = "[bold red]Evil[/bold red]\x1b[31mRED\x1b]8;;http://evil.example\x07link:smile:"
    with sqlite3.connect(copy) as db:
        db.execute("update violations set recipient = ?, message = ? where id = 1", [evil, evil])
    terminal = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    for command in (["violations"], ["report"], ["show", "1"]):
        result = gdpr(*command, "--db", str(copy), cwd=copy.parent, env=terminal)
        assert result.returncode == 0, result.stderr
        assert "━" in result.stdout or "─" in result.stdout, "a rich table on a terminal"
        assert "\x1b[31mRED" not in result.stdout and "\x1b]8;;" not in result.stdout
        assert "\x07" not in result.stdout and "😃" not in result.stdout
        # shown as written (a narrow column may wrap it), and the ESC as a visible escape
        assert "[bold red]Evil[/bold" in result.stdout and "\\x1b[31mRED" in result.stdout, command
        assert "link:smile:" in result.stdout
    piped = gdpr("violations", "--db", str(copy), cwd=copy.parent)
    assert "━" not in piped.stdout and "\x1b" not in piped.stdout


def replay(capture: str, db: Path, *extra: str, key: str = "shard-key",
           expect: int = 1) -> subprocess.CompletedProcess[str]:
    result = gdpr("replay", str(ROOT / "captures" / capture), "--policy", POLICY, "--db", str(db),
                  *extra, cwd=db.parent, env={"GDPR_AUDIT_KEY": key})
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def test_baseline_fails_only_on_new_violations(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    replay("backend.flow", tmp_path / "a.db", "--write-baseline", str(baseline))
    document = json.loads(baseline.read_text())
    fingerprints = [v["fingerprint"] for v in document["violations"]]
    assert fingerprints == sorted(fingerprints)
    backend = [c for c in CASES if c["file"] == "backend.flow"]
    # one entry per fingerprint: the two HubSpot upserts without consent (backend.flow #1 and
    # #2) are the same request shape breaking the same rule
    assert Counter(v["rule"] for v in document["violations"]) == \
        expected_rules(backend) - Counter({"missing-consent": 1})
    assert {"HubSpot", "Salesforce"} <= {v["recipient"] for v in document["violations"]}
    # another run, another machine's key, another folder: the same fingerprints
    other = tmp_path / "elsewhere"
    other.mkdir()
    replay("backend.flow", other / "b.db", "--baseline", str(baseline), key="another-key", expect=0)
    result = replay(".", tmp_path / "c.db", "--baseline", str(baseline))
    browser = [c for c in CASES if c["file"] == "browser.har"]
    new = [line for line in result.stdout.splitlines() if line.startswith("  new: ")]
    assert Counter(line.split()[1] for line in new) == expected_rules(browser)
    replay(".", tmp_path / "c.db", "--baseline", str(baseline), "--fail-on", "high", expect=1)
    broken = tmp_path / "broken.json"
    broken.write_text('{"violations": [\n  {"fingerprint": 1}]}')
    result = replay(".", tmp_path / "d.db", "--baseline", str(broken), expect=2)
    assert str(broken) in result.stderr and "not a baseline" in result.stderr
    assert not (tmp_path / "d.db").exists()  # refused before any work


def test_merge_combines_sharded_logs(tmp_path: Path) -> None:
    replay("backend.flow", tmp_path / "shard1.db")
    replay("browser.har", tmp_path / "shard2.db")
    out = tmp_path / "merged.db"
    env = {"GDPR_AUDIT_KEY": "shard-key"}
    result = gdpr("merge", str(out), str(tmp_path / "shard1.db"), str(tmp_path / "shard2.db"),
                  str(tmp_path / "shard1.db"), cwd=tmp_path, env=env)  # a shard twice: upserted
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(out) as db:
        assert db.execute("select count(*) from flows").fetchone()[0] == len(CASES)
        assert Counter(r[0] for r in db.execute("select rule from violations")) == expected_rules()
        assert db.execute("select count(*) from runs").fetchone()[0] == 3
        assert violations_in(db) == expected_violations()
        assert db.execute("select count(*) from violation_findings").fetchone()[0] > 0
        consistency(db)
    # the merged log is a log like any other, with the shards' key
    report = gdpr("report", "--db", str(out), cwd=tmp_path, env=env)
    assert {r[0]: int(r[2]) for r in section(report.stdout, "Violations by rule")} == expected_rules()
    subject = gdpr("subject", "cust-003", "--db", str(out), "--policy", POLICY, cwd=tmp_path, env=env)
    assert {r[2] for r in requests_listed(subject.stdout)} == {
        c["host"] for c in CASES if "cust-003" in c["subjects"]}


def test_merge_refuses_logs_with_different_keys(tmp_path: Path) -> None:
    replay("backend.flow", tmp_path / "one.db", key="key-one")
    replay("browser.har", tmp_path / "two.db", key="key-two")
    result = gdpr("merge", str(tmp_path / "out.db"), str(tmp_path / "one.db"), str(tmp_path / "two.db"),
                  cwd=tmp_path)
    assert result.returncode == 2
    assert "different fingerprint keys" in result.stderr
    assert "one.db" in result.stderr and "two.db" in result.stderr
    assert not (tmp_path / "out.db").exists()
    itself = gdpr("merge", str(tmp_path / "one.db"), str(tmp_path / "one.db"), cwd=tmp_path)
    assert itself.returncode == 2 and "cannot also be one of the inputs" in itself.stderr


def test_merge_without_a_shared_key_copies_the_shards_key_file(tmp_path: Path) -> None:
    first = gdpr("replay", str(ROOT / "captures" / "backend.flow"), "--policy", POLICY,
                 "--db", "a.db", cwd=tmp_path)
    assert first.returncode == 1
    shutil.copy(tmp_path / "a.db.key", tmp_path / "b.db.key")
    gdpr("replay", str(ROOT / "captures" / "browser.har"), "--policy", POLICY, "--db", "b.db",
         cwd=tmp_path)
    result = gdpr("merge", "m.db", "a.db", "b.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.db.key").read_text() == (tmp_path / "a.db.key").read_text()
    assert os.stat(tmp_path / "m.db.key").st_mode & 0o077 == 0
    access = gdpr("subject", "cust-001", "--db", "m.db", "--policy", POLICY, cwd=tmp_path)
    assert len(requests_listed(access.stdout)) == len(flows_of("cust-001"))


def test_rights_need_the_logs_key_and_never_make_a_new_one(copy: Path) -> None:
    (copy.parent / "audit.db.key").unlink()
    for command in ("subject", "forget"):
        result = gdpr(command, "cust-001", "--db", str(copy), "--policy", POLICY, cwd=copy.parent)
        assert result.returncode == 2 and "audit.db.key" in result.stderr
        assert not (copy.parent / "audit.db.key").exists()
    # retention needs no key: nothing in it is looked up by person
    purged = gdpr("purge", "--older-than", "1h", "--db", str(copy), cwd=copy.parent)
    assert purged.returncode == 0, purged.stderr
