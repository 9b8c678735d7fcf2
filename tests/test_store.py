"""The audit log keeps links, not data. Strategy: audit real flows into a real SQLite file
and read the rows back with sqlite3 (not through the store)."""

import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from conftest import make_flow
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import Policy
from gdpr_audit.store import AuditStore, LogWriter, mask


def record(store: AuditStore, policy: Policy, *flows) -> None:
    auditor = Auditor(policy)
    run_id = store.start_run("test", policy.sources)
    store.record(run_id, [(auditor.audit(f), "test") for f in flows])
    store.finish_run(run_id, [])


@pytest.mark.parametrize("category, value, expected", [
    ("email", "marie.dupont@example.fr", "m***********@e******.fr"),
    ("phone", "+33612345678", "+***********"),
    ("name", "Jo", "**"),
])
def test_mask(category: str, value: str, expected: str) -> None:
    assert mask(category, value) == expected


def test_same_person_links_across_flows_and_encodings(tmp_path: Path, policy: Policy) -> None:
    store = AuditStore(str(tmp_path / "audit.db"))
    digest = hashlib.sha256(b"alice.martin@example.org").hexdigest()
    record(store, policy,
           make_flow("https://eu.mailer.test/a?email=Alice.Martin%40example.org"),
           make_flow(f"https://eu.mailer.test/b?em={digest}"),
           make_flow("https://eu.mailer.test/c?email=bob.durand%40example.org"))
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rows = db.execute("select subject, fingerprint from findings where category = 'email'").fetchall()
    by_subject: dict[str, set[str]] = {}
    for subject, fingerprint in rows:
        by_subject.setdefault(subject, set()).add(fingerprint)
    assert len(by_subject["alice"]) == 1 and len(rows) == 3
    assert by_subject["alice"] != by_subject["bob"]


