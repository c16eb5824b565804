"""The job store's guarantees, on a real Redis DB reserved for these tests."""

from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from service.errors import ConflictError, NotFoundError
from service.jobs.lifecycle import TRANSITIONS, allowed_moves
from service.jobs.schemas import FINISHED_STATUSES, JobStatus
from service.jobs.store import JobStore, ModelEntry
from service.models.store import ModelStore
from service.redis_keys import MODELS_CHANGED_CHANNEL
from tests.stack import wait_for


@pytest.fixture
def store(store_redis):
    return JobStore(store_redis, heartbeat_ttl_seconds=0.3)


def test_a_job_moves_queued_running_succeeded(store):
    job = store.create("backprop", {"steps": 1})
    assert job.status == JobStatus.QUEUED and job.started_at is None

    running = store.start(job.id, hostname="w@h", pid=123)
    assert running.status == JobStatus.RUNNING
    assert running.worker.pid == 123

    assert store.finish(job.id, JobStatus.SUCCEEDED, result={"loss": 1.5})
    done = store.get(job.id)
    assert done.status == JobStatus.SUCCEEDED
    assert done.result == {"loss": 1.5}
    assert done.created_at <= done.started_at <= done.finished_at


def test_a_cancelled_job_can_never_start(store):
    job = store.create("backprop", {})
    assert store.request_cancel(job.id).status == JobStatus.CANCELLED
    assert store.start(job.id, hostname="w@h", pid=1) is None
    assert store.get(job.id).status == JobStatus.CANCELLED


def test_cancelling_a_running_job_only_raises_its_flag(store):
    job = store.create("backprop", {})
    store.start(job.id, hostname="w@h", pid=1)
    record = store.request_cancel(job.id)
    assert record.status == JobStatus.RUNNING and record.cancel_requested
    assert store.is_cancel_requested(job.id)


def test_finished_jobs_cannot_be_cancelled_or_overwritten(store):
    job = store.create("backprop", {})
    store.start(job.id, hostname="w@h", pid=1)
    store.finish(job.id, JobStatus.FAILED, error="boom")
    with pytest.raises(ConflictError, match="already failed"):
        store.request_cancel(job.id)
    assert not store.finish(job.id, JobStatus.SUCCEEDED, result={"late": True})
    record = store.get(job.id)
    assert record.status == JobStatus.FAILED and record.result is None


def test_only_jobs_whose_heartbeat_expired_are_failed_as_lost(store):
    alive = store.create("backprop", {})
    lost = store.create("backprop", {})
    store.start(alive.id, hostname="w@h", pid=1)
    store.start(lost.id, hostname="w@h", pid=2)
    # The alive job's worker beats with a long TTL (no slow machine outlasts it); the lost
    # one's 0.3 s heartbeat expires. Lost jobs are not reaped within a heartbeat TTL (+1 s) of
    # Redis starting, so a Redis the suite has just started is waited for too.
    JobStore(store.redis, heartbeat_ttl_seconds=60).heartbeat(alive.id)
    wait_for(
        lambda: (
            not store.redis.exists(f"job:{lost.id}:heartbeat")
            and store.redis.info("server")["uptime_in_seconds"] >= store.heartbeat_ttl_seconds + 1
        ),
        10,
        "the lost job's heartbeat to expire, and Redis to be up longer than a heartbeat TTL",
    )

    assert store.fail_lost_jobs() == [lost.id]
    assert store.get(alive.id).status == JobStatus.RUNNING
    lost_record = store.get(lost.id)
    assert lost_record.status == JobStatus.FAILED
    assert "stopped responding" in lost_record.error


def test_unknown_jobs_are_not_found(store):
    with pytest.raises(NotFoundError):
        store.get("missing")
    with pytest.raises(NotFoundError):
        store.request_cancel("missing")
    assert store.start("missing", hostname="w@h", pid=1) is None


def test_status_indexes_follow_every_transition(store):
    jobs = [store.create("backprop", {"i": i}) for i in range(4)]
    store.start(jobs[0].id, hostname="w@h", pid=1)
    store.finish(jobs[0].id, JobStatus.SUCCEEDED, result={})
    store.request_cancel(jobs[1].id)
    store.start(jobs[2].id, hostname="w@h", pid=1)

    def ids(**filters):
        return [job.id for job in store.list(**filters)[0]]

    assert ids(status=JobStatus.SUCCEEDED) == [jobs[0].id]
    assert ids(status=JobStatus.CANCELLED) == [jobs[1].id]
    assert ids(status=JobStatus.RUNNING, kind="backprop") == [jobs[2].id]
    assert ids(status=JobStatus.QUEUED) == [jobs[3].id]
    assert ids(kind="backprop") == [job.id for job in reversed(jobs)]
    assert ids(kind="other") == []
    _, total = store.list(status=JobStatus.QUEUED, kind="backprop", limit=1)
    assert total == 1


