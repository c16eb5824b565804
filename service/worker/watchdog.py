"""Stalled, unstoppable and orphaned jobs, seen from the worker's parent process.

The child running a job touches a file of its own whenever its training reports progress or asks
whether it should stop (every batch, at most every `TOUCH_SECONDS`): a clock that needs no Redis,
so a Redis outage never looks like a stall. The files live in a private folder
(`tempfile.mkdtemp()`: an unpredictable name, mode 0700) that the worker's parent creates before
its pool forks (`create_progress_dir`), so every child inherits its path. On each heartbeat the
parent's `Watchdog` looks at each job its pool runs and, by the job store's atomic transitions (a
job that ended meanwhile is left alone), ends it and kills its child:
- failed as stalled when its progress file has not changed for longer than its kind's stall
  limit (`JOB_STALL_SECONDS`, else the kind's default: a deadlock, a hung GPU call, a stopped
  process); changes are timed by the parent's monotonic clock, so a step of the wall clock
  never reads as a stall;
- cancelled when it was cancelled more than `CANCEL_GRACE_SECONDS` ago and has not stopped by
  itself (cancellation is otherwise read by the training between steps);
- killed when its job has ended elsewhere (failed as lost after a network partition longer than
  the heartbeat TTL, say) and its child still runs `CANCEL_GRACE_SECONDS` later (the training
  otherwise stops by itself at its next step once it reads that its job no longer runs).
Celery replaces the killed child, so the worker goes on with the next job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.jobs.kinds import JOB_KINDS
from service.jobs.schemas import FINISHED_STATUSES, JobStatus
from service.jobs.store import JobStore

logger = logging.getLogger(__name__)

TOUCH_SECONDS = 0.5

_progress_dir: Path | None = None  # set in the worker's parent before its pool forks


def create_progress_dir() -> Path | None:
    """Create this worker's private folder of progress files (None, logged, if it cannot be:
    stalls then go undetected, everything else works)."""
    global _progress_dir
    try:
        _progress_dir = Path(tempfile.mkdtemp(prefix="digit-service-progress-"))
    except OSError:
        logger.exception("Could not create a folder for progress files; stalls go undetected.")
        _progress_dir = None
    return _progress_dir


def remove_progress_dir() -> None:
    if _progress_dir is not None:
        shutil.rmtree(_progress_dir, ignore_errors=True)


def progress_path(job_id: str, folder: Path | None = None) -> Path | None:
    """The job's progress file, in `folder` or this worker's folder (None when there is none)."""
    folder = folder if folder is not None else _progress_dir
    return folder / job_id if folder is not None else None


class ProgressClock:
    """The child's side: touches its job's progress file, at most every `TOUCH_SECONDS`."""

    def __init__(self, job_id: str, folder: Path | None = None) -> None:
        self.path = progress_path(job_id, folder)
        self._last = 0.0
        self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now - self._last < TOUCH_SECONDS):
            return
        self._last = now
        with contextlib.suppress(OSError):
            self.path.touch()

    def close(self) -> None:
        if self.path is not None:
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


@dataclass
class _Seen:
    """What the parent saw of one running job, by its own monotonic clock."""

    progress_at: float  # when its progress file last changed (or the job was first seen)
    mtime_ns: int | None = None
    cancel_at: float | None = None
    ended_at: float | None = None


class Watchdog:
    """The parent's side: ends and kills stalled jobs, cancelled jobs that do not stop, and the
    processes of jobs that ended elsewhere."""

    def __init__(
        self,
        jobs: JobStore,
        stall_overrides: dict[str, float],
        cancel_grace_seconds: float,
        folder: Path | None = None,
    ) -> None:
        self.jobs = jobs
        self.stall_overrides = stall_overrides
        self.cancel_grace_seconds = cancel_grace_seconds
        self.folder = folder if folder is not None else _progress_dir
        self._seen: dict[str, _Seen] = {}

    def check(self, requests: list[tuple[str, Any]]) -> None:
        """Look at each (job id, Celery request) this worker's pool runs now."""
        now = time.monotonic()
        running = {job_id for job_id, _ in requests}
        for job_id in set(self._seen) - running:  # ended, or its child was killed
            del self._seen[job_id]
            path = progress_path(job_id, self.folder)
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()
        for job_id, request in requests:
            seen = self._seen.setdefault(job_id, _Seen(progress_at=now))
            if request.worker_pid is None:
                continue  # not yet accepted by a child
            self._check_one(job_id, request.worker_pid, now, seen)

    def _check_one(self, job_id: str, child: int, now: float, seen: _Seen) -> None:
        status, kind, cancel_requested = self.jobs.get_raw(
            job_id, "status", "kind", "cancel_requested"
        )
        if status is None or status in FINISHED_STATUSES:
            # Ended elsewhere (or deleted since): its child stops at its next step, else it is
            # killed after the grace, so that it does not hold the worker for hours.
            seen.ended_at = seen.ended_at if seen.ended_at is not None else now
            if now - seen.ended_at > self.cancel_grace_seconds:
                logger.warning(
                    "Job %s is %s but its process %d still runs %g s later; killed it.",
                    job_id, status or "deleted", child, self.cancel_grace_seconds,
                )  # fmt: skip
                _kill(child)
            return
        if status != JobStatus.RUNNING.value:
            return  # queued: its child has not started it yet
        if cancel_requested == "1":
            seen.cancel_at = seen.cancel_at if seen.cancel_at is not None else now
            if now - seen.cancel_at <= self.cancel_grace_seconds:
                return  # it may stop by itself yet
            if self.jobs.transition(job_id, "end_cancelled", {"finished_at": repr(time.time())})[0]:
                logger.warning(
                    "Job %s did not stop within %g s of its cancellation; killed its process %d.",
                    job_id, self.cancel_grace_seconds, child,
                )  # fmt: skip
                _kill(child)
            return
        path = progress_path(job_id, self.folder)
        if path is None:
            return  # no progress files on this worker: stalls go undetected
        with contextlib.suppress(OSError):
            mtime_ns = path.stat().st_mtime_ns
            if mtime_ns != seen.mtime_ns:  # changed (whichever way the wall clock went)
                seen.mtime_ns, seen.progress_at = mtime_ns, now
        limit = stall_limit(kind or "", self.stall_overrides)
        if now - seen.progress_at > limit:
            fields = {"finished_at": repr(time.time()), "error": stall_error(kind or "?", limit)}
            if self.jobs.transition(job_id, "fail", fields)[0]:
                logger.warning("Job %s stalled (%g s silent); killed its process %d.",
                               job_id, limit, child)  # fmt: skip
                _kill(child)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
