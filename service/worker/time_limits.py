"""Job time limits. Celery's soft limit (JOB_TIME_LIMIT_SECONDS) raises `SoftTimeLimitExceeded`
in the child running the job, and the runner fails the job saying why. A child that does not
stop within the grace (stuck in native code, where Python cannot raise) is killed at the hard
limit; then the worker's parent process, which Celery tells, fails the job with that reason."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from billiard.pool import soft_timeout_sighandler
from celery.worker import state as worker_state
from celery.worker.request import Request
from redis import Redis

from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from service.settings import get_settings

logger = logging.getLogger(__name__)

GRACE_SECONDS = 30.0  # between the soft and the hard limit: time to record how the job ended


# Set in a job's process when the soft limit's signal arrives (billiard sends SIGUSR1).
_soft_limit_reached = False


def watch_soft_limit() -> None:
    """Note in this process when the soft limit fires, whatever exception it then causes: raised
    inside native code (TensorFlow, a list operation), the limit can surface as another error,
    such as `SystemError: ... bad argument to internal function`. Called again in the same
    process, it only clears the note (billiard's handler is wrapped already)."""
    global _soft_limit_reached
    _soft_limit_reached = False
    handler = signal.getsignal(signal.SIGUSR1)
    # Only billiard's handler in a prefork child means the soft limit (in the solo pool, SIGUSR1
    # asks Celery for tracebacks); signals can be handled only on the main thread.
    if handler is not soft_timeout_sighandler or threading.current_thread() is not (
        threading.main_thread()
    ):
        return

    def noting(signum: int, frame: FrameType | None) -> None:
        global _soft_limit_reached
        _soft_limit_reached = True
        handler(signum, frame)

    signal.signal(signal.SIGUSR1, noting)


def soft_limit_reached() -> bool:
    """Whether the soft limit has fired in this process since `watch_soft_limit()`."""
    return _soft_limit_reached


def grace_seconds(limit_seconds: float) -> float:
    """Time between the soft and the hard limit: GRACE_SECONDS, or the limit when shorter."""
    return min(GRACE_SECONDS, limit_seconds)


def time_limits(limit_seconds: float) -> tuple[float, float]:
    """Celery's (soft, hard) time limits for a job limit of `limit_seconds`."""
    return limit_seconds, limit_seconds + grace_seconds(limit_seconds)


def time_limit_error(limit_seconds: float, killed: bool = False) -> str:
    """The error of a job stopped at its time limit: what happened and how to avoid it."""
    how = (
        f"did not stop within {grace_seconds(limit_seconds):g} s more, so its process was killed"
        if killed
        else "was stopped"
    )
    return (
        f"The job ran longer than JOB_TIME_LIMIT_SECONDS ({limit_seconds:g} s), the workers' "
        f"limit on one job, and {how}. Shorten it (fewer epochs, a larger batch_size, "
        "train_limit) or start the workers with a larger JOB_TIME_LIMIT_SECONDS, then submit "
        "it again."
    )


class JobRequest(Request):
    """A job's request in the worker's parent process: fails the job when the hard time limit
    kills its child (which can no longer say why)."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        # A cold shutdown also ends tasks through here; those jobs are failed as lost.
        if soft or worker_state.should_terminate or not self.args:
            return
        job_id = self.args[0]
        settings = get_settings()
        try:
            with Redis.from_url(settings.redis_url, decode_responses=True) as redis:
                store = JobStore(redis, settings.heartbeat_ttl_seconds)
                error = time_limit_error(settings.job_time_limit_seconds, killed=True)
                if store.finish(job_id, JobStatus.FAILED, error=error):
                    logger.warning("Job %s killed at its hard time limit; marked failed.", job_id)
        except Exception:  # the heartbeat's end fails it as lost instead
            logger.exception("Could not mark job %s failed after its hard time limit", job_id)
