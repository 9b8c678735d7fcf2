"""Hostile files (issue 18, point 3): a policy or registry that is a YAML alias bomb, a log
whose hosts inject YAML into `policy draft`, outputs and logs planted as symbolic links, a
log whose key file was deleted, and crafted SQLite files handed to the review commands.

Strategy: real files, real SQLite, the real `gdpr-audit` in a subprocess. Each subprocess
runs under a memory and file-size cap and a timeout, so that the behaviour these tests
guard against (memory running away, a query that never ends) fails the test instead of
the machine."""

import os
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mitmproxy import io
from mitmproxy.test import tflow, tutils

from gdpr_audit.documents import PolicyError
from gdpr_audit.policy import load_policy
from gdpr_audit.recipients import registrable_domain
from gdpr_audit.store import AuditStore, open_existing

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "gdpr_audit"]
POLICIES = ROOT / "policies"


def _limits() -> None:
    # before the fixes, an alias bomb took 1.8 GB in 30 s and an endless query can fill
    # the disk with its sort: cap both so that a failing test does not take the machine
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 20, 256 << 20))


def run(*args: str, cwd: Path, timeout: float = 120, umask: int | None = None,
        **env: str) -> subprocess.CompletedProcess[str]:
    def setup() -> None:
        _limits()
        if umask is not None:
            os.umask(umask)

    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=setup,
                          env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin",
                               "COLUMNS": "400", **env})


