"""Performance benchmarks, side by side with their baselines in one run (SPEC 4).

    .venv/bin/python bench/perf.py [--quick] [--only replay,proxy,registry] [--count N] [--rounds N]
                                   [--mix batches,issue] [--uploads]

Each section measures the product and its baseline in alternating rounds on the same input
and reports medians and the ratio; absolute times on a shared 2-core machine mean little.
Results go to standard output, and a full run of every section to bench/RESULTS.md.

- replay: mitmproxy's FlowReader reading a corpus of realistic marketing flows (bare) against
  reading + auditing each flow, and against `gdpr-audit replay` end to end (SQLite included),
  in wall-clock time and in CPU time. Two corpora, each with its own bare read: `batches` (1 in
  100 flows a 1-5 MB JSON batch; `--uploads` adds text logs and media), and `issue`, the mix
  issue 19 describes of its own corpus (ISSUE_MIX: per 1,115 flows, 4 JSON batches, a 6 MB
  JSON import, a 3 MB text log, two 3 MB JPEG photos, the rest small tracker and API calls).
- proxy: requests per second and latency through mitmdump alone and through mitmdump with
  the addon, from wrk on loopback, the proxy answering itself (nothing leaves the machine).
- registry: 1k, 10k and 100k subjects: load time, memory, per-flow audit time.
"""

import argparse
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "addon"))
sys.path.insert(0, str(ROOT / "bench"))

from mitmproxy import http, io  # noqa: E402
from proxy_bench import bench_proxy  # noqa: E402
from registry_bench import bench_registry  # noqa: E402
from timing import kind_of, median_of  # noqa: E402

from gdpr_audit.audit import Auditor  # noqa: E402
from gdpr_audit.captures import CaptureReader  # noqa: E402
from gdpr_audit.parallel import ParallelAudits, default_jobs  # noqa: E402
from gdpr_audit.policy import load_policy  # noqa: E402

PYTHON = sys.executable
_CLI_WITH_CPU = ("import atexit, sys, time\n"
                 "atexit.register(lambda: print(time.process_time(), file=sys.stderr))\n"
                 "from gdpr_audit.__main__ import run\nsys.argv[0] = 'gdpr-audit'\nrun()")
BIN = Path(sys.executable).parent
_PATH = os.pathsep.join([str(ROOT / "addon"), *filter(None, [os.environ.get("PYTHONPATH")])])
"""The processes measured import this tree first, and what PYTHONPATH held besides."""


# --- replay ---------------------------------------------------------------------------------

def make_corpus(path: Path, count: int, big_every: int = 100, seed: int = 7,
                uploads: bool = False, mix: str = "batches") -> int:
    """`count` flows cloned from the sample captures (realistic CRM, analytics, ads and
    payment traffic), with fresh ids, and one flow in `big_every` carrying a 1-5 MB body.
    With `uploads`, also one flow in UPLOAD_EVERY a text upload (a 0.2-1 MB log) and one in
    MEDIA_EVERY a media upload (a 1-3 MB JPEG with EXIF, or a PDF with its author).
    With mix "issue", the proportions of ISSUE_MIX instead."""
    rng = random.Random(seed)
    templates = [flow for flow, _ in CaptureReader([str(ROOT / "captures")]).flows()]
    size = 0
    with path.open("wb") as out:
        writer = io.FlowWriter(out)
        for index in range(count):
            flow = rng.choice(templates).copy()
            flow.id = str(uuid.UUID(int=rng.getrandbits(128)))
            _vary(flow, rng)
            if mix == "issue":
                _issue_flow(flow, rng, index)
            elif index % big_every == big_every - 1:
                _batch(flow, rng, rng.randint(10_000, 50_000))
            elif uploads and index % UPLOAD_EVERY == UPLOAD_EVERY // 2:
                _upload(flow, rng, "text/plain", _log_text(rng, rng.randint(200_000, 1_000_000)))
            elif uploads and index % MEDIA_EVERY == MEDIA_EVERY // 3:
                media = jpeg(rng) if index // MEDIA_EVERY % 2 == 0 else _pdf(rng)
                _upload(flow, rng, "image/jpeg" if media[:2] == b"\xff\xd8" else "application/pdf",
                        media)
            size += len(flow.request.raw_content or b"")
            writer.add(flow)
    return size


