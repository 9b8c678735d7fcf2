"""What `replay` says about its violations: on the terminal, and to GitHub Actions and GitLab CI.

Strategy: run the real command as a subprocess on the bundled captures (whose violations are
known by construction) and compare what it prints with the log it wrote, read with sqlite3;
under GITHUB_ACTIONS=true, parse the workflow commands it emits and the Markdown it appends to
a temporary $GITHUB_STEP_SUMMARY. The ready-to-copy CI files in docs/ci/ are parsed as YAML and
every `gdpr-audit` command and option they run is checked against the CLI's own --help."""

import os
import re
import shlex
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from gdpr_audit.listing import SHOWN, workflow_data, workflow_property
from test_cli import CLI, ROOT

RAW_VALUES = ("marie.dupont@example.fr", "+33612345678", "Marie Dupont", "C-1001")


def replay(work: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
         "--db", str(work / "audit.db")], cwd=work, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin", "COLUMNS": "200",
             **(env or {})})


def logged(db: Path) -> list[tuple]:
    """The run's violations, most severe first, as the listing orders them."""
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select v.id, v.rule, v.severity, coalesce(v.recipient, v.host), f.method, f.host, "
            "f.path, v.categories, v.subjects, v.message from violations v "
            "join flows f on f.id = v.flow_id order by case v.severity when 'high' then 0 "
            "when 'medium' then 1 else 2 end, v.id").fetchall()


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("listing")
    result = replay(work)
    assert result.returncode == 1, result.stderr
    return work, result.stdout


