"""Redis restarting or down, with a Redis of the test's own (append-only, as in production):
redis-server where installed, else the embedded valkey-server; `REDIS_SERVER` picks one."""

from __future__ import annotations

import pytest

from tests.photo_like import encode
from tests.stack import OwnRedis, ServiceStack, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path).start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture
def stack_on_own_redis(own_redis, tmp_path, mnist_path):
    stack = ServiceStack(0, tmp_path, redis_base=own_redis.url, MNIST_PATH=str(mnist_path))
    stack.start()
    yield stack
    if own_redis.process is None:
        own_redis.start()
    stack.stop()


def snapshot(stack: ServiceStack, job_ids: list[str]) -> dict:
    """Everything the API shows about these jobs and every model."""
    get = stack.client.get
    return {
        "jobs": [get(f"/jobs/{job_id}").json() for job_id in job_ids],
        "history": [get(f"/jobs/{job_id}/history").json() for job_id in job_ids],
        "gradients": [get(f"/jobs/{job_id}/gradients").json() for job_id in job_ids],
        "models": get("/models").json(),
    }


def test_a_redis_restart_loses_no_job_history_gradient_or_model(own_redis, stack_on_own_redis):
    stack = stack_on_own_redis
    trained = stack.submit("mlp", hidden_units=[16], epochs=2, train_limit=1000, test_limit=200)
    graph = stack.submit("backprop", steps=3)
    job_ids = [trained["id"], graph["id"]]
    for job_id in job_ids:
        assert stack.wait_until_finished(job_id, timeout=120)["status"] == "succeeded"
    model_id = stack.job(trained["id"])["result"]["model_id"]
    stack.client.put(f"/models/{model_id}/aliases/kept")
    before = snapshot(stack, job_ids)
    assert before["history"][0] and before["gradients"][0] and before["models"]["total"] == 1

    own_redis.stop()
    own_redis.start()
    wait_for(lambda: stack.client.get("/health").json()["redis"]["reachable"], 30,
             "the API to reach Redis again")  # fmt: skip
    assert snapshot(stack, job_ids) == before
    assert stack.client.get("/models/kept").json()["id"] == model_id


def test_with_redis_down_jobs_answer_503_and_loaded_models_keep_predicting(
    own_redis, stack_on_own_redis, test_digits
):
    stack = stack_on_own_redis
    trained = stack.submit("cnn", conv_filters=[8], dense_units=16, epochs=1, train_limit=1000,
                           test_limit=200)  # fmt: skip
    assert stack.wait_until_finished(trained["id"], timeout=120)["status"] == "succeeded"
    files = [("file", ("d.png", encode(test_digits[0][0], "PNG"), "image/png"))]
    first = stack.client.post("/predict/digit", files=files, timeout=60)  # loads the model
    assert first.status_code == 200, first.text

    own_redis.stop()
    submitted = stack.client.post("/jobs", json={"kind": "backprop"})
    assert submitted.status_code == 503
    assert "Redis" in submitted.json()["detail"] and "retry" in submitted.json()["detail"]
    health = stack.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and not health.json()["redis"]["reachable"]
    for _ in range(5):
        again = stack.client.post("/predict/digit", files=files)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()

    own_redis.start()
    wait_for(lambda: stack.client.post("/jobs", json={"kind": "backprop"}).status_code == 202,
             30, "jobs to be accepted again")  # fmt: skip
