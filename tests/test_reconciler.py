"""The reconciler's passes on a real Redis DB (no worker): one pass at a time, one message per
count, bounded work per pass, and no resend of messages it cannot read."""

import time

import pytest
from kombu.exceptions import OperationalError
from redis import Redis

from service import redis_keys
from service.jobs.reconciler import READ_QUEUE_EVERY, Pass, Reconciler
from service.jobs.store import JobStore
from service.jobs.task_names import RUN_JOB_TASK
from service.settings import Settings
from service.sweeps.runs import submit_sweep_once
from service.sweeps.schemas import SweepSubmission
from service.sweeps.store import SweepStore
from service.worker.celery_app import create_celery_app
from service.worker.registry import IdleHolding, publish_worker
from tests.conftest import STORE_TEST_DB
from tests.stack import redis_url, wait_for

QUEUE = "reconciler-test"


@pytest.fixture
def redis(store_redis):
    return store_redis


@pytest.fixture
def celery():
    return create_celery_app(Settings(redis_url=redis_url(STORE_TEST_DB)))


def reconciler(redis: Redis, celery, **options) -> Reconciler:
    settings = {"grace_seconds": 1.0, "max_resends": 3, "period_seconds": 0.5,
                "held_idle_seconds": Settings().held_idle_seconds, **options}  # fmt: skip
    return Reconciler(JobStore(redis, 10), celery, QUEUE, **settings)


def overdue_job(store: JobStore, seconds_ago: float = 100.0) -> str:
    """A queued job stored `seconds_ago` with no message sent (as when the API died)."""
    job_id = store.create("backprop", {"steps": 1}).id
    created_at = time.time() - seconds_ago
    store.redis.hset(redis_keys.job_key(job_id), "created_at", repr(created_at))
    store.redis.zadd(redis_keys.jobs_by_status("queued"), {job_id: created_at})
    return job_id


def test_a_resend_is_counted_by_compare_and_set(redis):
    store = JobStore(redis, 10)
    job_id = store.create("backprop", {}).id
    assert store.resend(job_id, 1)
    assert not store.resend(job_id, 1)  # a pass that read the count before the first wrote
    assert store.resend(job_id, 2)
    assert redis.hget(redis_keys.job_key(job_id), "resends") == "2"


def test_two_overlapping_passes_send_one_message_per_count(redis, celery):
    first, second = reconciler(redis, celery), reconciler(redis, celery)
    job_id = overdue_job(first.jobs)
    # Both read the job as never sent again, then both try to send it.
    done = [Pass(), Pass()]
    assert first._send_again(job_id, 0, None, done[0])
    assert second._send_again(job_id, 0, None, done[1])
    assert [d.resent for d in done] == [[job_id], []]
    assert redis.llen(QUEUE) == 1
    assert redis.hget(redis_keys.job_key(job_id), "resends") == "1"


def test_the_lock_is_held_for_the_pass_and_released_only_by_its_owner(redis, celery):
    seen: dict[str, object] = {}
    second = reconciler(redis, celery)

    def during_the_first_pass() -> None:
        seen["second"] = second.run_pass()  # another API process meanwhile
        seen["ttl_ms"] = redis.pttl(redis_keys.RECONCILER_LOCK)

    first = reconciler(redis, celery, after_pass=during_the_first_pass)
    assert first.run_pass() is not None
    assert seen["second"] is None
    assert seen["ttl_ms"] > 0.5 * 1000  # held longer than a period while the pass runs
    # Kept only until a period after the pass began; then the next pass may run.
    assert redis.pttl(redis_keys.RECONCILER_LOCK) <= 0.45 * 1000
    wait_for(lambda: second.run_pass() is not None, 10, "the second process to get a pass")

    # A pass whose lock expired and was taken by another never releases that one's.
    redis.delete(redis_keys.RECONCILER_LOCK)
    third = reconciler(
        redis, celery, after_pass=lambda: redis.set(redis_keys.RECONCILER_LOCK, "another")
    )
    assert third.run_pass() is not None
    assert redis.get(redis_keys.RECONCILER_LOCK) == "another"


def send(celery, job_id: str) -> None:
    celery.send_task(RUN_JOB_TASK, args=[job_id], queue=QUEUE)


def test_a_pass_looks_at_a_bounded_number_of_overdue_jobs_then_the_next(redis, celery):
    passes = reconciler(redis, celery, batch=2)
    lost = [overdue_job(passes.jobs, seconds_ago=100 - i) for i in range(5)]
    resent = []
    for _ in range(3):
        done = Pass()
        passes._requeue(done)
        resent.append(done.resent)
    assert resent == [lost[:2], lost[2:4], lost[4:]]
    assert redis.llen(QUEUE) == 5


def test_with_a_message_for_every_queued_job_the_queue_is_not_read(redis, celery, monkeypatch):
    passes = reconciler(redis, celery)
    for _ in range(3):
        send(celery, overdue_job(passes.jobs))

    def unexpected(*_args):
        raise AssertionError("the queue was read although no message can be missing")

    monkeypatch.setattr(passes, "_messages", unexpected)
    done = Pass()
    passes._requeue(done)
    assert done.resent == [] and redis.llen(QUEUE) == 3


def test_a_cancelled_jobs_message_cannot_hide_a_lost_job_for_long(redis, celery):
    """The counts match (one queued job, one message) but the message is a cancelled job's:
    the queue is read every READ_QUEUE_EVERY passes and the lost job sent again."""
    passes = reconciler(redis, celery)
    cancelled, lost = overdue_job(passes.jobs), overdue_job(passes.jobs)
    send(celery, cancelled)
    passes.jobs.request_cancel(cancelled)  # queued: cancelled at once, its message stays
    done = Pass()
    for _ in range(READ_QUEUE_EVERY):
        passes._requeue(done)
    assert done.resent == [lost]


