"""Replay cut into chunks that worker processes read and audit: the same flows, sources,
errors and log rows as reading each capture whole with mitmproxy's reader in one process.

Strategy: chunks made tiny (so that every capture spans many of them and damage falls in the
middle of the run), real forked workers, real sample captures damaged in the ways that
mitmproxy's reader fails (framing, a record that frames but does not parse, a record that
parses but is no flow), and the log written in batches compared row for row, ids included,
with flows written one at a time."""

import json
import os
import sqlite3
import time
from io import BytesIO
from pathlib import Path

import pytest
from mitmproxy import exceptions, http, io
from mitmproxy.io import tnetstring
from mitmproxy.test import tflow

from gdpr_audit import audit, captures
from gdpr_audit.audit import Auditor, FlowAudit
from gdpr_audit.captures import CaptureReader
from gdpr_audit.detectors import base
from gdpr_audit.entities import entity_index
from gdpr_audit.parallel import ParallelAudits
from gdpr_audit.policy import load_policy
from gdpr_audit.recipients import public_suffixes
from gdpr_audit.store import AuditStore

ROOT = Path(__file__).resolve().parents[1]
BACKEND = (ROOT / "captures" / "backend.flow").read_bytes()
AUDITOR = Auditor(load_policy(ROOT / "policies"))


def ends(data: bytes) -> list[int]:
    """Where each flow ends, read whole with mitmproxy's reader."""
    stream = BytesIO(data)
    found = []
    for _ in io.FlowReader(stream).stream():
        found.append(stream.tell())
    return found


ENDS = ends(BACKEND)


def summary(audit: FlowAudit, source: str) -> tuple[str, str, str, tuple[str, ...]]:
    return (source, audit.flow_id, audit.status, tuple(v.rule for v in audit.violations))


def whole(paths: list[Path]) -> tuple[list[tuple], list[str]]:
    """The oracle: each .flow file read whole by mitmproxy's reader, flow after flow, in this
    process, the error made as before captures were cut into chunks; HAR in one chunk."""
    flows: list[tuple] = []
    errors: list[str] = []
    for path in CaptureReader([str(p) for p in paths]).files():
        if path.suffix == ".har":
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(captures, "_CHUNK_FLOWS", 10**9)
                reader = CaptureReader([str(path)])
                flows += [summary(AUDITOR.audit(flow), source) for flow, source in reader.flows()]
            errors += map(str, reader.errors)
            continue
        with path.open("rb") as handle:
            offset = index = 0
            try:
                for flow in io.FlowReader(handle).stream():
                    if isinstance(flow, http.HTTPFlow):
                        flows.append(summary(AUDITOR.audit(flow), f"{path}#{index}"))
                    index += 1
                    offset = handle.tell()
            except Exception as e:
                problem = e if isinstance(e, exceptions.FlowReadException) else (
                    f"not a flow record ({type(e).__name__})")
                errors.append(f"{path}: byte offset {offset}: damaged or truncated flow data "
                              f"after {index} complete flow(s) ({path.stat().st_size - offset} "
                              f"bytes not read): {problem}")
    return flows, errors


def chunked(paths: list[Path], jobs: int, prepare=summary) -> tuple[list[tuple], list[str]]:
    reader = CaptureReader([str(p) for p in paths])
    with ParallelAudits(AUDITOR, jobs, prepare) as parallel:
        assert (parallel.pool is not None) == (jobs > 1), "the workers were not forked"
        flows = list(parallel.audits(reader))
    return flows, [str(e) for e in reader.errors]


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(captures, "_CHUNK_FLOWS", 3)


