"""Where benches record what they measured: bench/results/NAME.json with the figures, the
command that made them, the commit, the seed and the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, figures: dict[str, Any], seed: int | None) -> Path:
    """Write the record and return its path."""
    repo = RESULTS_DIR.parent.parent
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=repo
    ).stdout.strip()
    # Changes to code, not to the prose that cites results.
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
         ":!docs", ":!README.md", ":!bench/results"],
        capture_output=True, text=True, cwd=repo,
    ).stdout.strip()  # fmt: skip
    record = {
        "figures": figures,
        "command": " ".join(["python", os.path.relpath(sys.argv[0], repo), *sys.argv[1:]]),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "seed": seed,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
