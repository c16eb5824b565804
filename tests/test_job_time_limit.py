"""JOB_TIME_LIMIT_SECONDS over HTTP, with a real worker started with a short limit: a job that
runs longer ends failed saying why, whether it stops at the soft limit or its process has to
be killed at the hard one, and the worker goes on with the next job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from service.jobs.schemas import JobStatus
from service.worker.time_limits import grace_seconds, time_limit_error, watch_soft_limit
from tests.conftest import FAULTS_DB
from tests.stack import ServiceStack, wait_for
from tests.test_jobs_api import LONG_RUN

pytestmark = pytest.mark.slow

LIMIT_SECONDS = 10  # the least JOB_TIME_LIMIT_SECONDS allows
GRACE = grace_seconds(LIMIT_SECONDS)  # then the hard limit


@pytest.fixture(scope="module")
def limited(tmp_path_factory, mnist_path: Path) -> Iterator[ServiceStack]:
    stack = ServiceStack(
        FAULTS_DB, tmp_path_factory.mktemp("time-limit"), MNIST_PATH=str(mnist_path),
        JOB_TIME_LIMIT_SECONDS=str(LIMIT_SECONDS), PRELOAD_MODELS="false",
    ).start()  # fmt: skip
    yield stack
    stack.stop()


def seconds_run(job: dict) -> float:
    started, finished = (
        datetime.fromisoformat(job[name]) for name in ("started_at", "finished_at")
    )
    return (finished - started).total_seconds()


def assert_the_worker_goes_on(stack: ServiceStack) -> None:
    after = stack.wait_until_finished(stack.submit(steps=1)["id"])
    assert after["status"] == "succeeded", after["error"]


def test_a_job_running_past_the_limit_is_stopped_and_failed_saying_why(limited):
    # Minutes of training on 2 CPU cores: far longer than the limit.
    job = limited.submit("cnn", epochs=50, train_limit=6000, batch_size=32, test_limit=100, seed=0)
    failed = limited.wait_until_finished(job["id"], timeout=LIMIT_SECONDS + GRACE + 60)
    assert failed["status"] == "failed"
    assert failed["error"] == time_limit_error(LIMIT_SECONDS)
    assert "JOB_TIME_LIMIT_SECONDS" in failed["error"]
    # Celery's clock starts a moment before the job records its start.
    assert LIMIT_SECONDS - 1 < seconds_run(failed) < LIMIT_SECONDS + GRACE
    assert limited.client.get("/models").json()["total"] == 0  # no model kept
    assert_the_worker_goes_on(limited)


def test_a_job_that_cannot_stop_is_killed_at_the_hard_limit_and_still_failed(limited):
    job = limited.submit(**LONG_RUN)
    child = limited.wait_until_running(job["id"])["worker"]["pid"]
    # Stopped, the child runs no Python, as when stuck in native code: the soft limit's
    # exception is never raised in it. Its heartbeat comes from the parent, so it is not lost.
    os.kill(child, signal.SIGSTOP)
    failed = limited.wait_until_finished(job["id"], timeout=LIMIT_SECONDS + GRACE + 30)
    assert failed["status"] == "failed"
    assert failed["error"] == time_limit_error(LIMIT_SECONDS, killed=True)
    assert seconds_run(failed) > LIMIT_SECONDS + GRACE - 1
    wait_for(lambda: not _alive(child), 10, f"the job's process {child} to be gone")
    assert_the_worker_goes_on(limited)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child stays a zombie until its parent reaps it.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ")[-1][:1] != "Z"


def test_the_soft_limit_fails_the_job_saying_why_whatever_error_it_surfaced_as(monkeypatch):
    # Raised inside native code, the soft limit's exception can come out as another error
    # (CI saw "SystemError: Objects/listobject.c:338: bad argument to internal function").
    from billiard.pool import soft_timeout_sighandler
    from celery.exceptions import SoftTimeLimitExceeded

    from service.settings import get_settings
    from service.worker import runner

    settings = get_settings()
    native_error = SystemError("Objects/listobject.c:338: bad argument to internal function")
    before = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)  # as in a worker's child
    try:
        # The runner watches from a job's start (stopped here before it reaches Redis).
        def stop_before_redis():
            raise LookupError("stopped")

        monkeypatch.setattr(runner, "get_settings", stop_before_redis)
        with pytest.raises(LookupError):
            runner.run_job("job", worker_hostname="test")
        assert signal.getsignal(signal.SIGUSR1) is not soft_timeout_sighandler  # wrapped
        assert runner._how_it_ended("job", native_error, settings) == (
            JobStatus.FAILED, f"SystemError: {native_error}",
        )  # fmt: skip
        with pytest.raises(SoftTimeLimitExceeded):
            signal.raise_signal(signal.SIGUSR1)
        assert runner._how_it_ended("job", native_error, settings) == (
            JobStatus.FAILED, time_limit_error(settings.job_time_limit_seconds),
        )  # fmt: skip
        watch_soft_limit()  # the next job in the process starts afresh, still watched
        ordinary = f"SystemError: {native_error}"
        assert runner._how_it_ended("job", native_error, settings)[1] == ordinary
        with pytest.raises(SoftTimeLimitExceeded):
            signal.raise_signal(signal.SIGUSR1)
        assert runner._how_it_ended("job", native_error, settings)[1] == time_limit_error(
            settings.job_time_limit_seconds
        )
    finally:
        signal.signal(signal.SIGUSR1, before)
        watch_soft_limit()  # clears the flag; another handler is left as it is


def test_only_billiard_s_soft_limit_handler_is_watched():
    # In the solo pool SIGUSR1 asks Celery for tracebacks: not a time limit.
    def traceback_dump(signum, frame):
        pass

    from service.worker.time_limits import soft_limit_reached

    before = signal.signal(signal.SIGUSR1, traceback_dump)
    try:
        watch_soft_limit()
        assert signal.getsignal(signal.SIGUSR1) is traceback_dump
        signal.raise_signal(signal.SIGUSR1)
        assert not soft_limit_reached()
    finally:
        signal.signal(signal.SIGUSR1, before)
