"""Stalled and unstoppable jobs, seen from the worker's parent process.

The child running a job touches a file of its own (`progress_path`) whenever its training reports
progress or asks whether it was cancelled (every batch, at most every `TOUCH_SECONDS`): a clock
that needs no Redis, so a Redis outage never looks like a stall. On each heartbeat the parent's
`Watchdog` looks at each job its pool runs and, by the job store's atomic transitions (a job that
ended meanwhile is left alone), ends it and kills its child:
- failed as stalled when the child has been silent longer than its kind's stall limit
  (`JOB_STALL_SECONDS`, else the kind's default: a deadlock, a hung GPU call, a stopped process);
- cancelled when it was cancelled more than `CANCEL_GRACE_SECONDS` ago and has not stopped by
  itself (cancellation is otherwise read by the training between steps).
Celery replaces the killed child, so the worker goes on with the next job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from service.jobs.kinds import JOB_KINDS
from service.jobs.store import JobStore

logger = logging.getLogger(__name__)

TOUCH_SECONDS = 0.5


def progress_dir(parent_pid: int) -> Path:
    """The folder of the progress files of a worker's jobs (per worker parent process)."""
    return Path(tempfile.gettempdir()) / f"digit-service-worker-{parent_pid}"


def progress_path(parent_pid: int, job_id: str) -> Path:
    return progress_dir(parent_pid) / job_id


class ProgressClock:
    """The child's side: touches its job's progress file, at most every `TOUCH_SECONDS`."""

    def __init__(self, job_id: str) -> None:
        self.path = progress_path(os.getppid(), job_id)
        self._last = 0.0
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < TOUCH_SECONDS:
            return
        self._last = now
        with contextlib.suppress(OSError):
            self.path.touch()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def stall_limit(kind: str, overrides: dict[str, float]) -> float:
    """Seconds of silence after which a job of `kind` is stalled."""
    if kind in overrides:
        return overrides[kind]
    known = JOB_KINDS.get(kind)
    return known.stall_seconds if known else max(k.stall_seconds for k in JOB_KINDS.values())


def stall_error(kind: str, limit: float) -> str:
    return (
        f"The job reported no progress for {limit:g} s, the stall limit of {kind!r} jobs "
        "(JOB_STALL_SECONDS): its process hung (a deadlock, a stuck GPU call, or it was "
        "stopped) and was killed. Submit it again; if it stalls again, check the worker's log "
        "and its GPU, or raise the limit for slow steps."
    )


class Watchdog:
    """The parent's side: ends and kills stalled jobs and cancelled jobs that do not stop."""

    def __init__(
        self, jobs: JobStore, stall_overrides: dict[str, float], cancel_grace_seconds: float
    ) -> None:
        self.jobs = jobs
        self.stall_overrides = stall_overrides
        self.cancel_grace_seconds = cancel_grace_seconds
        self._first_seen: dict[str, float] = {}
        self._cancel_seen: dict[str, float] = {}  # by this process's clock: no skew to fear
        progress_dir(os.getpid()).mkdir(parents=True, exist_ok=True)

    def check(self, requests: list[tuple[str, Any]]) -> None:
        """Look at each (job id, Celery request) this worker's pool runs now."""
        now = time.time()
        running = {job_id for job_id, _ in requests}
        for job_id in set(self._first_seen) - running:  # ended, or its child was killed
            del self._first_seen[job_id]
            self._cancel_seen.pop(job_id, None)
            with contextlib.suppress(OSError):
                progress_path(os.getpid(), job_id).unlink()
        for job_id, request in requests:
            first_seen = self._first_seen.setdefault(job_id, now)
            if request.worker_pid is None:
                continue  # not yet accepted by a child
            self._check_one(job_id, request.worker_pid, now, first_seen)

    def _check_one(self, job_id: str, child: int, now: float, first_seen: float) -> None:
        status, kind, cancel_requested = self.jobs.get_raw(
            job_id, "status", "kind", "cancel_requested"
        )
        if status != "running":
            return
        if cancel_requested == "1":
            if now - self._cancel_seen.setdefault(job_id, now) <= self.cancel_grace_seconds:
                return  # it may stop by itself yet
            if self.jobs.transition(job_id, "end_cancelled", {"finished_at": repr(now)})[0]:
                logger.warning(
                    "Job %s did not stop within %g s of its cancellation; killed its process %d.",
                    job_id, self.cancel_grace_seconds, child,
                )  # fmt: skip
                _kill(child)
            return
        try:
            last_progress = progress_path(os.getpid(), job_id).stat().st_mtime
        except OSError:
            last_progress = first_seen
        limit = stall_limit(kind or "", self.stall_overrides)
        if now - max(last_progress, first_seen) > limit:
            fields = {"finished_at": repr(now), "error": stall_error(kind or "?", limit)}
            if self.jobs.transition(job_id, "fail", fields)[0]:
                logger.warning("Job %s stalled (%g s silent); killed its process %d.",
                               job_id, limit, child)  # fmt: skip
                _kill(child)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