def test_files_are_private_and_key_is_outside_the_log(tmp_path: Path, policy: Policy,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GDPR_AUDIT_KEY", raising=False)
    db_path = tmp_path / "audit.db"
    store = AuditStore(str(db_path))
    record(store, policy, make_flow("https://eu.mailer.test/a?email=alice.martin%40example.org"))
    key_file = Path(f"{db_path}.key")
    for path in (db_path, key_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.encode() not in db_path.read_bytes()


def test_another_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDPR_AUDIT_KEY", "first key")
    AuditStore(str(tmp_path / "audit.db"))
    monkeypatch.setenv("GDPR_AUDIT_KEY", "second key")
    with pytest.raises(ValueError, match="another fingerprint key"):
        AuditStore(str(tmp_path / "audit.db"))


def test_foreign_keys_and_evidence_links(tmp_path: Path, policy: Policy) -> None:
    store = AuditStore(str(tmp_path / "audit.db"))
    body = json.dumps({"a": "alice.martin@example.org", "b": "bob.durand@example.org"})
    record(store, policy, make_flow("http://collect.adnetwork.test/e", "POST", body,
                                    {"content-type": "application/json"}))
    with sqlite3.connect(tmp_path / "audit.db") as db:
        assert db.execute("pragma foreign_key_check").fetchall() == []
        tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
        assert {"runs", "flows", "findings", "violations", "violation_findings"} <= tables
        links = db.execute("""select v.rule, count(*) from violation_findings l
                              join violations v on v.id = l.violation_id group by v.rule""").fetchall()
    assert dict(links) == {"clear-text": 2, "undeclared-recipient": 2}


def test_every_foreign_key_is_indexed_so_replacing_flows_never_scans_a_table(
        tmp_path: Path) -> None:
    """Deleting a parent row makes SQLite look up its children: without an index on the
    child's column that is a scan of the child table for every row deleted (a capture
    replayed again into its log took twice as long)."""
    AuditStore(str(tmp_path / "audit.db"))
    with sqlite3.connect(tmp_path / "audit.db") as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
        checked = 0
        for table in tables:
            for key in db.execute(f"pragma foreign_key_list({table})").fetchall():
                column = key[3]
                plan = " ".join(row[3] for row in db.execute(
                    f"explain query plan select 1 from {table} where {column} = ?", [0]))
                assert "USING" in plan and "INDEX" in plan, (table, column, plan)
                checked += 1
    assert checked >= 6


def test_redacted_path_and_field(tmp_path: Path, policy: Policy) -> None:
    store = AuditStore(str(tmp_path / "audit.db"))
    record(store, policy,
           make_flow("https://collect.adnetwork.test/u/alice.martin@example.org/x?ref=abc&q=C-9001"))
    with sqlite3.connect(tmp_path / "audit.db") as db:
        [path] = db.execute("select path from flows").fetchone()
    assert path == "/u/{email}/x?ref=*&q=*"  # query values are never kept


def test_identifiers_in_keys_hosts_and_encodings_are_not_logged(tmp_path: Path, policy: Policy) -> None:
    """Traffic text that is not a value (JSON keys, host labels, header values quoted in
    limit messages) must not carry an identifier into the log either."""
    store = AuditStore(str(tmp_path / "audit.db"))
    body = json.dumps({"contacts": {"Alice Martin": {"email": "alice.martin@example.org"},
                                    "C-9001": {"phone": "+33612345601"}}})
    record(store, policy,
           make_flow("https://collect.adnetwork.test/e", "POST", body,
                     {"content-type": "application/json"}),
           make_flow("https://c-9001.collect.adnetwork.test/e?x=1"),
           make_flow("https://collect.adnetwork.test/z", "POST", b"\x1f\x8b",
                     {"content-encoding": "gzip, alice.martin@example.org"}))
    data = (tmp_path / "audit.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("audit.db-*"))
    for value in (b"Alice Martin", b"alice martin", b"C-9001", b"c-9001", b"alice.martin@example.org"):
        assert value not in data


def test_hostile_places_neither_hide_nor_leak_identifiers(tmp_path: Path, policy: Policy) -> None:
    """Identifiers used as JSON keys, cookie names, host labels, HTTP methods, checkbox names
    and consent cookie vendor names: found (so the flow is judged) and never stored raw."""
    store = AuditStore(str(tmp_path / "audit.db"))
    page_flow = make_flow("https://shop.test/signup")
    page_flow.response.headers["content-type"] = "text/html"
    page_flow.response.content = (b'<input type="checkbox" name="newsletter_alice.martin@example.org" '
                                  b'checked> Je veux la newsletter')
    keyed = make_flow("https://collect.adnetwork.test/e", "POST",
                      json.dumps({"alice.martin@example.org": {"score": 3}}),
                      {"content-type": "application/json",
                       "cookie": "uid_alice.martin@example.org=1"})
    consent_cookie = make_flow("https://shop.test/", headers={"cookie": "tarteaucitron=!Alice Martin=true"})
    odd_method = make_flow("https://alice-martin.adnetwork.test/x?email=bob.durand%40example.org")
    odd_method.request.method = "GET alice.martin@example.org"
    record(store, policy, page_flow, keyed, odd_method, consent_cookie)
    with sqlite3.connect(tmp_path / "audit.db") as db:
        rules = {flow_id: {r for (r,) in db.execute(
            "select rule from violations where flow_id = ?", [flow_id])}
            for flow_id in (page_flow.id, keyed.id)}
    assert rules[page_flow.id] == {"pre-ticked-consent"}
    # the only identifier of this flow is a JSON key and a cookie name
    assert "undeclared-recipient" in rules[keyed.id]
    data = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*")).lower()
    for value in (b"alice.martin@example.org", b"alice martin", b"alice-martin", b"bob.durand"):
        assert value not in data, value


def test_an_array_of_people_is_one_finding_per_shape_but_subjects_stay_apart(
        tmp_path: Path, policy: Policy) -> None:
    """A 500-event batch of strangers' emails is one row with its count, not 500 rows;
    the registry's people in the same batch still get a row each, naming them."""
    events = [{"email": f"stranger{n}@mail.example", "anonymousId": f"anon-{n:06d}"}
              for n in range(500)]
    events[7]["email"] = "alice.martin@example.org"
    events[300]["email"] = "bob.durand@example.org"
    store = AuditStore(str(tmp_path / "audit.db"))
    record(store, policy, make_flow("https://api.analytics.test/v1/batch", "POST",
                                    json.dumps({"batch": events}),
                                    {"content-type": "application/json"}))
    db = sqlite3.connect(tmp_path / "audit.db")
    rows = db.execute("select category, subject, field, count from findings "
                      "order by category, subject").fetchall()
    strangers = [r for r in rows if r[0] == "email" and r[1] is None]
    assert strangers == [("email", None, "batch[*].email", 498)]
    assert ("email", "alice", "batch[7].email", 1) in rows
    assert ("email", "bob", "batch[300].email", 1) in rows
    assert sum(r[3] for r in rows if r[0] == "device_id") == 500
    assert len(rows) < 10


def test_an_element_that_holds_a_value_twice_counts_once(tmp_path: Path, policy: Policy) -> None:
    events = [{"email": f"stranger{n}@mail.example"} for n in range(50)]
    events[9]["email"] = "stranger9@mail.example, cc stranger9@mail.example"
    events[20]["email"] = "stranger20@mail.example, cc copy@mail.example"
    store = AuditStore(str(tmp_path / "audit.db"))
    record(store, policy, make_flow("https://api.analytics.test/v1/batch", "POST",
                                    json.dumps({"batch": events}),
                                    {"content-type": "application/json"}))
    db = sqlite3.connect(tmp_path / "audit.db")
    rows = db.execute("select category, field, count from findings").fetchall()
    assert rows == [("email", "batch[*].email", 51)]


def test_long_key_names_stay_readable_but_id_like_keys_are_starred(
        tmp_path: Path, policy: Policy) -> None:
    body = {"productListImpressionsClicked": {"contactEmail": "stranger@mail.example"},
            "ga_4f3a9c2b1d0e8f7a1b2c": {"contactEmail": "other@mail.example"}}
    store = AuditStore(str(tmp_path / "audit.db"))
    record(store, policy, make_flow("https://api.analytics.test/v1/t", "POST", json.dumps(body),
                                    {"content-type": "application/json"}))
    db = sqlite3.connect(tmp_path / "audit.db")
    fields = {row[0] for row in db.execute("select field from findings where category = 'email'")}
    assert fields == {"productListImpressionsClicked.contactEmail", "{id}.contactEmail"}


def test_the_log_writer_commits_what_arrives_together_and_flushes_at_once(
        tmp_path: Path, policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    record_audits = AuditStore.record

    def counted(self: AuditStore, run_id: int, audits) -> None:
        audits = list(audits)
        batches.append(len(audits))
        record_audits(self, run_id, audits)

    monkeypatch.setattr(AuditStore, "record", counted)
    writer = LogWriter(str(tmp_path / "log.db"), "test", policy.sources, gather=30)
    auditor = Auditor(policy)
    started = time.monotonic()
    for n in range(5):
        writer.submit(auditor.audit(make_flow(f"https://tracker.example/?n={n}")), "test")
        time.sleep(0.05)  # audits trickling in, as from a proxy: the writer is waiting
    writer.flush()
    assert time.monotonic() - started < 10  # flush() ends the gathering: not 30 s
    assert batches == [5]  # one transaction for the five
    writer.submit(auditor.audit(make_flow("https://tracker.example/?n=5")), "test")
    writer.close()
    flushing = threading.Thread(target=writer.flush, daemon=True)  # after close(): returns
    flushing.start()
    flushing.join(10)
    assert not flushing.is_alive()
    assert batches == [5, 1]
    with sqlite3.connect(tmp_path / "log.db") as conn:
        assert conn.execute("select count(*), max(finished) is not null from flows, runs"
                            ).fetchone() == (6, 1)