def _batch(flow: http.HTTPFlow, rng: random.Random, events: int) -> None:
    """A Segment batch of `events` product views (about 115 bytes each)."""
    batch = [{"event": "product_viewed", "sku": f"SKU-{n:06d}", "page": f"/p/{n}",
              "anonymousId": str(uuid.UUID(int=rng.getrandbits(128)))} for n in range(events)]
    _post(flow, "https://api.segment.io/v1/batch", "application/json",
          json.dumps({"batch": batch}).encode())


ISSUE_BLOCK = 1115
"""Mix "issue": what issue 19 describes of its own corpus (1,115 flows, 26 MB: tracker hits,
CRM and marketing API calls, a few big JSON batches, a 6 MB JSON import, a 3 MB text log and
two JPEG photos of about 3 MB), repeated every ISSUE_BLOCK flows. Fixed before measuring."""
ISSUE_MIX = {  # position in the block: what that flow carries
    100: "batch", 380: "batch", 660: "batch", 940: "batch",  # 1.5-3.5 MB each, ~10 MB in all
    500: "import",  # a CRM contact import: 6 MB of JSON (names, emails, phones)
    800: "log",  # a 3 MB text log
    250: "jpeg", 1050: "jpeg",  # ~3 MB photos with EXIF
}
"""...the other 1,107 flows of a block are small ones cloned from captures/ (~0.2 MB in all):
the 4 batches take the ~10 MB that the 26 MB leaves beside the bodies the issue names."""


def _issue_flow(flow: http.HTTPFlow, rng: random.Random, index: int) -> None:
    kind = ISSUE_MIX.get(index % ISSUE_BLOCK)
    if kind == "batch":
        _batch(flow, rng, rng.randint(13_000, 30_000))
    elif kind == "import":
        _post(flow, "https://api.hubapi.com/crm/v3/objects/contacts/batch/create",
              "application/json", _contacts(rng, 6_000_000))
    elif kind == "log":
        _upload(flow, rng, "text/plain", _log_text(rng, 3_000_000))
    elif kind == "jpeg":
        _upload(flow, rng, "image/jpeg", jpeg(rng, 2000))


def _contacts(rng: random.Random, size: int) -> bytes:
    """A CRM import of about `size` bytes: contacts with a name, an email, a phone, a city."""
    first = ("Camille", "Louis", "Emma", "Hugo", "Chloé", "Lucas", "Léa", "Jules", "Manon")
    last = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")
    cities = ("Paris", "Lyon", "Marseille", "Toulouse", "Nantes", "Lille", "Rennes")
    contacts, total = [], 0
    while total < size:
        given, family = rng.choice(first), rng.choice(last)
        contact = {"properties": {
            "firstname": given, "lastname": family,
            "email": f"{given.lower()}.{family.lower()}{rng.randint(1, 9999)}@example.fr",
            "phone": f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
                     f"{rng.randint(10, 99)}",
            "city": rng.choice(cities), "lifecyclestage": "lead"}}
        contacts.append(contact)
        total += len(json.dumps(contact, ensure_ascii=False)) + 2
    return json.dumps({"inputs": contacts}, ensure_ascii=False).encode()


def _post(flow: http.HTTPFlow, url: str, content_type: str, body: bytes) -> None:
    flow.request.url = url
    flow.request.method = "POST"
    flow.request.headers["content-type"] = content_type
    flow.request.headers.pop("content-encoding", None)
    flow.request.content = body


UPLOAD_EVERY = 250
"""With uploads: one flow in this many is a text upload (a log, 0.2-1 MB)..."""
MEDIA_EVERY = 500
"""...and one in this many a media upload (a 1-3 MB JPEG, or a PDF)."""


def _upload(flow: http.HTTPFlow, rng: random.Random, content_type: str, body: bytes) -> None:
    _post(flow, f"https://upload.example-saas.com/v1/files/{rng.getrandbits(32):08x}",
          content_type, body)


