"""Erasure that reaches the disk: `forget` and `purge` (issue 18), in real processes on real files.

Testing strategy: a log is made by `gdpr-audit replay` of the sample captures plus a capture
written here (two registry subjects in one request, so that some violations rest on both
people). Before erasing, the test reads from the log what it holds of the person or of the old
flows (HMAC fingerprints, masked evidence no one else shares, subject id, flow ids); after
erasing, it searches the raw bytes of the database file and of its WAL for them. A reader
holding a snapshot in another process is what keeps old pages on disk: with one, the command
must say what is left and exit 3; once it is gone, running the command again must finish."""

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mitmproxy import io

from conftest import FLOW_TIME, make_flow
from test_cli import ROOT, identifier_forms
from test_review import POLICY, SUBJECTS, consistency, gdpr

EXIT_NOT_ON_DISK = 3
PERSON = "cust-003"  # never consented: missing-consent violations name her
EMAIL = SUBJECTS[PERSON]["identifiers"]["email"]
OTHER = SUBJECTS["cust-004"]["identifiers"]  # withdrew her newsletter consent


def write_capture(path: Path, flows: list) -> None:
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for flow in flows:
            writer.add(flow)


def shared_flows(at: datetime = FLOW_TIME) -> list:
    """Requests carrying both people: the violations they raise rest on both."""
    members = {"members": [{"email_address": EMAIL}, {"email_address": OTHER["email"]}]}
    tracker = {"user": {"email": EMAIL, "phone": OTHER["phone"]}}
    return [make_flow("https://us21.api.mailchimp.com/3.0/lists/a1b2c3/members", "POST",
                      json.dumps(members), {"content-type": "application/json"}, at),
            make_flow("https://collect.unknown-tracker.example/v1/identify", "POST",
                      json.dumps(tracker), {"content-type": "application/json"}, at)]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("erasure")
    write_capture(work / "shared.flow", shared_flows())
    write_capture(work / "recent.flow", shared_flows(datetime.now(UTC) - timedelta(days=1)))
    result = gdpr("replay", str(ROOT / "captures"), str(work / "shared.flow"),
                  str(work / "recent.flow"), "--policy", POLICY, "--db", "audit.db", cwd=work)
    assert result.returncode == 1, result.stderr
    return work / "audit.db"


