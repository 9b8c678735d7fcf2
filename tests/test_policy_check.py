"""`policy check` (issue 20, point 10): every error at once, each with file, line and key, a
"did you mean" for misspelt keys, and lints of what a valid file means.

Testing strategy: a catch/avoid table of small policy files, each a clean base policy with
one change, checked by the console script in a real process. A case to catch names the
level (error: exit 2, on stderr; warning: exit 0, on standard output), the key and words of
the message; a case to avoid must check clean. Registry values are never echoed."""

import textwrap
from pathlib import Path

import pytest

from test_cli import run

BASE = """
version: 1
organization:
  name: Test Shop
  country: FR
  first_party: [shop.test, "*.shop.test"]
purposes:
  service: {consent_required: false}
  newsletter: {consent_required: true}
recipients:
  - name: Mailer
    hosts: ["*.mailer.test"]
    purposes: [newsletter]
    data: [email]
    country: FR
  - name: PayCo
    hosts: [api.payco.test]
    purposes: [service]
    data: [email]
    country: US
    transfer: dpf
subjects:
  - id: alice
    identifiers: {email: alice.martin@example.org, phone: "+33612345601"}
    consents:
      newsletter: {granted: 2026-01-10T09:00:00Z}
"""

EXTRA = """
  - name: Extra
    hosts: [{host}]
    purposes: [newsletter]
    country: {country}
"""


def policy(*replacements: tuple[str, str], extra: str = "") -> str:
    text = textwrap.dedent(BASE).lstrip()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    if extra:  # one more recipient, after the others
        text = text.replace("\nsubjects:\n", "\n" + extra.strip("\n") + "\nsubjects:\n", 1)
    return text


def extra(host: str = "api.extra.test", country: str = "FR", **more: str) -> str:
    return EXTRA.format(host=host, country=country) + "".join(
        f"    {k}: {v}\n" for k, v in more.items())


CATCH = [
    # (case, policy text, level, key, words of the message)
    ("misspelt key", policy(("    purposes: [newsletter]\n    data: [email]\n    country: FR",
                             "    purpses: [newsletter]\n    data: [email]\n    country: FR")),
     "error", "recipients[0].purpses", "did you mean 'purposes'?"),
    ("misspelt key, the required one", policy(
        ("    purposes: [newsletter]\n    data: [email]\n    country: FR",
         "    purpses: [newsletter]\n    data: [email]\n    country: FR")),
     "error", "recipients[0]", "'purposes' is missing (is 'purpses' a misspelling of it?)"),
    ("misspelt top-level key", policy(("purposes:\n", "purpose:\n")),
     "error", "purpose", "did you mean 'purposes'?"),
    ("misspelt identifier key", policy(("{email: alice", "{emial: alice")),
     "error", "subjects[0].identifiers.emial", "did you mean 'email'?"),
    ("consent granted is not a date", policy(("{granted: 2026-01-10T09:00:00Z}",
                                              "{granted: yes}")),
     "error", "subjects[0].consents.newsletter.granted",
     "expected an ISO 8601 date, e.g. 2026-01-10T09:00:00Z"),
    ("consent granted is a number", policy(("{granted: 2026-01-10T09:00:00Z}", "{granted: 2026}")),
     "error", "subjects[0].consents.newsletter.granted", "expected an ISO 8601 date"),
    ("duplicate recipient name", policy(extra=extra().replace("Extra", "Mailer")),
     "error", "recipients[2].name", "also the name of recipients[0]"),
    ("host both first-party and a recipient", policy(extra=extra(host="api.shop.test")),
     "error", "recipients[2].hosts[0]", "also first-party"),
    ("host claimed by an earlier recipient", policy(extra=extra(host="eu.mailer.test")),
     "error", "recipients[2].hosts[0]", "already claimed by recipients[0]"),
    ("hosts that overlap, the later broader", policy(extra=extra(host='"*.payco.test"')),
     "warning", "recipients[2].hosts[0]", "overlaps 'api.payco.test' of recipients[1]"),
    ("outside the EEA, no adequacy, no transfer", policy(extra=extra(country="IN")),
     "warning", "recipients[2].country", "IN is outside the EEA"),
    ("outside the EEA, transfer: none", policy(extra=extra(country="BR", transfer="none")),
     "warning", "recipients[2].transfer", "`transfer: none`"),
    ("dpf outside the US", policy(extra=extra(country="IN", transfer="dpf")),
     "warning", "recipients[2].transfer", "covers US recipients only"),
    ("adequacy the country has not", policy(extra=extra(country="US", transfer="adequacy")),
     "warning", "recipients[2].transfer", "no EU adequacy decision"),
    ("no country", policy(("    country: FR\n  - name: PayCo", "  - name: PayCo")),
     "warning", "recipients[0]", "no `country`"),
    ("undeclared purpose", policy(("purposes: [service]", "purposes: [servic]")),
     "error", "recipients[1].purposes[0]", "purpose 'servic' is not declared"),
    ("registry email that is not one", policy(("alice.martin@example.org", "alice.martin.example.org")),
     "error", "subjects[0].identifiers.email", "not a valid email address"),
    ("registry phone that is not one", policy(("+33612345601", "+3361234")),
     "error", "subjects[0].identifiers.phone", "not a valid phone number"),
    ("drafted entry not reviewed", policy(extra=extra(review='["country: unknown owner"]')),
     "error", "recipients[2].review", "check country: unknown owner; then delete `review`"),
]