def test_messages_it_cannot_read_skip_the_pass_saying_why(redis, celery, caplog):
    passes = reconciler(redis, celery)
    waiting, lost = overdue_job(passes.jobs), overdue_job(passes.jobs)
    redis.lpush(QUEUE, "\x78\x9c compressed, or pickled")  # the waiting job's, unreadable
    done = Pass()
    passes._requeue(done)
    assert done.resent == [] and redis.llen(QUEUE) == 1  # neither job taken for lost
    assert "cannot read any of the 1 messages" in caplog.text

    # Readable, the same messages tell the lost job from the waiting one.
    redis.delete(QUEUE)
    send(celery, waiting)
    passes._requeue(done)
    assert done.resent == [lost]


def test_the_pinned_serializer_is_json_without_compression(celery):
    assert celery.conf.task_serializer == "json" and celery.conf.task_compression is None
    assert list(celery.conf.accept_content) == ["json"]


def test_jobs_a_live_worker_holds_while_running_none_are_sent_again_past_the_limit(redis, celery):
    """A worker whose pool is stuck before starting its jobs (no watchdog sees them) holds
    them for HELD_IDLE_SECONDS at most; jobs waiting behind one it runs are left alone."""
    store = JobStore(redis, 10)
    waiting, stuck = overdue_job(store), overdue_job(store)
    publish_worker(redis, {"hostname": "busy@h", "holding": [waiting],
                           "holding_idle_seconds": 0.0}, 60_000)  # fmt: skip
    publish_worker(redis, {"hostname": "stuck@h", "holding": [stuck],
                           "holding_idle_seconds": 29.0}, 60_000)  # fmt: skip
    assert reconciler(redis, celery, held_idle_seconds=30.0).run_pass().resent == []

    publish_worker(redis, {"hostname": "stuck@h", "holding": [stuck],
                           "holding_idle_seconds": 30.0}, 60_000)  # fmt: skip
    redis.delete(redis_keys.RECONCILER_LOCK)  # the next period
    assert reconciler(redis, celery, held_idle_seconds=30.0).run_pass().resent == [stuck]
    assert redis.llen(QUEUE) == 1


def test_a_worker_counts_holding_idle_only_while_it_runs_nothing():
    now = [0.0]
    idle = IdleHolding(clock=lambda: now[0])
    assert idle.seconds(holding=True, running=False) == 0.0
    now[0] = 5.0
    assert idle.seconds(holding=True, running=False) == 5.0
    now[0] = 6.0
    assert idle.seconds(holding=True, running=True) == 0.0  # it started one: not stuck
    now[0] = 100.0
    assert idle.seconds(holding=True, running=False) == 0.0  # counted from now again
    now[0] = 103.0
    assert idle.seconds(holding=True, running=False) == 3.0
    assert idle.seconds(holding=False, running=False) == 0.0


class RefusingAfter:
    """A Celery app whose broker takes the first `accepted` messages, then refuses the rest."""

    def __init__(self, celery, accepted: int) -> None:
        self.celery, self.accepted, self.refused = celery, accepted, 0

    def send_task(self, *args, **kwargs):
        if self.accepted == 0:
            self.refused += 1
            raise OperationalError("the broker refuses the message (as in the test)")
        self.accepted -= 1
        return self.celery.send_task(*args, **kwargs)


def test_a_sweep_whose_queueing_fails_midway_leaves_no_orphans_and_a_retry_gives_one(redis, celery):
    store, sweeps = JobStore(redis, 10), SweepStore(redis)
    submission = SweepSubmission.model_validate(
        {"base": {"kind": "backprop", "params": {"steps": 1}},
         "grid": {"activation": ["relu", "tanh", "sigmoid"]}}
    )  # fmt: skip
    refusing = RefusingAfter(celery, accepted=1)  # the first send succeeds, the second fails
    sweep, created = submit_sweep_once(
        store, sweeps, refusing, QUEUE, submission, idempotency_key="sweep-1"
    )
    job_ids = [job.job_id for job in sweep.jobs]
    assert created and len(job_ids) == 3 and refusing.refused == 1
    # Every job stored belongs to the sweep, and is queued; one message was sent.
    assert set(redis.zrange(redis_keys.JOBS_ALL, 0, -1)) == set(job_ids)
    assert {redis.hget(redis_keys.job_key(job_id), "status") for job_id in job_ids} == {"queued"}
    assert redis.llen(QUEUE) == 1

    again, created = submit_sweep_once(
        store, sweeps, celery, QUEUE, submission, idempotency_key="sweep-1"
    )
    assert not created and again.id == sweep.id
    assert redis.zcard(redis_keys.SWEEPS_ALL) == 1 and redis.zcard(redis_keys.JOBS_ALL) == 3
    assert redis.llen(QUEUE) == 1  # the retry sent nothing

    # Past the grace, the reconciler sends the two refused messages, not the first again.
    for job_id in job_ids:
        created_at = time.time() - 100
        redis.hset(redis_keys.job_key(job_id), "created_at", repr(created_at))
        redis.zadd(redis_keys.jobs_by_status("queued"), {job_id: created_at})
    assert sorted(reconciler(redis, celery).run_pass().resent) == sorted(job_ids[1:])
    assert redis.llen(QUEUE) == 3
