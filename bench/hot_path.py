"""Profile of the audit's hot path on the replay corpus of bench/perf.py:

    .venv/bin/python bench/hot_path.py [--top 20]

cProfile over one process auditing the small flows of a 500-flow corpus, then one 1-5 MB
batch. Function-call counts compare across machines and loads; times do not.
"""

import argparse
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "addon"), str(ROOT / "bench")]

from mitmproxy import io  # noqa: E402
from perf import make_corpus  # noqa: E402

from gdpr_audit.audit import Auditor  # noqa: E402
from gdpr_audit.policy import load_policy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.flow"
        make_corpus(corpus, 500)
        with corpus.open("rb") as handle:
            flows = list(io.FlowReader(handle).stream())
    auditor = Auditor(load_policy(ROOT / "policies"))
    small = [f for f in flows if len(f.request.raw_content or b"") <= 500_000]
    big = [f for f in flows if len(f.request.raw_content or b"") > 500_000][:1]
    for flow in small[:50]:  # warm the registry's lazy parts, as a long replay would be
        auditor.audit(flow)
    for name, batch in ((f"{len(small)} small flows", small),
                        (f"one batch of {len(big[0].request.raw_content) / 1e6:.1f} MB", big)):
        profiler = cProfile.Profile()
        profiler.enable()
        for flow in batch:
            auditor.audit(flow)
        profiler.disable()
        stats = pstats.Stats(profiler)
        print(f"## {name}: {stats.total_calls:,} function calls, {stats.total_tt:.2f} s")
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
