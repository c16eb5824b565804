"""The training reporter of the worker's child through a Redis outage, on a Redis of the test's
own stopped and started again: training goes on, nothing reported is lost or written twice."""

import threading
import time
import uuid

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.jobs.params import MlpParams
from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore, ModelEntry
from service.models.store import ModelStore
from service.settings import Settings
from service.worker.runner import StoreReporter, _run_started, end_job
from tests.stack import OwnRedis, wait_for


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path).start()
    yield server
    if server.process is not None:
        server.stop()


def test_entries_reported_while_redis_is_down_are_written_in_order_once_it_answers(own_redis):
    redis = Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=1)
    store = JobStore(redis, heartbeat_ttl_seconds=10)
    job = store.create("mlp", {})
    store.start(job.id, hostname="w@h", pid=1)
    reporter = StoreReporter(store, job.id, interval=0)
    reporter.record_epoch({"epoch": 1})

    own_redis.stop()
    started = time.monotonic()
    for epoch in range(2, 6):
        reporter.report(epoch=epoch, epochs=5)
        reporter.check_cancelled()  # not raised: training goes on
        reporter.record_epoch({"epoch": epoch})
        reporter.record_gradients({"epoch": epoch, "layers": []})
    assert time.monotonic() - started < 2  # an outage costs training next to nothing

    own_redis.start()
    reporter.drain(limit_seconds=30)
    assert [entry["epoch"] for entry in store.entries(job.id, "history")] == [1, 2, 3, 4, 5]
    assert [entry["epoch"] for entry in store.entries(job.id, "gradients")] == [2, 3, 4, 5]
    assert store.get(job.id).progress == {"epoch": 5, "epochs": 5}
    redis.close()


class LosesTheFirstFinishReply(JobStore):
    """A store whose first `finish` runs in Redis but whose reply is lost on the way back."""

    lost = False

    def finish(self, *args, **kwargs):
        moved = super().finish(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise RedisConnectionError("reply lost")
        return moved


class CountingClock:
    def __init__(self) -> None:
        self.ticks = 0

    def tick(self) -> None:
        self.ticks += 1


def started_job(store: JobStore, models: ModelStore) -> tuple[str, ModelEntry]:
    job = store.create("mlp", {})
    store.start(job.id, hostname="w@h", pid=1)
    model = ModelEntry(uuid.uuid4().hex, "mlp", {}, {}, {"keras": "model.keras"})
    models.model_dir(model.id).mkdir(parents=True)
    (models.model_dir(model.id) / "model.keras").write_bytes(b"weights")
    return job.id, model


def test_a_success_whose_reply_was_lost_keeps_its_registered_model(own_redis, tmp_path):
    redis = Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=1)
    store = LosesTheFirstFinishReply(redis, heartbeat_ttl_seconds=10)
    models = ModelStore(redis, tmp_path)
    job_id, model = started_job(store, models)
    reporter = StoreReporter(store, job_id, interval=0)
    result = {"model_id": model.id}

    # The first try registers the model, its reply is lost; the retry is refused (the job is no
    # longer running) and reads that its own earlier try succeeded.
    deadline = time.monotonic() + 30
    assert end_job(store, models, reporter, job_id, JobStatus.SUCCEEDED, deadline, result,
                   model=model)  # fmt: skip
    assert store.lost
    assert store.get(job_id).status == JobStatus.SUCCEEDED
    assert (models.model_dir(model.id) / "model.keras").read_bytes() == b"weights"
    assert models.get(model.id).job_id == job_id

    # Called again, as a retry would be: still a success, the files still there.
    assert end_job(store, models, reporter, job_id, JobStatus.SUCCEEDED, deadline, result,
                   model=model)  # fmt: skip
    assert (models.model_dir(model.id) / "model.keras").is_file()

    # A job failed meanwhile (lost, stalled): nothing registered, its model's files removed.
    other_id, other = started_job(store, models)
    store.mark_failed(other_id, "lost")
    reporter = StoreReporter(store, other_id, interval=0)
    assert not end_job(store, models, reporter, other_id, JobStatus.SUCCEEDED, deadline,
                       {"model_id": other.id}, model=other)  # fmt: skip
    assert not models.model_dir(other.id).exists()
    assert not redis.exists(f"model:{other.id}")
    redis.close()


def test_an_outcome_waits_for_redis_after_every_entry_and_the_clock_ticks_meanwhile(
    own_redis, tmp_path
):
    redis = Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=1)
    store = JobStore(redis, heartbeat_ttl_seconds=10)
    models = ModelStore(redis, tmp_path)
    job_id, model = started_job(store, models)
    clock = CountingClock()
    reporter = StoreReporter(store, job_id, interval=0, clock=clock)
    reporter.record_epoch({"epoch": 1})

    own_redis.stop()
    for epoch in (2, 3):
        reporter.record_epoch({"epoch": epoch})
    ended: list[bool] = []
    deadline = time.monotonic() + 120
    thread = threading.Thread(
        target=lambda: ended.append(
            end_job(
                store,
                models,
                reporter,
                job_id,
                JobStatus.SUCCEEDED,
                deadline,
                {"model_id": model.id},
                model=model,
            )
        )
    )
    thread.start()
    ticks = clock.ticks
    # The worker's parent sees progress while the outcome waits: no stall.
    wait_for(lambda: clock.ticks >= ticks + 3, 60, "the clock to tick while Redis is down")
    own_redis.start()
    thread.join(timeout=120)
    assert ended == [True]
    assert [entry["epoch"] for entry in store.entries(job_id, "history")] == [1, 2, 3]
    assert store.get(job_id).status == JobStatus.SUCCEEDED
    redis.close()


def test_a_job_keeps_its_prepared_images_on_the_artifacts_volume(
    own_redis, tmp_path, monkeypatch, mnist_path
):
    monkeypatch.setenv("PREPARED_CACHE_DIR", "restored after the test")
    monkeypatch.delenv("PREPARED_CACHE_DIR")
    redis = Redis.from_url(own_redis.url, decode_responses=True, socket_connect_timeout=1)
    store = JobStore(redis, heartbeat_ttl_seconds=10)
    models = ModelStore(redis, tmp_path)
    params = MlpParams(hidden_units=[8], epochs=1, train_limit=100, test_limit=50, seed=0)
    record = store.start(store.create("mlp", params.model_dump()).id, hostname="w@h", pid=1)
    settings = Settings(redis_url=own_redis.url, artifacts_dir=tmp_path, mnist_path=mnist_path)
    _run_started(record.id, record, settings, store, models, StoreReporter(store, record.id))
    assert store.get(record.id).status == JobStatus.SUCCEEDED
    # The job's prepared training and test images were cached there.
    assert len(list((tmp_path / "cache" / "prepared").glob("*.npy"))) == 2
    redis.close()
