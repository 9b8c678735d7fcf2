"""The audit's CPU time per flow, this tree against another revision, side by side:

    .venv/bin/python bench/ab_audit.py --base 6f789cd [--rounds 7] [--flows 2000]

The base revision is checked out into a temporary git worktree. Each round audits the small
flows (under 500 KB) of one bench/perf.py corpus in a fresh process of each tree, in
alternating order. The script reports the median CPU milliseconds per flow and the ratio.
It measures CPU time (time.process_time), not wall time: a busy machine shifts both trees
alike.
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
tree, corpus = sys.argv[1:3]
sys.path.insert(0, tree + "/addon")
from mitmproxy import io
from gdpr_audit.audit import Auditor
from gdpr_audit.policy import load_policy
with open(corpus, "rb") as handle:
    flows = [f for f in io.FlowReader(handle).stream()
             if len(f.request.raw_content or b"") <= 500_000]
auditor = Auditor(load_policy(tree + "/policies"))
for flow in flows[:50]:  # warm the lazy parts, as a long replay would be
    auditor.audit(flow)
start = time.process_time()
for flow in flows:
    auditor.audit(flow)
print(json.dumps((time.process_time() - start) / len(flows) * 1000))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the revision to compare against")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--flows", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.flow"
        make_corpus(corpus, args.flows)
        times = side_by_side(args.base, args.rounds, ONE_ROUND, str(corpus))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"CPU ms per small flow, medians of {args.rounds} alternating rounds:")
    for name, median in medians.items():
        print(f"  {name}: {median:.3f}")
    print(f"  ratio (this tree / {args.base}): {medians['this tree'] / medians[args.base]:.2f}")


if __name__ == "__main__":
    main()
