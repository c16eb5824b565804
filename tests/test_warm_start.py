"""A job's process has TensorFlow loaded before its job arrives; the worker's parent process,
which forks those, never loads it (TensorFlow is not fork-safe)."""

from __future__ import annotations

from pathlib import Path

from tests.stack import ServiceStack, wait_for


def children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def loads_tensorflow(pid: int) -> bool:
    try:
        return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except (FileNotFoundError, ProcessLookupError):  # the child just ended: look again
        return False


def test_the_idle_job_process_has_tensorflow_loaded_and_the_parent_never(stack: ServiceStack):
    parent = stack.worker.pid
    finished = stack.wait_until_finished(stack.submit(steps=1)["id"])  # a fresh child follows
    assert finished["status"] == "succeeded", finished["error"]
    wait_for(
        lambda: any(loads_tensorflow(child) for child in children(parent)),
        60,
        "the worker's idle job process to load TensorFlow",
    )
    assert not loads_tensorflow(parent)
