"""Run one measuring script in this tree and in another revision, side by side."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def side_by_side(base: str, rounds: int, script: str, *args: str) -> dict[str, list[Any]]:
    """`script` (run as `python -c script TREE *args`, printing one JSON value) in a fresh
    process for `base` (checked out into a temporary git worktree) and for this tree, in
    alternating order, `rounds` times; each tree's values by name (`base`, "this tree")."""
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                        str(worktree), base], check=True)
        try:
            trees = {base: worktree, "this tree": ROOT}
            values: dict[str, list[Any]] = {name: [] for name in trees}
            for _ in range(rounds):
                for name, tree in trees.items():
                    out = subprocess.run([sys.executable, "-c", script, str(tree), *args],
                                         capture_output=True, text=True, check=True)
                    values[name].append(json.loads(out.stdout))
            return values
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(worktree)], check=False)