def _log_text(rng: random.Random, size: int) -> bytes:
    """An application log, as support tools upload it: timestamps, levels, words, ids."""
    words = ("commande", "client", "livraison", "paiement", "erreur", "session", "panier",
             "produit", "stock", "retour", "OK", "200", "GET", "POST", "/api/v2/orders")
    lines, total = [], 0
    while total < size:
        line = (f"2026-06-15T10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z INFO "
                + " ".join(rng.choice(words) for _ in range(12)) + f" id={rng.getrandbits(40)}")
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines).encode()


def jpeg(rng: random.Random, side: int | None = None) -> bytes:
    """A photo of 1-3 MB (3 MB at side 2000): noise compresses badly, as a camera's sensor
    noise does."""
    import io as bytes_io

    from PIL import Image
    side = side or rng.randint(1100, 2000)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    exif = Image.Exif()
    exif[0x013B] = "Photographer"  # Artist
    out = bytes_io.BytesIO()
    image.save(out, "JPEG", quality=85, exif=exif)
    return out.getvalue()


def _pdf(rng: random.Random) -> bytes:
    """A PDF of about 1 MB: an Info dictionary with an author, and a binary stream."""
    stream = rng.randbytes(1_000_000)
    return (b"%PDF-1.4\n1 0 obj << /Author (Service client) /Title (Facture) >> endobj\n"
            b"2 0 obj << /Length " + str(len(stream)).encode() + b" >> stream\n" + stream
            + b"\nendstream endobj\ntrailer << /Info 1 0 R >>\n%%EOF\n")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EPOCH = re.compile(r"(?<!\d)1[5-7]\d{8}(?:\d{3})?(?!\d)")