def test_a_late_heartbeat_cannot_revive_a_finished_job(store):
    job = store.create("backprop", {})
    store.start(job.id, hostname="w@h", pid=1)
    store.finish(job.id, JobStatus.SUCCEEDED, result={})
    store.heartbeat(job.id)
    assert not store.redis.exists(f"job:{job.id}:heartbeat")


def test_deleting_a_finished_job_removes_every_key_and_index_entry(store):
    kept = store.create("backprop", {})
    job = store.create("backprop", {})
    store.start(job.id, hostname="w@h", pid=1)
    store.append_entry(job.id, "history", {"epoch": 1})
    store.append_entry(job.id, "gradients", {"epoch": 1})
    store.finish(job.id, JobStatus.SUCCEEDED, result={})

    store.delete(job.id)
    assert [key for key in store.redis.scan_iter() if job.id in key] == []
    for index in store.redis.scan_iter(match="jobs:*"):
        assert store.redis.zscore(index, job.id) is None, index
    assert [record.id for record in store.list()[0]] == [kept.id]
    with pytest.raises(NotFoundError):
        store.delete(job.id)


def test_only_finished_jobs_can_be_deleted(store):
    queued = store.create("backprop", {})
    running = store.create("backprop", {})
    store.start(running.id, hostname="w@h", pid=1)
    for job, status in ((queued, "queued"), (running, "running")):
        with pytest.raises(ConflictError, match=f"is {status}.*cancel"):
            store.delete(job.id)
        assert store.get(job.id).status == status
    assert store.redis.exists(f"job:{running.id}:heartbeat")


def test_ids_that_cannot_be_a_jobs_never_reach_redis(store):
    job = store.create("backprop", {})
    store.append_entry(job.id, "history", {"epoch": 1})
    for bad in (f"{job.id}:history", job.id.upper(), job.id + "\n", "", "*"):
        with pytest.raises(NotFoundError, match="32 hexadecimal digits"):
            store.get(bad)
        with pytest.raises(NotFoundError):
            store.entries(bad, "history")
        with pytest.raises(NotFoundError):
            store.request_cancel(bad)
        with pytest.raises(NotFoundError):
            store.delete(bad)
    assert store.get_many([f"{job.id}:history", job.id]) == [store.get(job.id)]