@pytest.fixture
def damaged(tmp_path: Path) -> list[Path]:
    """Captures damaged past their first chunks, and intact ones after them."""
    files = {
        "cut.flow": BACKEND[:ENDS[10] + 50],
        "prefix.flow": BACKEND[:ENDS[7]] + b"XXXXXX" + BACKEND[ENDS[7] + 6:],
        "inner.flow": BACKEND[:ENDS[8] + 30] + b"\xff\xff\xff" + BACKEND[ENDS[8] + 33:],
        "no-flow.flow": BACKEND[:ENDS[5]] + tnetstring.dumps({"x": 1}) + BACKEND[ENDS[5]:],
        "trailing.flow": BACKEND + b"\x00junk",
        "garbage.flow": b"\x00\x01noise" * 50,
        "big-prefix.flow": BACKEND[:ENDS[4]] + b"99999999:" + BACKEND[ENDS[4]:],
    }
    state = tflow.tflow().get_state()
    del state["marked"]
    files["not-a-state.flow"] = BACKEND[:ENDS[6]] + tnetstring.dumps(state) + BACKEND[ENDS[6]:]
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    return [*paths, ROOT / "captures" / "backend.flow", *paths[:2]]  # a file named twice too


def test_framing_finds_every_record_mitmproxy_reads(tiny_chunks: None) -> None:
    chunks = list(CaptureReader([str(ROOT / "captures" / "backend.flow")]).chunks())
    assert len(chunks) == -(-len(ENDS) // 3)
    assert [c.end for c in chunks] == ENDS[2::3] + ([ENDS[-1]] if len(ENDS) % 3 else [])
    assert [c.first for c in chunks] == list(range(0, len(ENDS), 3))


def test_every_truncation_reads_as_mitmproxy_reads_it_whole(tmp_path: Path,
                                                           tiny_chunks: None) -> None:
    path = tmp_path / "cut.flow"
    cuts = {*range(0, len(BACKEND), 211), *ENDS, *(e - 1 for e in ENDS), *(e + 1 for e in ENDS)}
    for cut in sorted(c for c in cuts if c <= len(BACKEND)):
        path.write_bytes(BACKEND[:cut])
        reader = CaptureReader([str(path)])
        flows = [source for _, source in reader.flows()]
        complete = [e for e in ENDS if e <= cut]
        assert flows == [f"{path}#{i}" for i in range(len(complete))], cut
        if cut in (0, *ENDS):
            assert not reader.errors or cut == 0, cut  # an empty file is an error of its own
        else:
            [error] = reader.errors
            offset = complete[-1] if complete else 0
            assert error.where == f"byte offset {offset}", cut
            assert (f"after {len(complete)} complete flow(s) ({cut - offset} bytes not read): "
                    "Invalid data format.") in error.message, cut


def test_damaged_captures_chunked_in_workers_match_reading_them_whole(
        damaged: list[Path], tiny_chunks: None) -> None:
    expected = whole(damaged)
    assert len(expected[1]) == 10 and len(expected[0]) > 100
    assert chunked(damaged, 1) == expected
    assert chunked(damaged, 2) == expected


def test_har_entries_chunked_in_workers_match_reading_them_whole(tmp_path: Path,
                                                                 tiny_chunks: None) -> None:
    document = json.loads((ROOT / "captures" / "browser.har").read_text())
    del document["log"]["entries"][4]["request"]
    document["log"]["entries"][7] = [1, 2]
    odd = tmp_path / "odd.har"
    odd.write_text(json.dumps(document))
    cut = tmp_path / "cut.har"
    cut.write_text(odd.read_text()[:len(odd.read_text()) * 2 // 3])
    paths = [odd, cut, ROOT / "captures"]
    expected = whole(paths)
    assert len(expected[1]) == 5
    assert chunked(paths, 1) == expected
    assert chunked(paths, 2) == expected


def killing_summary(audit: FlowAudit, source: str) -> tuple:
    """Kills the worker that audits the 9th flow of backend.flow; harmless in the parent."""
    if source.endswith("backend.flow#9") and os.getpid() != PARENT:
        os._exit(1)
    return (*summary(audit, source), os.getpid() == PARENT)


PARENT = os.getpid()


def test_a_killed_worker_costs_nothing(damaged: list[Path], tiny_chunks: None) -> None:
    paths = [ROOT / "captures", *damaged]
    flows, errors = chunked(paths, 2, killing_summary)
    assert any(f[-1] for f in flows) and not all(f[-1] for f in flows)  # the worker did die
    assert ([f[:-1] for f in flows], errors) == whole(paths)


LAZY_PARTS = (base.hint_database, public_suffixes, entity_index)  # noqa: SLF001


def builds(audit: FlowAudit, source: str) -> tuple[bool, list[int]]:
    return os.getpid() != PARENT, [part.cache_info().misses for part in LAZY_PARTS]


def test_workers_share_what_the_audit_builds_lazily_built_before_they_forked(
        monkeypatch: pytest.MonkeyPatch, tiny_chunks: None) -> None:
    """The screening database, the Public Suffix List and the entity index are built once,
    in the replaying process, and never again in a worker."""
    monkeypatch.setattr(audit, "_SCREEN_FROM", 1)  # every flow screened
    for part in LAZY_PARTS:
        part.cache_clear()
    flows, _ = chunked([ROOT / "captures" / "backend.flow"], 2, builds)
    assert [part.cache_info().misses for part in LAZY_PARTS] == [1, 1, 1]
    assert len(flows) > 10 and {(worker, tuple(misses)) for worker, misses in flows} == {
        (True, (1, 1, 1))}


def test_batched_log_rows_equal_flows_written_one_at_a_time(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Row ids included: in a fresh log, over an existing one, and with one flow twice in a
    batch (the later replaces the earlier, as when written one at a time)."""
    monkeypatch.setenv("GDPR_AUDIT_KEY", "one key for both logs")
    flows = [flow for flow, _ in CaptureReader([str(ROOT / "captures")]).flows()]
    audits = [(AUDITOR.audit(flow), f"#{n}") for n, flow in enumerate(flows)]
    batches = [audits[:40], audits[30:] + audits[5:8] + audits[:2]]
    dumps = []
    for name, sizes in (("batched", None), ("single", 1)):
        store = AuditStore(str(tmp_path / f"{name}.db"))
        for batch in batches:
            run = store.start_run("test", ["p"])
            for start in range(0, len(batch), sizes or len(batch)):
                store.record(run, batch[start:start + (sizes or len(batch))])
            store.finish_run(run, [])
        store.db.conn.commit()
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            dumps.append({table: conn.execute(f"select * from {table} order by rowid").fetchall()
                          for table in ("flows", "findings", "violations",
                                        "violation_findings")})
            dumps[-1]["runs"] = conn.execute("select flows, violations from runs").fetchall()
    batched, single = dumps
    assert batched["violation_findings"] and batched["flows"]
    assert batched == single


def test_the_workers_start_before_the_first_result_is_asked_for(tmp_path: Path) -> None:
    """So that what the replay does meanwhile (opening its log) keeps no core idle."""
    def marking(audit: FlowAudit, source: str) -> str:
        (tmp_path / source.rpartition("#")[2]).touch()
        return source

    reader = CaptureReader([str(ROOT / "captures" / "backend.flow")])
    with ParallelAudits(AUDITOR, 2, marking) as parallel:
        audits = parallel.audits(reader)
        for _ in range(600):  # the first flow audited by a worker, not by asking for it
            if (tmp_path / "0").exists():
                break
            time.sleep(0.05)
        assert (tmp_path / "0").exists()
        assert len(list(audits)) == len(ENDS)


def test_the_last_chunks_are_audited_biggest_first(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """So that no worker is left alone with a big chunk at the end. One flow a chunk, each
    slow enough that the last chunks are still waiting when the capture is all cut."""
    monkeypatch.setattr(captures, "_CHUNK_FLOWS", 1)
    started = tmp_path / "started"

    def slow(audit: FlowAudit, source: str) -> str:
        with started.open("a") as out:
            out.write(source.rpartition("#")[2] + "\n")
        time.sleep(0.2)
        return source

    reader = CaptureReader([str(ROOT / "captures" / "backend.flow")])
    with ParallelAudits(AUDITOR, 2, slow) as parallel:
        assert len(list(parallel.audits(reader))) == len(ENDS) == 24
    sizes = [end - start for start, end in zip([0, *ENDS], ENDS, strict=False)]
    last = [sizes[int(n)] for n in started.read_text().split()[-8:]]
    # the two workers may write the chunks they take at once in either order
    assert all(a > b for a, b in zip(last, last[2:], strict=False)), last
    assert not all(a > b for a, b in zip(sizes[-8:], sizes[-6:], strict=False))  # not so in the file
