"""What `gdpr-audit` says on its way out, as CI logs and scripts read it (issue 20, points 2
and 11): error lines whole, the version, the rules, durations, a missing input.

Strategy: the console script in a real process with its output piped (not a terminal), and
the log read back with sqlite3."""

import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gdpr_audit"]


def gdpr_audit(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin", **env})


def long_folder(tmp_path: Path) -> Path:
    folder = tmp_path / ("a-clone-whose-path-is-long-" * 3) / ("and-deep-" * 5)
    folder.mkdir(parents=True)
    assert len(str(folder)) > 120
    return folder


@pytest.mark.parametrize("columns", [None, "80"])
def test_an_error_naming_a_long_path_is_one_whole_line(tmp_path: Path, columns: str | None) -> None:
    """stderr is a pipe (a CI log): no hard wrap at 80 columns, even inside the path."""
    db = long_folder(tmp_path) / "audit.db"
    result = gdpr_audit("export", "--db", str(db), cwd=tmp_path,
                        **({"COLUMNS": columns} if columns else {}))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and f"{db}: no audit log here" in lines[0], result.stderr


def test_a_policy_error_naming_a_long_path_is_one_whole_line(tmp_path: Path) -> None:
    policy = long_folder(tmp_path) / "policy.yaml"
    policy.write_text((ROOT / "policies" / "policy.yaml").read_text()
                      .replace("role: processor", "role: procesor", 1))
    result = gdpr_audit("policy", "check", "--policy", str(policy), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and str(policy) in result.stderr, result.stderr


def test_the_frozen_exit_keeps_the_error_whole_in_a_long_clone(tmp_path: Path) -> None:
    """test_the_command_hands_its_objects_to_the_exit_frozen, from a clone at a long path."""
    db = long_folder(tmp_path) / "audit.db"
    result = gdpr_audit("violations", "--db", str(db), cwd=tmp_path)
    assert result.returncode == 2 and "no audit log here" in result.stderr
    assert str(db) in result.stderr


# --- issue 20, point 11 -------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30s", 30), ("2m", 120), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("5 M", 300)])
def test_one_duration_parser_knows_seconds_to_weeks(text: str, seconds: int) -> None:
    from gdpr_audit.review import parse_duration

    assert parse_duration(text, "--since").total_seconds() == seconds


def test_since_two_minutes_on_the_command_line(tmp_path: Path) -> None:
    replay = gdpr_audit("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                        cwd=tmp_path)
    assert replay.returncode == 1, replay.stderr
    for command in (("violations", "--since", "2m"), ("report", "--since", "2m")):
        result = gdpr_audit(*command, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    purge = gdpr_audit("purge", "--older-than", "90s", cwd=tmp_path)
    assert purge.returncode == 0, purge.stderr


def test_a_missing_input_path_records_no_run(tmp_path: Path) -> None:
    first = gdpr_audit("replay", str(ROOT / "captures"), "--policy", str(ROOT / "policies"),
                       cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    missing = tmp_path / "captrues"
    result = gdpr_audit("replay", str(missing), "--policy", str(ROOT / "policies"), cwd=tmp_path)
    assert result.returncode == 2
    assert str(missing) in result.stderr and "no such" in result.stderr.lower(), result.stderr
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        assert conn.execute("select count(*) from runs").fetchone() == (1,)


def test_version(tmp_path: Path) -> None:
    result = gdpr_audit("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gdpr-audit {version('gdpr-flow-audit')}"


def test_rules_lists_every_rule_with_severity_trigger_and_articles(tmp_path: Path) -> None:
    from gdpr_audit.rules import RULES

    result = gdpr_audit("rules", cwd=tmp_path, COLUMNS="300")
    assert result.returncode == 0, result.stderr
    for rule in RULES.values():
        assert rule.trigger and rule.articles, rule.id  # one source: the rule's class
        line = next(line for line in result.stdout.splitlines() if rule.id in line)
        assert rule.severity in line and rule.articles in line, line
        assert rule.trigger[:40] in result.stdout.replace("\n", " ")
    assert "Art. 17" in next(line for line in result.stdout.splitlines() if "erased-subject" in line)
