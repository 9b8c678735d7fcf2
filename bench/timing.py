"""What every benchmark here shares: alternating rounds, reported as medians."""

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
