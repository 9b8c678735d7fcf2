"""What every benchmark here shares: alternating rounds, reported as medians, and the kinds
of flow a corpus holds. It imports nothing of the product: a script that measures another
revision's tree can import it first."""

import statistics
from collections.abc import Callable


def median_of(rounds: int, *runs: Callable[[], float]) -> list[float]:
    """Run each measurement `rounds` times, alternating (so that a noisy moment of a shared
    machine hurts every side alike), and return each one's median."""
    samples: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for index, run in enumerate(runs):
            samples[index].append(run())
    return [statistics.median(s) for s in samples]


def kind_of(flow) -> str:  # an HTTPFlow
    """What a bench/perf.py corpus flow is, for the split of the audit time."""
    request = flow.request
    if len(request.raw_content or b"") <= 500_000:
        return "small (< 500 KB)"
    kind = request.headers.get("content-type", "")
    if kind == "application/json":
        return "JSON import" if "hubapi" in request.host else "JSON batch"
    return {"text/plain": "text log", "image/jpeg": "JPEG", "application/pdf": "PDF"}.get(
        kind, kind)