@pytest.fixture
def db(log: Path, tmp_path: Path) -> Path:
    for path in log.parent.glob("audit.db*"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / "audit.db"


def on_disk(db: Path) -> bytes:
    """The database file and its WAL, as the disk holds them."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def found(db: Path, values: set[str]) -> set[str]:
    disk = on_disk(db).lower()
    return {v for v in values if v.lower().encode() in disk}


def held_by(db: Path, where: str, params: list[str]) -> set[str]:
    """What identifies the rows `where` selects and nothing else in the log: fingerprints,
    masked evidence, flow ids (violations' evidence is their first finding's)."""
    with sqlite3.connect(db) as conn:
        def values(condition: str) -> set[str]:
            return {v for row in conn.execute(
                f"""select x.fingerprint, x.evidence, x.flow_id, v.evidence from findings x
                    join flows f on f.id = x.flow_id left join violations v on v.flow_id = f.id
                    where {condition}""", params) for v in row if v}
        others = " ".join(values(f"not ({where})")).lower()
        return {v for v in values(where) if v.lower() not in others}  # `a*****` is in `a*******`


def person_values(db: Path) -> set[str]:
    theirs = held_by(db, "x.subject = ?", [PERSON])
    with sqlite3.connect(db) as conn:  # her flows stay: their ids are not hers
        theirs -= {row[0] for row in conn.execute("select id from flows")}
    identifiers = SUBJECTS[PERSON]["identifiers"].values()
    forms = {f for value in identifiers for f in identifier_forms(value)}
    return theirs | forms | {PERSON}


class Reader:
    """Another process holding a read transaction on the log, as a report or Datasette does."""

    SCRIPT = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("begin")
db.execute("select count(*) from findings").fetchone()
print("reading", flush=True)
sys.stdin.read()
db.execute("commit")
"""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(db)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout and self.process.stdout.readline() == "reading\n"

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


@pytest.fixture
def reader(db: Path) -> Iterator[Reader]:
    held = Reader(db)
    yield held
    if held.process.poll() is None:
        held.process.kill()
        held.process.wait()


def test_forget_leaves_nothing_of_the_person_in_the_file_or_its_wal(db: Path) -> None:
    values = person_values(db)
    assert PERSON in found(db, values) and any(len(v) == 32 for v in found(db, values))
    result = gdpr("forget", EMAIL, "--db", str(db), "--policy", POLICY, cwd=db.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Erased {PERSON} from {db}")
    assert found(db, values) == set()
    with sqlite3.connect(db) as conn:
        consistency(conn)
        # kept on the other person's evidence, and describing only what is left of it
        kept = dict(conn.execute("""select rule, message from violations where flow_id in
                                    (select id from flows where source like '%shared.flow#%')"""))
        assert kept["missing-consent"] == "cust-004 withdrew consent to newsletter on 2026-04-02"
        assert kept["undeclared-recipient"].startswith("phone sent to ")
        assert conn.execute("""select categories, subjects, subject from violations
                               where rule = 'undeclared-recipient' and flow_id in
                               (select id from flows where source like '%shared.flow#%')"""
                            ).fetchone() == ("phone", "cust-004", "cust-004")


def test_forget_says_what_a_reader_keeps_on_disk_and_finishes_once_it_is_gone(
        db: Path, reader: Reader) -> None:
    values = person_values(db)
    result = gdpr("forget", EMAIL, "--db", str(db), "--policy", POLICY, "--wait", "1",
                  cwd=db.parent)
    assert result.returncode == EXIT_NOT_ON_DISK, result.stdout + result.stderr
    assert "Erased" not in result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "another connection has the log open" in message and "run `gdpr-audit forget`" in message
    assert re.search(r"\d+ of the \d+ pages in \S+-wal", message)  # what is not copied back yet
    with sqlite3.connect(db) as conn:  # the tables are erased already...
        assert conn.execute("select count(*) from findings where subject = ?",
                            [PERSON]).fetchone() == (0,)
    assert found(db, values)  # ...but the disk is not, as the message says
    reader.close()
    again = gdpr("forget", EMAIL, "--db", str(db), "--policy", POLICY, cwd=db.parent)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"Erased {PERSON} from {db}")
    assert found(db, values) == set()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def old_values(db: Path) -> set[str]:
    """What only the sample captures' flows (June 2026) hold, and their subjects' ids."""
    old = held_by(db, "f.source not like '%recent.flow#%'", [])
    with sqlite3.connect(db) as conn:
        recent = {r[0] for r in conn.execute(
            """select subject from findings where flow_id in
               (select id from flows where source like '%recent.flow#%')""")}
    return old | (set(SUBJECTS) - recent)


def test_purge_leaves_nothing_of_old_flows_in_the_file_or_its_wal(db: Path) -> None:
    values = old_values(db)
    assert len(found(db, values)) > 100
    result = gdpr("purge", "--older-than", "30d", "--db", str(db), cwd=db.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Purged from {db}")
    assert found(db, values) == set()
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from flows").fetchone() == (2,)
        consistency(conn)


def test_purge_says_what_a_reader_keeps_on_disk_and_finishes_once_it_is_gone(
        db: Path, reader: Reader) -> None:
    values = old_values(db)
    result = gdpr("purge", "--older-than", "30d", "--db", str(db), "--wait", "1", cwd=db.parent)
    assert result.returncode == EXIT_NOT_ON_DISK, result.stdout + result.stderr
    assert "Purged" not in result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "another connection has the log open" in message and "run `gdpr-audit purge`" in message
    assert found(db, values)
    reader.close()
    again = gdpr("purge", "--older-than", "30d", "--db", str(db), cwd=db.parent)
    assert again.returncode == 0, again.stderr
    assert found(db, values) == set()


def test_a_reader_that_leaves_within_the_wait_is_waited_for(db: Path, reader: Reader) -> None:
    """sqlite3's own busy timeout (5 s) is not the wait: `--wait` is."""
    values = old_values(db)
    purge = subprocess.Popen([sys.executable, "-m", "gdpr_audit", "purge", "--older-than", "30d",
                              "--db", str(db), "--wait", "30"], cwd=db.parent,
                             env={"PYTHONPATH": str(ROOT / "addon"), "PATH": "/usr/bin:/bin"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with pytest.raises(subprocess.TimeoutExpired):
        purge.wait(timeout=6)
    reader.close()
    out, err = purge.communicate(timeout=30)
    assert purge.returncode == 0, out + err
    assert found(db, values) == set()


def test_erasing_runs_to_its_end_whatever_the_review_budget(db: Path) -> None:
    """GDPR_AUDIT_QUERY_SECONDS stops a review's statement (a crafted log's costly schema); an
    erasure stopped midway would be rolled back and keep the data, so the deletion and the
    VACUUM are not stopped."""
    tiny = {"GDPR_AUDIT_QUERY_SECONDS": "0.000001"}
    purged = gdpr("purge", "--older-than", "30d", "--db", str(db), cwd=db.parent, env=tiny)
    assert purged.returncode == 0, purged.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from flows").fetchone() == (2,)
