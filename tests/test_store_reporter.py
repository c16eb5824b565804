"""The training reporter of the worker's child through a Redis outage, on a Redis of the test's
own stopped and started again: training goes on, nothing reported is lost or written twice."""

import time

import pytest
from redis import Redis

from service.jobs.store import JobStore
from service.worker.runner import StoreReporter
from tests.stack import OwnRedis


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
