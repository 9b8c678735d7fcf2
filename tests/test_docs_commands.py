"""The README and the docs' tutorials run as written, as sqlite-utils checks its docs.

Testing strategy: every ```sh block of README.md and of the pages in DOCS is run with bash in a
temporary folder holding copies of captures/ and policies/ (and links to .venv and addon/, which
commands read but never write), with .venv/bin first on the PATH. The blocks of one page run in
order in one folder, so a page may review the log a block before it wrote. Each command must exit 0, or the code its trailing comment
gives (`# exits 1`). A block preceded by `<!-- not run: why -->` (a long-running proxy, a
benchmark) is only checked: each command starts with an executable of .venv/bin, a file of the
repository or a target of the Makefile. Links must lead to files that exist, never to
../shared, and the README stays a front door (220 lines at most).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DOCS = ["README.md", "docs/cli.md", "docs/policy.md", "docs/rules.md", "docs/detection.md",
        "docs/live-proxy.md", "docs/review.md", "docs/pytest-plugin.md", "docs/benchmarks.md",
        "docs/reliability.md", "docs/development.md"]
BUILTINS = {"source", ".", "export", "cd", "echo"}

_BLOCK = re.compile(r"(?:<!--\s*not run:(?P<why>[^>]*)-->\s*\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)```",
                    re.S)
_EXITS = re.compile(r"#\s*exits\s+(\d+)")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def blocks(page: str) -> list[tuple[bool, list[str]]]:
    """The sh blocks of a page: (runs, commands), continuation lines joined."""
    found = []
    for match in _BLOCK.finditer((ROOT / page).read_text()):
        if match["lang"] != "sh":
            continue
        commands: list[str] = []
        pending = ""
        for line in match["body"].splitlines():
            if pending:
                line = pending + " " + line.strip()
                pending = ""
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1]
                continue
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
        found.append((match["why"] is None, commands))
    return found


def expected_exit(command: str) -> int:
    match = _EXITS.search(command)
    return int(match[1]) if match else 0


def first_word(command: str) -> str:
    words = [w for w in command.split() if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)]
    return words[0]


@pytest.fixture(scope="module")
def venv() -> Path:
    if not (VENV_BIN / "gdpr-audit").exists():
        pytest.skip("no .venv: run `make demo` first")
    return VENV_BIN


def workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    shutil.copytree(ROOT / "captures", tmp_path / "captures")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    (tmp_path / "addon").symlink_to(ROOT / "addon")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GDPR_", "PYTEST_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path),
               XDG_CACHE_HOME=str(tmp_path / ".cache"), COLUMNS="100")
    env.pop("VIRTUAL_ENV", None)
    return tmp_path, env


def script(commands: list[str]) -> str:
    """One bash script for a block, so `source` and `export` last to its end; each command's
    exit code is checked where it happens."""
    lines = []
    for number, command in enumerate(commands):
        lines.append(command)
        lines.append(f'rc=$?; if [ $rc -ne {expected_exit(command)} ]; then '
                     f'echo "command {number + 1} exited $rc: "{shlex_quote(command)} >&2; exit 99; fi')
    return "\n".join(lines) + "\n"


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


@pytest.mark.parametrize("page", [p for p in DOCS if any(runs for runs, _ in blocks(p))])
def test_shell_blocks_run(page: str, venv: Path, tmp_path: Path) -> None:
    folder, env = workspace(tmp_path)
    for index, (runs, commands) in enumerate(blocks(page)):
        if not runs:
            continue
        done = subprocess.run(["bash", "-c", script(commands)], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (f"{page}, sh block {index + 1}:\n{done.stderr[-3000:]}"
                                      f"\n{done.stdout[-2000:]}")


def test_every_runnable_command_names_what_it_expects() -> None:
    """A `# exits N` comment is the only way to accept a failure, and only `replay` has a
    reason to use it (it exits 1 when it finds violations, which the samples have)."""
    for page in DOCS:
        for runs, commands in blocks(page):
            for command in commands:
                if runs and expected_exit(command) != 0:
                    assert " replay " in f" {command} ", (page, command)


@pytest.mark.parametrize("page", DOCS)
def test_blocks_not_run_start_with_a_real_executable(page: str, venv: Path) -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for runs, commands in blocks(page):
        if runs:
            continue
        for command in commands:
            word = first_word(command)
            if word in BUILTINS:
                continue
            if word == "make":
                target = command.split()[1] if len(command.split()) > 1 else "demo"
                assert target in targets, (page, command)
            elif "/" in word:
                assert os.access(ROOT / word, os.X_OK) or (ROOT / word).is_file(), (page, command)
            else:
                assert (venv / word).exists(), f"{page}: {word} is not in .venv/bin ({command})"


def test_the_tour_shows_the_quick_start_and_activates_the_venv() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert text.count("source .venv/bin/activate") >= 1
    runnable = [c for runs, commands in blocks("README.md") if runs for c in commands]
    for needed in ("gdpr-audit replay", "gdpr-audit report", "gdpr-audit show", "mitmdump"):
        assert any(c.startswith(needed) for c in runnable), needed


def test_no_pip_or_tool_outside_the_venv() -> None:
    """A bare `pip` runs the system's Python; every pip line goes through the venv."""
    for page in [*DOCS, *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]:
        text = (ROOT / page).read_text()
        for match in re.finditer(r"(?<![\w/.-])pip3? install", text):
            line = text[text.rfind("\n", 0, match.start()) + 1:text.find("\n", match.end())]
            pytest.fail(f"{page}: {line.strip()} (write .venv/bin/pip install)")


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move the detail into docs/"


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_lead_to_files_of_the_repository(page: Path) -> None:
    text = page.read_text()
    if page.relative_to(ROOT).as_posix() in DOCS:
        assert "../shared" not in text, f"{page.name} refers to ../shared, which a clone lacks"
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        resolved = (page.parent / path).resolve()
        assert resolved.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        assert "shared" not in Path(path).parts, f"{page.name} links to {target}"
        assert ROOT in resolved.parents or resolved == ROOT, f"{page.name} links outside the repo: {target}"


def test_policy_examples_are_valid(venv: Path, tmp_path: Path) -> None:
    """The YAML and CSV examples of docs/policy.md pass `policy check`."""
    text = (ROOT / "docs/policy.md").read_text()
    yaml_blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    policy = next(b for b in yaml_blocks if b.startswith("version: 1"))
    registry = next(b for b in yaml_blocks if b.startswith("subjects:"))
    csv = next(b for b in re.findall(r"```text\n(.*?)```", text, re.S) if b.startswith("id,"))
    (tmp_path / "policy.yaml").write_text(policy)
    (tmp_path / "subjects.yaml").write_text(registry)
    (tmp_path / "subjects.csv").write_text(csv)
    checks = [["--policy", "policy.yaml"],
              ["--policy", str(ROOT / "policies"), "--subjects", "subjects.yaml"],
              ["--policy", str(ROOT / "policies"), "--subjects", "subjects.csv"]]
    for args in checks:
        done = subprocess.run([str(venv / "gdpr-audit"), "policy", "check", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