def test_the_lifecycle_table_allows_no_move_out_of_a_finished_status():
    moves = allowed_moves()
    assert moves[JobStatus.QUEUED] == {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}
    assert moves[JobStatus.RUNNING] == {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
    for status in FINISHED_STATUSES:
        assert moves[status] == set()
        assert not any(status in row.sources for row in TRANSITIONS.values())


def test_a_transition_not_in_the_table_is_refused_by_redis(store):
    job = store.create("backprop", {})
    with pytest.raises(ResponseError, match="unknown job transition"):
        store.transition(job.id, "teleport", {})
    assert store.get(job.id).status == JobStatus.QUEUED


def test_a_transition_that_registers_no_model_refuses_one_before_writing_anything(store):
    job = store.create("mlp", {})
    store.start(job.id, hostname="w@h", pid=1)
    before = store.redis.hgetall(f"job:{job.id}")
    model = ModelEntry("c" * 32, "mlp", {}, {}, {})
    with pytest.raises(ResponseError, match="registers no model"):
        store.transition(job.id, "fail", {"error": "x", "finished_at": "1.0"}, model)
    assert store.redis.hgetall(f"job:{job.id}") == before
    assert store.redis.zscore("jobs:status:running", job.id) is not None
    assert store.redis.zscore("jobs:status:failed", job.id) is None
    assert store.redis.exists(f"job:{job.id}:heartbeat")
    assert not store.redis.exists(f"model:{model.id}")


def test_success_and_its_model_are_one_step(store):
    job = store.create("mlp", {"epochs": 1})
    store.start(job.id, hostname="w@h", pid=1)
    model = ModelEntry("a" * 32, "mlp", {"epochs": 1}, {"test_accuracy": 0.9}, {"keras": "m"})
    pubsub = store.redis.pubsub()
    pubsub.subscribe(MODELS_CHANGED_CHANNEL)
    assert store.finish(job.id, JobStatus.SUCCEEDED, result={"model_id": model.id}, model=model)

    registered = ModelStore(store.redis, Path("/nonexistent")).get(model.id)
    assert (registered.kind, registered.job_id) == ("mlp", job.id)
    assert registered.metrics == {"test_accuracy": 0.9} and registered.files == {"keras": "m"}
    assert ModelStore(store.redis, Path("/nonexistent")).newest("mlp").id == model.id
    messages = [pubsub.get_message(timeout=1) for _ in range(2)]
    assert any(message and message["data"] == model.id for message in messages)
    pubsub.close()

    # A job no longer running registers nothing: no model without its job's success.
    late = store.create("mlp", {})
    store.start(late.id, hostname="w@h", pid=1)
    store.mark_failed(late.id, "lost")
    other = ModelEntry("b" * 32, "mlp", {}, {}, {})
    assert not store.finish(late.id, JobStatus.SUCCEEDED, result={}, model=other)
    assert not store.redis.exists(f"model:{other.id}")


def test_a_heartbeat_expired_in_a_redis_outage_comes_back_only_for_a_running_job(store):
    running = store.create("backprop", {})
    store.start(running.id, hostname="w@h", pid=1)
    store.redis.delete(f"job:{running.id}:heartbeat")  # as a restart past its TTL leaves it
    assert store.heartbeat(running.id)
    assert store.redis.exists(f"job:{running.id}:heartbeat")
    queued = store.create("backprop", {})
    assert not store.heartbeat(queued.id)
    assert not store.redis.exists(f"job:{queued.id}:heartbeat")


def test_mark_failed_fails_queued_and_running_jobs_only(store):
    queued, running, done = (store.create("backprop", {}) for _ in range(3))
    store.start(running.id, hostname="w@h", pid=1)
    store.start(done.id, hostname="w@h", pid=1)
    store.finish(done.id, JobStatus.SUCCEEDED, result={})
    assert store.mark_failed(queued.id, "could not be queued")
    assert store.mark_failed(running.id, "stalled")
    assert not store.mark_failed(done.id, "late")
    assert [store.get(job.id).status for job in (queued, running, done)] == [
        JobStatus.FAILED,
        JobStatus.FAILED,
        JobStatus.SUCCEEDED,
    ]


def test_entries_written_again_after_a_lost_reply_are_not_appended_twice(store):
    job = store.create("mlp", {})
    store.append_from(job.id, "history", 0, [{"epoch": 1}, {"epoch": 2}])
    # The reply to this one was lost: its writer tries the same entries again, then more.
    store.append_from(job.id, "history", 2, [{"epoch": 3}])
    store.append_from(job.id, "history", 2, [{"epoch": 3}, {"epoch": 4}])
    assert [entry["epoch"] for entry in store.entries(job.id, "history")] == [1, 2, 3, 4]


def job_in(store: JobStore, status: JobStatus) -> str:
    """A new job moved to `status` through ordinary transitions."""
    job_id = store.create("backprop", {}).id
    if status == JobStatus.CANCELLED:
        store.request_cancel(job_id)
    elif status != JobStatus.QUEUED:
        store.start(job_id, hostname="w@h", pid=1)
        if status != JobStatus.RUNNING:
            store.finish(job_id, status, result={})
    assert store.get(job_id).status == status
    return job_id


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_every_transition_moves_exactly_as_its_row_of_the_table_says(store, name):
    row = TRANSITIONS[name]
    for status in JobStatus:
        job_id = job_in(store, status)
        heartbeat_before = store.redis.exists(f"job:{job_id}:heartbeat")
        moved, previous = store.transition(job_id, name, {"marker": name})
        assert previous == status
        raw = store.redis.hgetall(f"job:{job_id}")
        heartbeat = store.redis.exists(f"job:{job_id}:heartbeat")
        if status not in row.sources:
            assert not moved and raw["status"] == status and "marker" not in raw
            assert heartbeat == heartbeat_before
            continue
        assert moved and raw["status"] == row.target and raw["marker"] == name
        assert store.redis.zscore(f"jobs:status:{row.target}", job_id) is not None
        if row.target != status:
            assert store.redis.zscore(f"jobs:status:{status}", job_id) is None
        expected = {"start": 1, "stop": 0, "keep": heartbeat_before}[row.heartbeat]
        assert heartbeat == expected
