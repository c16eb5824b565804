"""Bad input everywhere: schemathesis against the service's own OpenAPI spec with every check
(no 5xx; every answer as documented; every schema-valid request accepted and every invalid one
refused, but for the rules no schema can express, listed in schemathesis.toml), with bounded
examples per operation, on an API of its own with no worker (nothing it submits runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAULTS_DB
from tests.stack import REPO_ROOT, ServiceStack

# Fixed, so a failure can be replayed.
SEED = 50405332851823128229980582310934424568


@pytest.mark.slow
def test_no_server_errors_and_every_answer_matches_the_spec(tmp_path):
    stack = ServiceStack(FAULTS_DB, tmp_path, PRELOAD_MODELS="false")
    stack.start(worker=False)
    try:
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run",
             f"{stack.base_url}/openapi.json", "--checks", "all",
             "--max-examples", "20", "--seed", str(SEED), "--request-timeout", "30"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        stack.stop()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "Tested: " in run.stdout