@pytest.fixture(scope="module")
def github_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    work = tmp_path_factory.mktemp("github")
    summary = work / "step-summary.md"
    summary.write_text("## An earlier step's summary\n\n", encoding="utf-8")
    result = replay(work, {"GITHUB_ACTIONS": "true", "CI": "true",
                           "GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 1, result.stderr
    return work, result.stdout, summary.read_text(encoding="utf-8")


def test_replay_prints_the_first_violations_and_how_many_more(plain_run) -> None:
    work, out = plain_run
    rows = logged(work / "audit.db")
    assert len(rows) > SHOWN  # the samples have more than a screenful on purpose
    assert f"Violations: the first {SHOWN} of {len(rows)}, most severe first" in out
    for vid, rule, severity, recipient, method, host, path, categories, subjects, message \
            in rows[:SHOWN]:
        count = len(subjects.split(", ")) if subjects else 0
        head = f"#{vid} [{severity}] {rule} to {recipient}: {method} {host}{path}"
        assert head in out, head
        detail = (f"data: {categories}; subjects: {count}; why: {message}")
        assert detail in out.replace("\n      ", " "), detail
    for vid, *_ in rows[SHOWN:]:
        assert f"#{vid} [" not in out
    assert f"and {len(rows) - SHOWN} more: gdpr-audit violations --db" in out
    assert not any(value in out for value in RAW_VALUES)


def test_replay_under_github_actions_annotates_each_violation(github_run) -> None:
    work, out, _ = github_run
    rows = logged(work / "audit.db")
    commands = [line for line in out.splitlines() if line.startswith("::")]
    annotations = [re.fullmatch(r"::(error|warning) title=([^:]*)::(.*)", line)
                   for line in commands]
    assert all(annotations), commands
    assert len(annotations) == len(rows)
    for match, (_, rule, severity, recipient, method, host, path, *_rest, message) in zip(
            annotations, rows, strict=True):
        level, title, text = match.groups()  # type: ignore[union-attr]
        assert level == ("error" if severity == "high" else "warning")
        assert title == workflow_property(rule)
        assert text == workflow_data(f"{recipient}: {method} {host}{path}: {message}")
    assert not any(value in out for value in RAW_VALUES)
    # the terminal listing is still there, for people reading the raw log
    assert f"Violations: the first {SHOWN} of {len(rows)}" in out


def test_replay_under_github_actions_appends_the_markdown_summary(github_run) -> None:
    work, _, summary = github_run
    assert summary.startswith("## An earlier step's summary\n\n## GDPR flow audit")
    assert f"**{len(logged(work / 'audit.db'))} violations**" in summary
    assert "### Violations" in summary and "| missing-consent |" in summary.replace("\\", "")
    assert not any(value in summary for value in RAW_VALUES)


def test_no_workflow_command_nor_summary_outside_github_actions(plain_run) -> None:
    _, out = plain_run
    assert not any(line.lstrip().startswith("::") for line in out.splitlines())


@pytest.mark.parametrize(("text", "data", "prop"), [
    ("plain", "plain", "plain"),
    ("100%", "100%25", "100%25"),
    ("a\r\nb", "a\\r\\nb", "a\\r\\nb"),  # no raw line break reaches the runner
    ("Mailchimp: POST /x,y", "Mailchimp: POST /x,y", "Mailchimp%3A POST /x%2Cy"),
    ("%0A::set-env", "%250A::set-env", "%250A%3A%3Aset-env"),
    ("\x1b[31m", "\\x1b[31m", "\\x1b[31m"),  # control characters spelled out first
])
def test_workflow_command_escaping(text: str, data: str, prop: str) -> None:
    """As GitHub's toolkit escapes them (command.ts): % CR LF in data; also : and , in
    properties."""
    assert workflow_data(text) == data
    assert workflow_property(text) == prop


def commands_in(script: str) -> list[list[str]]:
    """The `gdpr-audit ...` invocations of a shell script (line continuations joined)."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part, comments=True)
            while words and ("=" in words[0] or words[0] in ("time", "exec")):
                words = words[1:]
            if words and words[0].endswith("gdpr-audit"):
                found.append(words[1:])
    return found


def help_of(*command: str) -> str:
    result = subprocess.run([*CLI, *command, "--help"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "addon"),
                                 "COLUMNS": "200"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_commands(commands: list[list[str]]) -> None:
    top = help_of()
    for words in commands:
        name = words[0]
        assert re.search(rf"\b{name}\b", top), f"gdpr-audit {name}: not in gdpr-audit --help"
        sub = help_of(name)
        for word in words[1:]:
            option = word.split("=")[0]
            if option.startswith("--"):
                assert option in sub, f"gdpr-audit {name} {option}: not in its --help"


def test_github_actions_workflow_parses_and_runs_real_commands() -> None:
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "github-actions.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    scripts = [step["run"] for step in steps if "run" in step]
    commands = [c for script in scripts for c in commands_in(script)]
    assert {c[0] for c in commands} >= {"replay", "merge", "export"}
    check_commands(commands)
    replays = [c for c in commands if c[0] == "replay"]
    assert all(any(w.startswith("--fail-on") for w in c) for c in replays)
    assert any(any(w.startswith("--baseline") for w in c) for c in replays)


def test_gitlab_job_parses_runs_real_commands_and_reports_junit() -> None:
    pipeline = yaml.safe_load((ROOT / "docs" / "ci" / "gitlab-ci.yml").read_text())
    jobs = {name: job for name, job in pipeline.items()
            if isinstance(job, dict) and "script" in job}
    commands = [c for job in jobs.values() for line in job["script"] for c in commands_in(line)]
    commands += [c for job in jobs.values() for line in job.get("after_script", [])
                 for c in commands_in(line)]
    check_commands(commands)
    exports = [c for c in commands if c[0] == "export"]
    assert any("junit" in " ".join(c) for c in exports)
    reports = [job["artifacts"]["reports"]["junit"] for job in jobs.values()
               if "reports" in job.get("artifacts", {})]
    assert reports, "no job hands a JUnit report to GitLab"
    written = {c[c.index("--output") + 1] for c in exports if "--output" in c}
    assert all((r if isinstance(r, str) else r[0]) in written for r in reports)
    assert all(job["artifacts"].get("when") == "always" for job in jobs.values()
               if "reports" in job.get("artifacts", {}))


def test_baselined_violations_are_listed_as_such_and_not_annotated(tmp_path: Path) -> None:
    first = replay(tmp_path)
    assert first.returncode == 1, first.stderr
    baseline = tmp_path / "baseline.json"
    written = subprocess.run(
        [*CLI, "replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"), "--db",
         str(tmp_path / "first.db"), "--write-baseline", str(baseline)], cwd=tmp_path,
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "addon"),
                                             "PATH": "/usr/bin:/bin"}, timeout=300)
    assert baseline.exists(), written.stderr
    summary = tmp_path / "summary.md"
    again = subprocess.run(
        [*CLI, "replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"), "--db",
         str(tmp_path / "again.db"), "--baseline", str(baseline)], cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin", "COLUMNS": "200",
             "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert again.returncode == 0, again.stdout + again.stderr
    assert not [line for line in again.stdout.splitlines() if line.startswith("::")]
    assert again.stdout.count("(in the baseline)") == SHOWN
    assert "## GDPR flow audit" in summary.read_text()


def test_annotations_stop_at_githubs_cap_with_a_notice(plain_run, monkeypatch) -> None:
    import io

    import sqlite_utils
    from rich.console import Console

    from gdpr_audit import listing

    work, _ = plain_run
    monkeypatch.setattr(listing, "ANNOTATED", 5)
    out = io.StringIO()
    listing.annotate(Console(file=out), sqlite_utils.Database(work / "audit.db"), 1)
    lines = out.getvalue().splitlines()
    total = len(logged(work / "audit.db"))
    assert len(lines) == 6 and all(line.startswith(("::error ", "::warning ")) for line in lines[:5])
    assert lines[5] == (f"::notice title=gdpr-audit::{total - 5} more violations, not annotated: "
                        "the job summary lists them")


def test_the_job_summary_reports_this_run_only(plain_run, tmp_path) -> None:
    """A log kept across CI runs holds earlier runs: the summary is the new run's, read as
    that run (not the whole log loaded and filtered)."""
    import shutil

    import sqlite_utils

    from gdpr_audit import listing
    work, _ = plain_run
    for name in ("audit.db", "audit.db.key"):
        shutil.copy(work / name, tmp_path / name)
    one = sorted((ROOT / "captures").glob("*.har"))[0]
    (tmp_path / "some").mkdir()
    shutil.copy(one, tmp_path / "some" / one.name)
    again = subprocess.run(
        [*CLI, "replay", str(tmp_path / "some"), "--policy", str(ROOT / "policies"),
         "--db", str(tmp_path / "audit.db")], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin"})
    assert again.returncode == 1, again.stderr  # a second run into the same log
    db = sqlite_utils.Database(tmp_path / "audit.db")
    counts = dict(db.execute("select run_id, count(*) from violations group by run_id"))
    assert counts[1] > 0 and counts[2] > 0 and counts[1] != counts[2]
    for run, count in counts.items():
        summary = tmp_path / f"summary-{run}.md"
        listing.step_summary(db, run, str(summary))
        assert f"**{count} violations**" in summary.read_text(), summary.read_text()
