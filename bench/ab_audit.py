"""The audit's CPU time per flow, this tree against another revision, side by side:

    .venv/bin/python bench/ab_audit.py --base 6f789cd [--rounds 7] [--flows 2000] [--mix issue]

The base revision is checked out into a temporary git worktree. Each round audits the small
flows (under 500 KB) of one bench/perf.py corpus in a fresh process of each tree, in
alternating order; with `--mix issue`, every flow of perf.py's issue mix, each kind (small,
JSON batch, JSON import, text log, JPEG) apart. The script reports the median CPU
milliseconds per flow and the ratio. It measures CPU time (time.process_time), not wall
time: a busy machine shifts both trees alike.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "bench")]

from perf import make_corpus  # noqa: E402
from sides import side_by_side  # noqa: E402

ONE_ROUND = r"""
import json, sys, time
tree, corpus, mix = sys.argv[1:4]
every = mix == "issue"
sys.path[:0] = [tree + "/addon", __BENCH__]
from timing import kind_of
from mitmproxy import io
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import load_policy


with open(corpus, "rb") as handle:
    flows = [f for f in io.FlowReader(handle).stream()
             if every or len(f.request.raw_content or b"") <= 500_000]
auditor = Auditor(load_policy(tree + "/policies"))
for flow in flows[:50]:  # warm the lazy parts, as a long replay would be
    auditor.audit(flow)
kinds = {}
for flow in flows:
    kinds.setdefault(kind_of(flow), []).append(flow)
spent = {}
for kind, group in sorted(kinds.items()):
    start = time.process_time()
    for flow in group:
        auditor.audit(flow)
    spent[kind] = (time.process_time() - start) / len(group) * 1000
print(json.dumps(spent))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--flows", type=int, default=2000)
    parser.add_argument("--mix", choices=("batches", "issue"), default="batches",
                        help="the corpus: perf.py's batches (its small flows) or issue mix")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.flow"
        make_corpus(corpus, args.flows, mix=args.mix)
        script = ONE_ROUND.replace("__BENCH__", repr(str(ROOT / "bench")))
        times = side_by_side(args.base, args.rounds, script, str(corpus), args.mix)
    print(f"CPU ms per flow, medians of {args.rounds} alternating rounds:")
    print(f"| kind | {args.base} | this tree | ratio |\n|---|---|---|---|")
    for kind in times[args.base][0]:
        base, this = (statistics.median(round[kind] for round in times[name])
                      for name in (args.base, "this tree"))
        print(f"| {kind} | {base:.3f} | {this:.3f} | {this / base:.2f} |")


if __name__ == "__main__":
    main()