AVOID = [
    ("the base policy", policy()),
    ("inside the EEA, no transfer", policy(extra=extra(country="DE"))),
    ("adequacy country, no transfer", policy(extra=extra(country="CH"))),
    ("US with dpf", policy(extra=extra(country="US", transfer="dpf"))),
    ("outside the EEA with scc", policy(extra=extra(country="IN", transfer="scc"))),
    ("a more specific host before a broader one", policy(
        ("hosts: [\"*.mailer.test\"]", "hosts: [eu.mailer.test, \"*.mailer.test\"]"))),
    ("a national phone of organization.country", policy(("+33612345601", "06 12 34 56 01"))),
    ("a list of emails", policy(("{email: alice.martin@example.org",
                                 "{email: [alice.martin@example.org, a.martin@example.fr]"))),
    ("a date without a time", policy(("{granted: 2026-01-10T09:00:00Z}", "{granted: 2026-01-10}"))),
]


def check(tmp_path: Path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path, run("policy", "check", "--policy", str(path), cwd=tmp_path)


def line_of(path: Path, key: str) -> int:
    """The line the key's last part is written on (for `recipients[2]`, its first key)."""
    last = key.rsplit(".", 1)[-1].split("[")[0]
    index = int(key.rsplit("[", 1)[1].rstrip("]")) if key.endswith("]") else None
    lines = path.read_text().splitlines()
    if index is not None and key.count("[") == 1:  # recipients[N]: the Nth item of the list
        items = [i for i, line in enumerate(lines, 1) if line.startswith("  - name:")]
        return items[index]
    if key.endswith("]"):  # hosts[0], purposes[0]: the line of the list's key
        last = key.rsplit(".", 1)[-1].split("[")[0]
    recipient = int(key.split("[")[1].split("]")[0]) if key.startswith("recipients[") else None
    start = 0
    if recipient is not None:
        start = [i for i, line in enumerate(lines) if line.startswith("  - name:")][recipient]
    return next(i for i, line in enumerate(lines[start:], start + 1)
                if line.lstrip(" -").startswith(f"{last}:") or f"{{{last}:" in line
                or f" {last}:" in line)


@pytest.mark.parametrize("case, text, level, key, words", CATCH, ids=[c[0] for c in CATCH])
def test_policy_check_catches(tmp_path: Path, case: str, text: str, level: str, key: str,
                              words: str) -> None:
    path, result = check(tmp_path, text)
    stream = result.stderr if level == "error" else result.stdout
    label = "Error" if level == "error" else "Warning"
    lines = [line for line in stream.splitlines() if f": {key}: " in line]
    assert lines, (case, result.stdout, result.stderr)
    assert any(line.startswith(f"{label}: policy: {path}:{line_of(path, key)}: {key}: ")
               and words in line for line in lines), (case, lines)
    assert result.returncode == (2 if level == "error" else 0), (case, result.stderr)
    assert "alice.martin" not in result.stdout + result.stderr  # registry values stay out
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case, text", AVOID, ids=[c[0] for c in AVOID])
def test_policy_check_avoids(tmp_path: Path, case: str, text: str) -> None:
    _, result = check(tmp_path, text)
    assert result.returncode == 0, (case, result.stderr)
    assert result.stderr == "" and "Warning" not in result.stdout, (case, result.stdout)
    assert result.stdout.startswith("OK: ")


def test_policy_check_reports_every_error_at_once(tmp_path: Path) -> None:
    text = policy(("    purposes: [newsletter]\n    data: [email]\n    country: FR",
                   "    purpses: [newsletter]\n    data: [email]\n    country: FR"),
                  ("transfer: dpf\n", "transfer: dfp\n"),
                  ("{granted: 2026-01-10T09:00:00Z}", "{granted: last week}"),
                  ("alice.martin@example.org", "alice.martin.example.org"),
                  extra=extra(host="api.shop.test"))
    path, result = check(tmp_path, text)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: policy: ")]
    keys = [line.split(": ")[3] for line in errors]
    assert keys == ["recipients[0]", "recipients[0].purpses", "recipients[1].transfer",
                    "recipients[2].hosts[0]", "subjects[0].identifiers.email",
                    "subjects[0].consents.newsletter.granted"], result.stderr
    assert all(f"{path}:" in line for line in errors)
    assert "6 errors" in result.stdout


def test_the_sample_policy_checks_with_its_one_warning(tmp_path: Path) -> None:
    from test_cli import ROOT
    result = run("policy", "check", "--policy", str(ROOT / "policies"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [warning] = [line for line in result.stdout.splitlines() if line.startswith("Warning")]
    assert "IN is outside the EEA" in warning and "(1 warning)" in result.stdout


def test_the_summary_of_a_policy_at_a_long_path_is_whole(tmp_path: Path) -> None:
    """A clone at a long path (a CI runner's workspace): the paths, then the counts, whole.
    The summary was cut at 200 characters, after the paths, with an ellipsis."""
    import shutil

    from test_cli import ROOT
    folder = tmp_path / ("a long folder name " * 5).strip() / ("and another one " * 5).strip()
    shutil.copytree(ROOT / "policies", folder / "policies")
    result = run("policy", "check", "--policy", str(folder / "policies"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [summary] = [line for line in result.stdout.splitlines() if line.startswith("OK: ")]
    assert len(summary) > 200 and "…" not in summary
    assert summary.endswith("10 recipients, 6 purposes, 10 subjects (1 warning)"), summary
