"""The coverage-guided fuzz targets (fuzz/fuzz_*.py, atheris) for a bounded number of runs each.

Strategy: run each target as `make fuzz` does, in its own process, from a fresh copy of its
seeds (the committed ones, plus the shared vectors when present) with a fixed libFuzzer seed,
so CI is repeatable; a crash, an uncaught exception or a failed property ends the process
with a non-zero status and fails the test with the fuzzer's report. The timeout only detects
a hang. Longer runs: `make fuzz` (FUZZ_TIME seconds per target), see README "Fuzzing".
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
import _common  # noqa: E402

# Runs per target: a few seconds each at their speed on a small CI machine (the audit and
# the policy loader do the most per input).
RUNS = {"consent": 2000, "fields": 2000, "captures": 800, "audit": 800, "policy": 200}


@pytest.mark.parametrize("area", sorted(RUNS))
def test_fuzz_target_survives_bounded_run(area: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seeds = _common.seed_into(area, corpus)
    assert seeds > 0
    seed = os.environ.get("GDPR_FUZZ_SEED", "1")
    command = [sys.executable, str(ROOT / "fuzz" / f"fuzz_{area}.py"), f"-runs={RUNS[area]}",
               f"-seed={seed}", "-max_total_time=60", f"-artifact_prefix={tmp_path}/",
               str(corpus)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "addon")})
    report = done.stderr[-4000:]
    assert done.returncode == 0, report
    runs = re.search(r"Done (\d+) runs in (\d+) second", done.stderr)
    assert runs, report
    print(f"fuzz_{area}: {seeds} seeds, {runs.group(1)} runs in {runs.group(2)} s")
