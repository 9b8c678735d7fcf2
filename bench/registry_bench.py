"""The registry-size section of bench/perf.py: 1k, 10k and 100k subjects, each loaded in a
fresh process: load and index time, peak memory, per-flow audit time. Each size is loaded
twice: first with an empty index cache, then with the one the first load left.

    .venv/bin/python bench/registry_bench.py [--sizes 1000,10000,100000] [--baseline DIR]
                                             [--shuffled]

--baseline DIR loads each size with the code of another checkout (say `git worktree add DIR
main`) just before this one's, on the same registry: on a shared machine, compare the two
runs' CPU seconds more than their wall time.

--shuffled lists the generated subjects in a random (fixed) order, as a real registry's
come: generated in order, consecutive subjects' spellings share their first characters,
which builds an automaton faster than a real registry's would.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


REGISTRY_PROBE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from gdpr_audit.audit import Auditor
from gdpr_audit.captures import CaptureReader
from gdpr_audit.policy import load_policy
def cpu():
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
start = time.perf_counter()
policy = load_policy(sys.argv[1], sys.argv[2])
loaded = time.perf_counter()
cpu_before = cpu()
auditor = Auditor(policy)
built = time.perf_counter()
index_cpu = cpu() - cpu_before
# What the process keeps once built (the peak is the build's): Linux's current RSS.
held = next((int(line.split()[1]) / 1024 for line in open("/proc/self/status")
             if line.startswith("VmRSS:")), 0)
flows = [f for f, _ in CaptureReader([sys.argv[4]]).flows()]
times = []
for _ in range(5):
    t = time.perf_counter()
    for flow in flows:
        auditor.audit(flow)
    times.append((time.perf_counter() - t) / len(flows))
times.sort()
print(json.dumps({"load": loaded - start, "index": built - loaded, "index_cpu": index_cpu,
                  "per_flow_ms": times[2] * 1000,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "held_mb": held,
                  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _rss_mb(pid: int) -> float:
    """A process's current resident set, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) / 1024 for line in status
                         if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs: any of its threads may have started one (an
    index worker is started by a thread)."""
    found, waiting = [], [pid]
    while waiting:
        for task in Path(f"/proc/{waiting.pop()}/task").glob("*/children"):
            try:
                children = [int(child) for child in task.read_text().split()]
            except OSError:
                continue
            found += children
            waiting += children
    return found


def _run_sampled(command: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess,
                                                                    float]:
    """`command`'s result, and the largest total RSS its process and those it started held at
    once, sampled every 10 ms: its own peak and its workers' peaks may not overlap, so their
    sum would overstate what the product needs."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    peak = 0.0
    finished = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not finished.is_set():
            peak = max(peak, sum(map(_rss_mb, [child.pid, *_descendants(child.pid)])))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    finished.set()
    sampler.join()
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr), peak


def make_registry(path: Path, count: int, shuffled: bool = False) -> None:
    subjects = [{"id": f"s{n}", "identifiers": {
        "email": f"person.{n}@example.org", "phone": f"+3361{n:07d}"[:12],
        "name": f"Prenom{n} Nom{n}", "customer_id": f"C-{n:07d}"},
        "consents": {"newsletter": {"granted": "2026-01-01T00:00:00Z"}}} for n in range(count)]
    if shuffled:
        random.Random(19).shuffle(subjects)
    path.write_text(json.dumps({"subjects": subjects}))


def bench_registry(folder: Path, sizes: list[int], baseline: Path | None = None,
                   shuffled: bool = False) -> list[str]:
    lines = [f"Registry as JSON{', its subjects in a random order' if shuffled else ''} "
             "(email, phone, name, customer id each); per-flow time is the "
             "median of 5 passes over the 39 sample flows; memory is the process's peak RSS "
             "and its RSS once the index is built; "
             "index CPU counts every process that indexes (a large registry is indexed by one "
             "per core); a worker's peak RSS is the largest index worker's, beside this process "
             "(from 5,000 subjects); peak total is the most that this process and its workers "
             "held at once (their RSS summed, sampled every 10 ms). Cold: no index cache yet; "
             "warm: the cache the cold load wrote.", "",
             "| subjects | load s | index s (cold) | index CPU s (cold) | index s (warm) | "
             "peak RSS MB (cold) | RSS MB once built (cold) | worker peak RSS MB (cold) | "
             "peak total MB (cold) | peak RSS MB (warm) | peak total MB (warm) | "
             "audit ms/flow |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    loads = []
    for size in sizes:
        registry = folder / f"registry-{size}.json"
        make_registry(registry, size, shuffled)
        for code in ([baseline] if baseline else []) + [ROOT]:
            label = f"{size:,}" if code == ROOT else f"{size:,} (baseline)"
            # A cache folder per checkout: cold, not the user's, and not the other's.
            cache = folder / ("cache" if code == ROOT else "cache-baseline")
            env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
            runs = []
            for _ in ("cold", "warm"):
                loads.append(os.getloadavg()[0])
                result, total = _run_sampled([PYTHON, "-c", REGISTRY_PROBE,
                                              str(ROOT / "policies" / "policy.yaml"),
                                              str(registry), str(code / "addon"),
                                              str(ROOT / "captures")], env)
                if result.returncode:
                    error = result.stderr.strip().splitlines()[-1]
                    lines.append(f"| {label} | failed: {error} | | | | | | | | | | |")
                    break
                runs.append({**json.loads(result.stdout), "total_mb": total})
            else:
                cold, warm = runs
                lines.append(f"| {label} | {cold['load']:.1f} | {cold['index']:.1f} | "
                             f"{cold['index_cpu']:.1f} | {warm['index']:.1f} | "
                             f"{cold['rss_mb']:.0f} | {cold['held_mb']:.0f} | "
                             f"{cold['worker_rss_mb']:.0f} | {cold['total_mb']:.0f} | "
                             f"{warm['rss_mb']:.0f} | {warm['total_mb']:.0f} | "
                             f"{cold['per_flow_ms']:.2f} |")
    lines += ["", f"Load average (1 min) before each load: {min(loads):.1f} to {max(loads):.1f} "
              f"on {os.cpu_count()} cores."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="registry sizes, comma-separated")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout, loaded just before this one at each size")
    parser.add_argument("--shuffled", action="store_true",
                        help="the registry's subjects in a random order, as a real one's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("\n".join(bench_registry(Path(tmp), [int(n) for n in args.sizes.split(",")],
                                        args.baseline and args.baseline.resolve(),
                                        args.shuffled)))


if __name__ == "__main__":
    main()
