"""What one flow costs per MB of raw request, beside what reading it costs, for the bodies
that cost most (SPEC 4: at most 50 ms per MB beyond reading it), this tree against another
revision:

    .venv/bin/python bench/body_cost.py --base 472b992 [--rounds 5]

Eleven flows, each written to its own .flow file: a 6 MB JSON import of contacts, a 3 MB text
log, a 3 MB JPEG photo (Pillow, EXIF included), the hostile request of 200 values that each
are base64(gzip(1 MB of text)), JSON nested 100,000 levels deep, 19,000 small values (under
the 20,000 values one flow is read for), a 1 MB log dense in numbers (ids, timings, sizes),
1 MB of call records (phone numbers, international and national), a 1 MB mailing list
(an email on every line), the same list as a JSON batch of 19,000 addresses (0.58 MB), and
an analytics batch of 2,000 events with fresh ids (10,000 values, 0.3 MB).
The base revision is checked out into a temporary git worktree; each round audits every
flow in a fresh process of each tree, in alternating order, its garbage collector settled
as in the product's auditing processes (audit.settle_collector). Reported: medians of the CPU
time (time.process_time: a busy machine shifts both trees alike) of FlowReader reading the
file and of Auditor.audit, in ms per MB of raw request, and the flow's status.
"""

import argparse
import base64
import gzip
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "tests"), str(ROOT / "bench")]

from perf import jpeg  # noqa: E402
from sides import side_by_side  # noqa: E402

ONE_ROUND = r"""
import json, sys, time
tree, folder = sys.argv[1:3]
sys.path.insert(0, tree + "/addon")
from pathlib import Path
from mitmproxy import io
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import load_policy
auditor = Auditor(load_policy(tree + "/policies"))
auditor.warm_up()  # what a process compiles or loads once (the screening database) is no flow's
files = sorted(Path(folder).glob("*.flow"), key=lambda path: int(path.stem.split("-")[0]))
with open(files[0], "rb") as handle:  # warm the lazy parts on a small flow
    warm = next(iter(io.FlowReader(handle).stream()))
warm.request.content = b'{"email": "someone@example.org"}'
auditor.audit(warm)
warm.request.content = json.dumps({"warm": ["x"] * 40_000}).encode()  # a big body's screen
auditor.audit(warm)
# As the product's auditing processes do (replay's workers, the proxy's worker and judges):
# what they hold by now lives as long as they do, and the collector leaves it be.
from gdpr_audit.audit import settle_collector
settle_collector()
results = {}
for path in files:
    start = time.process_time()
    with open(path, "rb") as handle:
        flow = next(iter(io.FlowReader(handle).stream()))
    read = time.process_time() - start
    start = time.process_time()
    audit = auditor.audit(flow)
    spent = time.process_time() - start
    results[path.stem] = (read, spent, audit.status, audit.error)
print(json.dumps(results))
"""

MB = 1 << 20


def _flow(url: str, body: bytes, content_type: str):  # type: ignore[no-untyped-def]
    from conftest import make_flow
    return make_flow(url, "POST", body, {"content-type": content_type})