def error_text(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.replace("\n", "")  # rich wraps long messages


def capture(path: Path) -> Path:
    """A one-flow capture to replay."""
    flow = tflow.tflow(req=tutils.treq(method=b"GET", content=b""), resp=True)
    flow.request.url = "https://www.shop.example/"
    with path.open("wb") as out:
        io.FlowWriter(out).add(flow)
    return path


def new_log(path: Path) -> Path:
    """A real, empty audit log (tables, key check, one run) and its key file."""
    store = AuditStore(str(path))
    store.finish_run(store.start_run("test", ["policy.yaml"]), [])
    store.db.close()
    return path


# --- 1. YAML aliases: a few KB that expand to billions of nodes ---------------------------

def alias_bomb() -> str:
    """Ten levels of nine aliases each: under 1 KB of YAML, 9**10 strings once expanded."""
    lines = [f"lol0: &lol0 [{', '.join(['lol'] * 9)}]"]
    for level in range(1, 10):
        items = ", ".join([f"*lol{level - 1}"] * 9)
        lines.append(f"lol{level}: &lol{level} [{items}]")
    return "\n".join(lines) + "\n"


def first_alias_line(path: Path, alias: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if f"*{alias}" in line)


def test_alias_bomb_in_a_policy_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((POLICIES / "policy.yaml").read_text() + "\n" + alias_bomb())
    result = run("policy", "check", "--policy", str(policy), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    message = error_text(result)
    assert f"{policy}:{first_alias_line(policy, 'lol0')}:" in message
    assert "YAML aliases (*lol0) are not accepted" in message


def test_alias_bomb_in_a_registry_is_refused_by_replay(tmp_path: Path) -> None:
    registry = tmp_path / "subjects.yaml"
    registry.write_text(alias_bomb() + "subjects:\n  - id: cust-bomb\n"
                        "    identifiers: {email: *lol9}\n")
    result = run("replay", str(capture(tmp_path / "one.flow")),
                 "--policy", str(POLICIES / "policy.yaml"), "--subjects", str(registry),
                 "--db", str(tmp_path / "audit.db"), "--jobs", "1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    message = error_text(result)
    assert f"{registry}:{first_alias_line(registry, 'lol0')}:" in message
    assert "YAML aliases (*lol0) are not accepted" in message
    assert not (tmp_path / "audit.db").exists()  # refused before anything was written


def test_an_alias_is_a_policy_error_in_process(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((POLICIES / "policy.yaml").read_text().replace(
        "version: 1", "version: 1\nshared: &shared [email]\nalso: *shared", 1))
    with pytest.raises(PolicyError) as raised:
        load_policy(policy)
    assert raised.value.file == str(policy)
    assert raised.value.line == first_alias_line(policy, "shared")
    assert "YAML aliases (*shared) are not accepted" in raised.value.message


# --- 2. `policy draft`: hosts from the traffic must stay data -----------------------------

HOSTILE_HOSTS = [
    "a.example\n  - name: Injected\n    hosts: [evil.example]\n    purposes: [service]\n  #",
    "b.example\r  - name: InjectedCR\r    hosts: [evil-cr.example]\r    purposes: [service]\r  #",
    "c.example # not a comment",
    "d.example: {name: Mapped}",
    "e.example\n- name: Top\n  hosts: [evil-top.example]\n  purposes: [service]",
    "&anchor !!python/object:os.system |>-?[]{}%@`'\".f.example",
    "g.example\u2028  - name: InjectedLS",
]


@pytest.mark.parametrize("hosts", [HOSTILE_HOSTS[:2], HOSTILE_HOSTS], ids=["injections", "all"])
def test_draft_keeps_hostile_hosts_as_data(tmp_path: Path, hosts: list[str]) -> None:
    """`injections`: before the fix, the draft was valid YAML that declared evil.example."""
    db = new_log(tmp_path / "audit.db")
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "insert into flows (id, run_id, source, method, scheme, host, path, timestamp, "
            "recipient_kind, status, violations) values (?, 1, 'live', 'POST', 'https', ?, '/', "
            "'2026-06-15T10:00:00+00:00', 'undeclared', 'audited', 0)",
            [(f"flow-{i}", host) for i, host in enumerate(hosts)])
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    drafted = folder / "drafted.yaml"
    result = run("policy", "draft", "--db", str(db), "--policy", str(folder),
                 "--output", str(drafted), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    recipients = yaml.safe_load(drafted.read_text())["recipients"]
    assert sorted(h for r in recipients for h in r["hosts"]) == sorted(hosts)
    assert sorted(r["name"] for r in recipients) == sorted({registrable_domain(h) for h in hosts})
    keys = {"name", "hosts", "role", "purposes", "data", "country", "transfer", "review"}
    assert all(set(r) <= keys for r in recipients)
    # merged with the policy, the draft declares nothing it did not list as data
    policy = load_policy(folder)
    assert len(policy.recipients) == len(load_policy(POLICIES).recipients) + len(recipients)
    for host in ("evil.example", "evil-cr.example", "evil-top.example"):
        assert policy.recipient_for(host) is None
    assert not {"Injected", "InjectedCR", "Top", "Mapped"} & {r.name for r in policy.recipients}
    # `policy check` refuses a draft until its reviews are deleted; then it accepts the
    # drafted recipients, and no other
    check = run("policy", "check", "--policy", str(folder), cwd=tmp_path)
    assert check.returncode == 2 and "review" in check.stderr
    for recipient in recipients:
        del recipient["review"]
    drafted.write_text(yaml.safe_dump({"recipients": recipients}, allow_unicode=True))
    check = run("policy", "check", "--policy", str(folder), cwd=tmp_path)
    assert check.returncode == 0, check.stderr


# --- 3. Outputs: never through a symbolic link, owner-only ---------------------------------

def _writers(work: Path, target: str) -> dict[str, list[str]]:
    """Every file the CLI writes, with `target` as the path it writes."""
    db, flow = str(work / "audit.db"), str(work / "one.flow")
    return {
        "export": ["export", "--db", db, "--format", "json", "--output", target],
        "replay --output": ["replay", flow, "--policy", str(POLICIES), "--db", str(work / "r.db"),
                            "--jobs", "1", "--format", "md", "--output", target],
        "replay --write-baseline": ["replay", flow, "--policy", str(POLICIES), "--db",
                                    str(work / "b.db"), "--jobs", "1", "--write-baseline", target],
        "policy draft": ["policy", "draft", "--db", db, "--policy", str(POLICIES),
                         "--output", target],
        "map": ["map", "--db", db, "--policy", str(POLICIES), "--format", "html",
                "--output", target],
    }


OUTPUT_COMMANDS = ["export", "replay --output", "replay --write-baseline", "policy draft", "map"]


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_outputs_refuse_a_symlink_and_leave_its_target_alone(tmp_path: Path, command: str) -> None:
    new_log(tmp_path / "audit.db")
    capture(tmp_path / "one.flow")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    result = run(*_writers(tmp_path, str(link))[command], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(link) in error_text(result) and "symbolic link" in error_text(result)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("command", OUTPUT_COMMANDS)
def test_outputs_are_created_owner_only_whatever_the_umask(tmp_path: Path, command: str) -> None:
    new_log(tmp_path / "audit.db")
    capture(tmp_path / "one.flow")
    target = tmp_path / "out.txt"
    result = run(*_writers(tmp_path, str(target))[command], cwd=tmp_path, umask=0)
    assert result.returncode in (0, 1), result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("dangling", [False, True])
def test_replay_refuses_a_symlinked_db(tmp_path: Path, dangling: bool) -> None:
    victim = tmp_path / "victim.db"
    if not dangling:
        victim.write_text("precious\n")
    link = tmp_path / "audit.db"
    link.symlink_to(victim)
    result = run("replay", str(capture(tmp_path / "one.flow")), "--policy", str(POLICIES),
                 "--db", str(link), "--jobs", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(link) in error_text(result) and "symbolic link" in error_text(result)
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_text() == "precious\n"
    assert not Path(f"{victim}-wal").exists() and not Path(f"{link}.key").exists()


# --- 4. A deleted key file: an error before anything is written ----------------------------

def test_replay_without_the_key_of_an_existing_log_writes_nothing(tmp_path: Path) -> None:
    flow = capture(tmp_path / "one.flow")
    fresh = run("replay", str(flow), "--policy", str(POLICIES), "--db", str(tmp_path / "new.db"),
                "--jobs", "1", cwd=tmp_path)
    assert fresh.returncode in (0, 1), fresh.stderr
    assert (tmp_path / "new.db.key").exists()  # a brand-new log still gets its key

    db = tmp_path / "new.db"
    (tmp_path / "new.db.key").unlink()
    before = db.read_bytes()
    result = run("replay", str(flow), "--policy", str(POLICIES), "--db", str(db), "--jobs", "1",
                 cwd=tmp_path)
    assert result.returncode == 2
    message = error_text(result)
    assert f"{db}.key" in message and "GDPR_AUDIT_KEY" in message and "restore" in message
    assert not (tmp_path / "new.db.key").exists()
    assert db.read_bytes() == before
    assert not Path(f"{db}-wal").exists()


# --- 5. Crafted SQLite files handed to the review commands ---------------------------------

ENDLESS = ("with recursive r(n) as (select 1 union all select n + 1 from r) "
           "select n as id, 1 as run_id, '' as source, 'GET' as method, 'https' as scheme, "
           "'x.example' as host, '/' as path, '' as timestamp, null as recipient, "
           "'undeclared' as recipient_kind, null as purposes, 'audited' as status, null as limits, "
           "null as error, 0 as violations, null as consent from r where n < 0")


def crafted_log(path: Path, flows: str) -> Path:
    """A real log whose `flows` is replaced by `flows` (SQL that creates it)."""
    new_log(path)
    with sqlite3.connect(path) as conn:
        conn.execute("pragma foreign_keys = off")
        conn.execute("drop table flows")
        conn.execute(flows)
    return path


REVIEWS = {
    "report": ["report"], "violations": ["violations"], "show": ["show", "1"],
    "export": ["export", "--format", "json"], "subject": ["subject", "someone@example.org"],
    "map": ["map", "--policy", str(POLICIES)], "policy draft": ["policy", "draft"],
}


@pytest.mark.parametrize("command", sorted(REVIEWS))
def test_review_commands_refuse_a_view_posing_as_a_table(tmp_path: Path, command: str) -> None:
    db = crafted_log(tmp_path / "audit.db", f"create view flows as {ENDLESS}")
    result = run(*REVIEWS[command], "--db", str(db), cwd=tmp_path, timeout=30,
                 GDPR_AUDIT_QUERY_SECONDS="5")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "flows" in error_text(result) and "not a table" in error_text(result)


def test_a_virtual_table_is_not_a_table_either(tmp_path: Path) -> None:
    db = crafted_log(tmp_path / "audit.db", "create virtual table flows using fts5(id, host)")
    result = run("export", "--db", str(db), cwd=tmp_path, timeout=30)
    assert result.returncode == 2
    assert "flows" in error_text(result) and "not a table" in error_text(result)


def test_a_query_over_its_time_budget_is_stopped(tmp_path: Path) -> None:
    """A real table can be slow too: a generated column costs what its creator wants, for
    every row it is read from (here a few ms a row, minutes in all)."""
    db = crafted_log(tmp_path / "audit.db", """create table flows (
        id text primary key, run_id int, source text, method text, scheme text, host text,
        path text, timestamp text, recipient text, recipient_kind text, purposes text,
        status text, limits text, error text, violations int, consent text)""")
    with sqlite3.connect(db) as conn:
        conn.executemany("insert into flows (id, run_id) values (?, 1)",
                         [(f"flow-{i}",) for i in range(100_000)])
        # added afterwards: SQLite computes the column for every row inserted after it;
        # `+ length(id)`: a constant expression would be computed once per query
        conn.execute("alter table flows add column slow int "
                     "generated always as (length(hex(zeroblob(2000000 + length(id))))) virtual")
    result = run("export", "--db", str(db), cwd=tmp_path, timeout=60, GDPR_AUDIT_QUERY_SECONDS="1")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "query took longer than 1 s: is this a real audit log?" in error_text(result)


def test_open_existing_budgets_each_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gdpr_audit.store import query_timeout  # (before the fix: no budget, and no such name)

    monkeypatch.setenv("GDPR_AUDIT_QUERY_SECONDS", "0.5")
    db = open_existing(str(new_log(tmp_path / "audit.db")))
    for _ in range(2):  # the budget is each query's, not the connection's
        with pytest.raises(sqlite3.OperationalError) as stopped:
            db.execute(f"select count(*) from ({ENDLESS})").fetchall()
        assert query_timeout(stopped.value) == (
            "query took longer than 0.5 s: is this a real audit log?")
    assert db.execute("select count(*) from runs").fetchone() == (1,)
    assert query_timeout(sqlite3.OperationalError("no such table: x")) is None


def test_purge_refuses_a_log_behind_a_symlink(tmp_path: Path) -> None:
    """purge rewrites the file (VACUUM): through a link it would rewrite what it points to."""
    real = tmp_path / "real.db"
    AuditStore(str(real)).db.close()
    link = tmp_path / "audit.db"
    link.symlink_to(real)
    before = real.read_bytes()
    result = subprocess.run([sys.executable, "-m", "gdpr_audit", "purge", "--older-than", "1d",
                             "--db", str(link)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "symbolic link" in result.stderr
    assert real.read_bytes() == before
