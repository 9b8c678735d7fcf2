"""`gdpr-audit replay` end to end, this tree against another revision and against a bare read
of the same corpus, side by side in one run:

    .venv/bin/python bench/ab_replay.py --base 8cab4b9 [--rounds 5] [--flows 5000]
                                        [--mix issue] [--jobs 2]

The base revision is checked out into a temporary git worktree. Each round runs, in fresh
processes and in this order, a process that only reads the corpus with mitmproxy's FlowReader,
then the replay of the base and of this tree (audit and SQLite log). The script reports the
medians of the wall-clock time and of the CPU time (the replay's workers included), and each
replay against the bare read: by wall-clock time, and by CPU time as it would be on free
cores (the replay's CPU time spread over its jobs; the bare read takes one core). On a
machine shared with other work the CPU times say more than the wall-clock ones.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "bench")]

from perf import make_corpus  # noqa: E402

ONE_ROUND = r"""
import json, os, resource, subprocess, sys, time
tree, corpus, jobs, bare = sys.argv[1:5]
env = {**os.environ, "CI": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [tree + "/addon", os.environ.get("PYTHONPATH")]))}
if bare == "bare":
    command = [sys.executable, "-c", "import sys\nfrom mitmproxy import io\n"
               "with open(sys.argv[1], 'rb') as f:\n"
               "    n = sum(1 for _ in io.FlowReader(f).stream())", corpus]
else:
    db = corpus + "." + str(os.getpid()) + ".db"
    command = [sys.executable, "-m", "gdpr_audit", "replay", corpus, "--policy",
               tree + "/policies", "--db", db, "--jobs", jobs]
start = time.perf_counter()
result = subprocess.run(command, env=env, capture_output=True, cwd=tree)
wall = time.perf_counter() - start
assert result.returncode in (0, 1), result.stderr[-2000:]
used = resource.getrusage(resource.RUSAGE_CHILDREN)
if bare != "bare":
    for suffix in ("", "-wal", "-shm", ".key"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
print(json.dumps({"wall": wall, "cpu": used.ru_utime + used.ru_stime}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--mix", choices=("batches", "issue"), default="issue")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.flow"
        size = make_corpus(corpus, args.flows, mix=args.mix)
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base),
                        args.base], check=True)
        try:
            rounds: dict[str, list[dict[str, float]]] = {"bare read": [], args.base: [],
                                                         "this tree": []}
            for _ in range(args.rounds):  # the bare read, then both trees, in each round
                for name, tree, what in (("bare read", ROOT, "bare"), (args.base, base, "replay"),
                                         ("this tree", ROOT, "replay")):
                    out = subprocess.run([sys.executable, "-c", ONE_ROUND, str(tree), str(corpus),
                                          str(args.jobs), what],
                                         capture_output=True, text=True, check=True)
                    rounds[name].append(json.loads(out.stdout))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False)
    medians = {name: {what: statistics.median(v[what] for v in values) for what in ("wall", "cpu")}
               for name, values in rounds.items()}
    bare = medians["bare read"]
    print(f"{args.flows} flows of perf.py's {args.mix} corpus ({size / 1e6:.0f} MB of request "
          f"bodies), `replay --jobs {args.jobs}`, medians of {args.rounds} rounds:\n")
    print("| | wall s | CPU s | vs bare read, wall | vs bare read, CPU on free cores |")
    print("|---|---|---|---|---|")
    for name, median in medians.items():
        jobs = 1 if name == "bare read" else args.jobs
        print(f"| {name} | {median['wall']:.2f} | {median['cpu']:.2f} | "
              f"{bare['wall'] / median['wall']:.2f} | "
              f"{bare['cpu'] / (median['cpu'] / jobs):.2f} |")


if __name__ == "__main__":
    main()