def make_flows(folder: Path) -> dict[str, int]:
    """The flows, one per file; returns each one's raw request size."""
    from mitmproxy import io
    rng = random.Random(7)
    words = ("commande", "client", "livraison", "paiement", "erreur", "session", "panier",
             "produit", "stock", "retour", "OK", "200", "GET", "POST", "/api/v2/orders")
    flows = {}
    contacts = [{"id": f"C-{n:07d}", "email": f"contact{n}@example.com", "first_name": "Prénom",
                 "last_name": f"Nom{n}", "phone": f"+336{n % 100_000_000:08d}",
                 "city": rng.choice(("Paris", "Lyon", "Nice")), "tags": ["import", "2026"],
                 "opt_in": n % 2 == 0, "score": rng.random()} for n in range(30_000)]
    body = json.dumps({"contacts": contacts}).encode()
    body += b" " * max(0, 6 * MB - len(body))
    flows["1-json-import-6MB"] = _flow("https://api.crm-example.com/v1/import", body,
                                       "application/json")
    lines = []
    size = 0
    while size < 3 * MB:
        line = (f"2026-06-15T10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z INFO "
                + " ".join(rng.choice(words) for _ in range(12)) + f" id={rng.getrandbits(40)}")
        lines.append(line)
        size += len(line) + 1
    flows["2-text-log-3MB"] = _flow("https://logs.example-saas.com/upload",
                                    "\n".join(lines).encode(), "text/plain")
    flows["3-jpeg-3MB"] = _flow("https://upload.example-photos.com/p", jpeg(rng, side=2000), "image/jpeg")
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 20_000)[:MB - 8]
    values = {f"v{n}": base64.b64encode(gzip.compress(f"{text}{n:08d}".encode(), 9)).decode()
              for n in range(200)}
    flows["4-hostile-200x1MB"] = _flow("https://collect.example-tracker.com/e",
                                       json.dumps(values).encode(), "application/json")
    nested = "[" * 100_000 + "]" * 100_000
    flows["5-deep-json"] = _flow("https://collect.example-tracker.com/e",
                                 f'{{"email": "x@example.org", "x": {nested}}}'.encode(),
                                 "application/json")
    small = [f"v{n}" if n % 3 else n for n in range(19_000)]
    flows["6-many-small-values"] = _flow("https://collect.example-tracker.com/e",
                                         json.dumps({"values": small}).encode(),
                                         "application/json")
    # Text dense in numbers: every group of digits is where a phone number may start.
    lines, size = [], 0
    while size < MB:
        line = (f"2026-06-15 10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} "
                f"id={rng.getrandbits(40)} took={rng.random() * 1000:.6f} "
                f"bytes={rng.randint(0, 10 ** 6)} items={rng.randint(0, 999)}")
        lines.append(line)
        size += len(line) + 1
    flows["7-numbers-log-1MB"] = _flow("https://logs.example-saas.com/upload",
                                       "\n".join(lines).encode(), "text/plain")
    calls = "\n".join(f"2026-06-15T10:{n % 60:02d}:00Z,+336{rng.randint(0, 10 ** 8 - 1):08d},"
                      f"0{rng.randint(1, 5)} {rng.randint(0, 99):02d} {rng.randint(0, 99):02d} "
                      f"{rng.randint(0, 99):02d} {rng.randint(0, 99):02d},{rng.randint(1, 3600)}"
                      for n in range(MB // 64))
    flows["8-call-records-1MB"] = _flow("https://api.example-telephony.com/cdr",
                                        calls.encode(), "text/csv")
    # A mailing list: an identifier on every line, each a finding.
    rows = "\n".join(f"{n},client{rng.getrandbits(30)}@example{n % 50}.fr,Jean,Dupont{n}"
                     for n in range(MB // 36))
    flows["9-mailing-list-1MB"] = _flow("https://api.example-mail.com/lists/import",
                                        rows.encode()[:MB - 8], "text/csv")
    # The same list as a JSON batch: 19,000 values, each an identifier, each walked, tried
    # for encodings, detected and counted in its array's finding.
    batch = {"emails": [f"client{rng.getrandbits(30)}@example{n % 50}.fr" for n in range(19_000)]}
    flows["10-email-batch"] = _flow("https://api.example-mail.com/lists/batch",
                                    json.dumps(batch).encode(), "application/json")
    # An analytics batch of 2,000 events (10,000 values, 300 KB), each with fresh ids: no
    # identifier, every value walked and tried for encodings (a budget of values, issue 19).
    events = [{"event": "product_viewed", "sku": f"sku-{rng.getrandbits(40):x}",
               "page": f"/p/{rng.getrandbits(20)}", "ts": 1_781_000_000_000 + n,
               "anonymousId": f"{rng.getrandbits(128):032x}"} for n in range(2_000)]
    flows["11-event-batch-300KB"] = _flow("https://api.segment.io/v1/batch",
                                          json.dumps({"batch": events}).encode(),
                                          "application/json")
    sizes = {}
    for name, flow in flows.items():
        with (folder / f"{name}.flow").open("wb") as out:
            io.FlowWriter(out).add(flow)
        sizes[name] = len(flow.request.raw_content) + len(bytes(flow.request.data.headers))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "flows"
        folder.mkdir()
        sizes = make_flows(folder)
        runs = side_by_side(args.base, args.rounds, ONE_ROUND, str(folder))
    trees = list(runs)
    print(f"CPU ms per MB of raw request, medians of {args.rounds} alternating rounds "
          f"(read: FlowReader; audit: Auditor.audit, beyond reading)\n")
    print(f"| flow | raw MB | read ms/MB | audit ms/MB {args.base} | status | "
          "audit ms/MB this tree | status | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, size in sizes.items():
        mb = size / MB
        read = statistics.median(r[name][0] for r in runs["this tree"]) * 1000 / mb
        cells = []
        for tree in trees:
            spent = statistics.median(r[name][1] for r in runs[tree]) * 1000 / mb
            status = runs[tree][-1][name][2] + (" (error)" if runs[tree][-1][name][3] else "")
            cells.append((spent, status))
        ratio = cells[1][0] / cells[0][0] if cells[0][0] else float("nan")
        print(f"| {name} | {mb:.2f} | {read:.1f} | {cells[0][0]:.1f} | {cells[0][1]} | "
              f"{cells[1][0]:.1f} | {cells[1][1]} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
