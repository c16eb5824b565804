"""The worker parent's watchdog and the child's side of it, on a real Redis DB and real
processes (no Celery): stalls are timed by the parent's own clock, the progress folder is
private, and the process of a job that ended elsewhere stops."""

import os
import stat
import subprocess
import time
from types import SimpleNamespace

import pytest

from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from service.worker import watchdog
from service.worker.runner import JobEnded, StoreReporter
from service.worker.watchdog import ProgressClock, Watchdog, create_progress_dir
from tests.stack import wait_for


@pytest.fixture
def store(store_redis):
    return JobStore(store_redis, heartbeat_ttl_seconds=60)


@pytest.fixture
def child():
    """A process standing for the pool child running the job."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def running_job(store: JobStore, pid: int) -> str:
    job_id = store.create("backprop", {}).id
    store.start(job_id, hostname="w@h", pid=pid)
    return job_id


def test_the_progress_folder_is_private_and_its_failure_stops_nothing(monkeypatch, store):
    folder = create_progress_dir()
    try:
        assert folder is not None and stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert folder.name != f"digit-service-worker-{os.getpid()}"  # not predictable
    finally:
        watchdog.remove_progress_dir()

    def refuse(**_):
        raise PermissionError("no room in /tmp")

    monkeypatch.setattr(watchdog.tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(watchdog, "_progress_dir", None)
    assert create_progress_dir() is None
    clock = ProgressClock("a" * 32)
    clock.tick(force=True)  # no folder: a no-op
    clock.close()
    job_id = running_job(store, pid=os.getpid())
    Watchdog(store, {"backprop": 0.0}, 30).check([(job_id, SimpleNamespace(worker_pid=1))])
    assert store.get(job_id).status == JobStatus.RUNNING  # nothing to judge a stall by


def test_a_stall_is_a_progress_file_unchanged_by_the_parents_clock(store, child, tmp_path):
    job_id = running_job(store, child.pid)
    clock = ProgressClock(job_id, tmp_path)
    # A file last touched an hour ago by the wall clock (as after the clock stepped forward):
    # not a stall, as the parent has not yet seen it unchanged for the limit.
    hour_ago = time.time() - 3600
    os.utime(clock.path, (hour_ago, hour_ago))
    dog = Watchdog(store, {"backprop": 0.5}, 30, folder=tmp_path)
    request = SimpleNamespace(worker_pid=child.pid)
    dog.check([(job_id, request)])
    assert store.get(job_id).status == JobStatus.RUNNING

    # Progress (the file changes) keeps it running past the limit.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        clock.tick(force=True)
        os.utime(clock.path, ns=(time.time_ns(), time.time_ns()))
        dog.check([(job_id, request)])
        time.sleep(0.05)
    assert store.get(job_id).status == JobStatus.RUNNING

    # Silent longer than the limit: failed as stalled, its process killed.
    wait_for(
        lambda: dog.check([(job_id, request)]) or store.get(job_id).status == JobStatus.FAILED,
        30,
        "the silent job to be failed as stalled",
    )
    assert "no progress for 0.5 s" in store.get(job_id).error
    assert child.wait(timeout=10) == -9


def test_the_process_of_a_job_that_ended_elsewhere_is_killed_after_the_grace(store, child):
    job_id = running_job(store, child.pid)
    store.mark_failed(job_id, "lost its worker")  # as the reconciler after a partition
    dog = Watchdog(store, {}, cancel_grace_seconds=0.3, folder=None)
    request = SimpleNamespace(worker_pid=child.pid)
    dog.check([(job_id, request)])
    assert child.poll() is None  # within the grace: it may stop by itself

    def killed() -> bool:
        dog.check([(job_id, request)])
        return child.poll() is not None

    wait_for(killed, 30, "the process of the ended job to be killed")
    assert store.get(job_id).status == JobStatus.FAILED


def test_training_stops_at_its_next_step_once_its_job_has_ended_elsewhere(store):
    job_id = running_job(store, pid=1)
    reporter = StoreReporter(store, job_id, interval=0)
    reporter.check_cancelled()  # running: goes on
    store.mark_failed(job_id, "lost its worker")
    with pytest.raises(JobEnded, match="is failed"):
        reporter.check_cancelled()