def _vary(flow: http.HTTPFlow, rng: random.Random) -> None:
    """What differs from one request to the next in real traffic, so that no cache can
    answer a clone for free: fresh ids and timestamps, a request id and a cache-buster."""
    def fresh(text: str) -> str:
        text = _UUID.sub(lambda m: str(uuid.UUID(int=rng.getrandbits(128))), text)
        return _EPOCH.sub(lambda m: str(rng.randrange(10 ** (len(m.group()) - 1),
                                                     2 * 10 ** (len(m.group()) - 1))), text)
    request = flow.request
    request.path = fresh(request.path)
    request.query["_"] = str(rng.randrange(1_600_000_000_000, 1_800_000_000_000))
    request.headers["x-request-id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    if "cookie" in request.headers:
        request.headers["cookie"] = fresh(request.headers["cookie"])
    body = request.get_text(strict=False)
    if body:
        request.set_text(fresh(body))


def _cpu_ticks() -> list[int]:
    """The machine's CPU time so far, by state (user, nice, system, idle...), from /proc/stat."""
    with open("/proc/stat") as stat:
        return [int(n) for n in stat.readline().split()[1:]]


def _worker_split(corpus: Path, auditor: Auditor, jobs: int) -> tuple[list[float], float, float]:
    """Each worker's CPU time, the replaying side's, and the wall-clock time of auditing the
    corpus with `jobs` workers (no log): how evenly the work spreads, which decides the
    speed-up that free cores would give, whatever else runs on the machine now."""
    def prepare(audit: object, source: str) -> tuple[int, float]:
        return os.getpid(), time.process_time()  # a forked worker's CPU time starts at 0

    start, cpu = time.perf_counter(), time.process_time()
    last: dict[int, float] = {}
    with ParallelAudits(auditor, jobs, prepare) as parallel:
        for pid, used in parallel.audits(CaptureReader([str(corpus)])):
            last[pid] = used
    workers = sorted(used for pid, used in last.items() if pid != os.getpid())
    return workers, time.process_time() - cpu, time.perf_counter() - start


def bench_replay(folder: Path, count: int, rounds: int, uploads: bool = False,
                 mix: str = "batches") -> list[str]:
    corpus = folder / "corpus.flow"
    body_bytes = make_corpus(corpus, count, uploads=uploads, mix=mix)
    auditor = Auditor(load_policy(ROOT / "policies"))

    def bare() -> float:
        start = time.perf_counter()
        with corpus.open("rb") as handle:
            flows = sum(1 for _ in io.FlowReader(handle).stream())
        assert flows == count
        return time.perf_counter() - start

    split: dict[str, list[float]] = {}

    def audited() -> float:
        start = time.perf_counter()
        with corpus.open("rb") as handle:
            for flow in io.FlowReader(handle).stream():
                began = time.perf_counter()
                auditor.audit(flow)
                kind = split.setdefault(kind_of(flow), [0.0, 0])
                kind[0] += time.perf_counter() - began
                kind[1] += 1
        return time.perf_counter() - start

    own_cpu: dict[int, list[float]] = {}
    all_cpu: dict[int, list[float]] = {}
    idle: list[float] = []

    def cli(jobs: int) -> Callable[[], float]:
        def run() -> float:
            db = folder / "replay.db"
            for stale in folder.glob("replay.db*"):
                stale.unlink()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            machine = _cpu_ticks()
            start = time.perf_counter()
            # what the gdpr-audit script does, and then the replaying process's own CPU time
            # (time.process_time counts no worker), to see whether it is the bottleneck
            result = subprocess.run([PYTHON, "-c", _CLI_WITH_CPU, "replay", str(corpus), "--policy",
                                     str(ROOT / "policies"), "--db", str(db), "--jobs", str(jobs)],
                                    capture_output=True, cwd=folder,
                                    env={**os.environ, "CI": "1", "PYTHONPATH": _PATH})
            assert result.returncode in (0, 1), result.stderr
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers included
            ticks = [b - a for a, b in zip(machine, _cpu_ticks(), strict=True)]
            idle.append(ticks[3] / max(sum(ticks), 1))
            own_cpu.setdefault(jobs, []).append(float(result.stderr.split()[-1]))
            all_cpu.setdefault(jobs, []).append(after.ru_utime + after.ru_stime
                                                - before.ru_utime - before.ru_stime)
            return elapsed
        return run

    def cli_bare() -> float:
        """A process that only reads: Python's and mitmproxy's start-up, not ours (our imports
        and set-up are part of what auditing costs)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([PYTHON, "-c", "import sys\nfrom mitmproxy import io\n"
                        "with open(sys.argv[1], 'rb') as f:\n    n = sum(1 for _ in io.FlowReader(f).stream())",
                        str(corpus)], check=True, env={**os.environ, "PYTHONPATH": _PATH})
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        all_cpu.setdefault(0, []).append(after.ru_utime + after.ru_stime
                                         - before.ru_utime - before.ru_stime)
        return elapsed

    cores = default_jobs()
    t_bare, t_audit, t_cli_bare, t_one, t_all = median_of(rounds, bare, audited, cli_bare, cli(1),
                                                          cli(cores))
    mb = body_bytes / 1e6
    workers, main_cpu, split_wall = _worker_split(corpus, auditor, cores)
    cpu = {jobs: statistics.median(samples) / count * 1000 for jobs, samples in own_cpu.items()}
    total = {jobs: statistics.median(samples) for jobs, samples in all_cpu.items()}
    # On free cores, `--jobs N` would take its CPU time over N (the workers' spread is below),
    # and the bare read its own: the ratio these say, whatever else the machine runs now.
    free = {jobs: total[0] / (total[jobs] / jobs) for jobs in (1, cores)}
    spent = sum(seconds for seconds, _ in split.values())
    return [
        f"Corpus: {count} flows cloned from captures/, each with fresh ids, timestamps and a "
        f"request id; "
        + (ISSUE_TEXT if mix == "issue" else "1 in 100 with a 1-5 MB JSON batch; ")
        + (f"1 in {UPLOAD_EVERY} a text upload (a 0.2-1 MB log), 1 in {MEDIA_EVERY} a media "
           "upload (a 1-3 MB JPEG or a 1 MB PDF); " if uploads and mix != "issue" else "")
        + f"{mb:.0f} MB of request bodies. "
        f"Medians of {rounds} alternating rounds.",
        "",
        "| replay | seconds | flows/s | vs bare read | CPU s | vs bare, by CPU time on free cores |",
        "|---|---|---|---|---|---|",
        f"| FlowReader alone (bare) | {t_bare:.2f} | {count / t_bare:.0f} | 1.00 | | |",
        f"| FlowReader + Auditor.audit, one process | {t_audit:.2f} | {count / t_audit:.0f} | {t_bare / t_audit:.2f} | | |",
        f"| a process reading with FlowReader (Python and mitmproxy start-up included) | {t_cli_bare:.2f} | {count / t_cli_bare:.0f} | 1.00 | {total[0]:.2f} | 1.00 |",
        f"| `gdpr-audit replay --jobs 1` (audit + SQLite log) | {t_one:.2f} | {count / t_one:.0f} | {t_cli_bare / t_one:.2f} | {total[1]:.2f} | {free[1]:.2f} |",
        f"| `gdpr-audit replay --jobs {cores}` | {t_all:.2f} | {count / t_all:.0f} | {t_cli_bare / t_all:.2f} | {total[cores]:.2f} | {free[cores]:.2f} |",
        "",
        f"`--jobs {cores}` is {t_one / t_all:.2f}x as fast as `--jobs 1`. CPU time of the replaying "
        f"process itself (start-up included, workers not): {cpu[1]:.2f} ms per flow with "
        f"`--jobs 1`, {cpu[cores]:.2f} ms with `--jobs {cores}`; of the replay with its workers: "
        f"{total[1]:.1f} s and {total[cores]:.1f} s, so {total[1] / t_one:.2f} and "
        f"{total[cores] / t_all:.2f} cores busy on average (on a machine shared with other work, "
        f"the wall-clock times above can hide what `--jobs` does; these cannot). The machine's "
        f"CPUs were idle {statistics.median(idle):.0%} of the time during these runs (median).",
        "",
        f"How the audit work spreads over {cores} workers (one run, no log): "
        f"{' / '.join(f'{w:.1f}' for w in workers)} s of CPU each, {main_cpu:.2f} s in the "
        f"process that hands them the chunks, {split_wall:.1f} s wall-clock. With free cores the "
        f"speed-up over one process would be about {sum(workers) / max(workers, default=1):.2f}x.",
        "",
        "Where the audit time goes (all rounds): " + "; ".join(
            f"{kind} {seconds / flows * 1000:.2f} ms each ({seconds / spent:.0%} of it)"
            for kind, (seconds, flows) in sorted(split.items())) + ".",
    ]


ISSUE_TEXT = ("issue 19's mix: in every 1,115 flows, 4 JSON batches of 1.5-3.5 MB, a 6 MB CRM "
              "contact import (JSON), a 3 MB text log, two ~3 MB JPEG photos, and 1,107 small "
              "tracker, CRM and marketing flows; ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default="replay,proxy,registry")
    parser.add_argument("--count", type=int, help="replay: flows in the corpus (default 5000)")
    parser.add_argument("--rounds", type=int, help="replay: rounds (default 5)")
    parser.add_argument("--uploads", action="store_true",
                        help="replay: text and media uploads in the batches corpus too")
    parser.add_argument("--mix", default="batches,issue",
                        help="replay: the corpora, each measured with its own bare read: "
                             "batches (1 in 100 a 1-5 MB batch), issue (ISSUE_MIX)")
    args = parser.parse_args()
    sections = args.only.split(",")
    quick = args.quick
    report = [f"# Benchmarks ({time.strftime('%Y-%m-%d')})", "",
              f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
              f"{platform.python_version()}, {platform.platform()}. Command: "
              f"`{' '.join(['python bench/perf.py', *sys.argv[1:]])}`", ""]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for mix in args.mix.split(",") if "replay" in sections else ():
            report += [f"## Replay ({mix} corpus)", "",
                       *bench_replay(folder, args.count or (500 if quick else 5000),
                                     args.rounds or (3 if quick else 5), args.uploads, mix), ""]
        if "proxy" in sections:
            report += ["## Live proxy", "", *bench_proxy(folder, 1 if quick else 3, 3 if quick else 10,
                                                         [1, 8] if quick else [1, 8, 32]), ""]
        if "registry" in sections:
            report += ["## Registry size", "", *bench_registry(folder, [1000, 10000] if quick
                                                               else [1000, 10000, 100000]), ""]
    text = "\n".join(report)
    print(text)
    if not quick and not args.count and not args.rounds and set(sections) >= {
            "replay", "proxy", "registry"}:
        (ROOT / "bench" / "RESULTS.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
