"""DELETE /jobs/{id}, and job ids checked before they reach Redis: over HTTP, with a real Redis
and a real worker."""

from __future__ import annotations

import pytest

from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from tests.conftest import FAULTS_DB
from tests.stack import ServiceStack
from tests.test_jobs_api import LONG_RUN

TOKEN = "delete-token-for-tests"
TINY_MLP = {"hidden_units": [8], "epochs": 1, "train_limit": 300, "test_limit": 100, "seed": 0}


def train_tiny_mlp(stack: ServiceStack) -> dict:
    """A finished mlp job: it has a history, gradients and a stored model."""
    job = stack.wait_until_finished(stack.submit("mlp", **TINY_MLP)["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    return job


@pytest.fixture(scope="module")
def trained(stack: ServiceStack, digit_model: dict) -> dict:
    """The job that trained the session's digit model (only read here)."""
    return stack.job(digit_model["job_id"])


def keys_of(stack: ServiceStack, job_id: str) -> list[str]:
    """Every Redis key naming the job, and every sorted set it is a member of."""
    named = list(stack.redis.scan_iter(match=f"*{job_id}*"))
    indexes = [
        key
        for key in stack.redis.scan_iter(match="jobs:*")
        if stack.redis.type(key) == "zset" and stack.redis.zscore(key, job_id) is not None
    ]
    return named + indexes


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/jobs/{id}:history"),
        ("get", "/jobs/{id}:gradients"),
        ("get", "/jobs/{id}:history/history"),
        ("post", "/jobs/{id}:history/cancel"),
        ("delete", "/jobs/{id}:history"),
        ("get", "/jobs/{id}:history/plots/history.png"),
    ],
)
def test_an_id_that_names_another_redis_key_is_404_not_500(stack, trained, method, path):
    assert stack.client.get(f"/jobs/{trained['id']}/history").json()  # the list key exists
    response = getattr(stack.client, method)(path.format(id=trained["id"]))
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "not_found"
    assert f"{trained['id']}:" in response.json()["detail"]
    assert stack.job(trained["id"])["status"] == "succeeded"  # nothing changed


@pytest.mark.parametrize("job_id", ["nope", "0" * 31, "0" * 33, "A" * 32, "*", "%20"])
def test_malformed_ids_are_404_in_the_usual_shape(client, job_id):
    for response in (
        client.get(f"/jobs/{job_id}"),
        client.get(f"/jobs/{job_id}/history"),
        client.post(f"/jobs/{job_id}/cancel"),
        client.delete(f"/jobs/{job_id}"),
    ):
        assert response.status_code == 404, response.text
        assert set(response.json()) == {"code", "detail"}
        assert response.json()["code"] == "not_found"


def test_deleting_a_finished_job_removes_every_key_but_keeps_its_model(stack, mnist_path):
    job = train_tiny_mlp(stack)
    job_id, model_id = job["id"], job["result"]["model_id"]
    assert stack.client.get(f"/jobs/{job_id}/history").json()
    assert stack.client.get(f"/jobs/{job_id}/gradients").json()
    assert keys_of(stack, job_id)
    total = stack.client.get("/jobs").json()["total"]

    response = stack.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert keys_of(stack, job_id) == []
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/history", f"/jobs/{job_id}/gradients"):
        assert stack.client.get(path).status_code == 404, path
    assert stack.client.get("/jobs").json()["total"] == total - 1
    both = {"kind": "mlp", "status": "succeeded"}
    for filters in ({"kind": "mlp"}, {"status": "succeeded"}, both):
        listed = stack.client.get("/jobs", params={**filters, "limit": 100}).json()["items"]
        assert job_id not in {item["id"] for item in listed}, filters
    model = stack.client.get(f"/models/{model_id}")
    assert model.status_code == 200 and model.json()["job_id"] == job_id
    assert stack.client.get(f"/models/{model_id}/download").status_code == 200
    assert stack.client.delete(f"/jobs/{job_id}").status_code == 404  # gone already


def test_queued_and_running_jobs_cannot_be_deleted_until_they_stop(stack):
    running = stack.submit(**LONG_RUN)
    stack.wait_until_running(running["id"])
    queued = stack.submit(steps=1)
    for job, status in ((running, "running"), (queued, "queued")):
        response = stack.client.delete(f"/jobs/{job['id']}")
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        assert f"is {status}" in detail and f"POST /jobs/{job['id']}/cancel" in detail
        assert stack.job(job["id"])["status"] == status

    for job in (queued, running):
        stack.client.post(f"/jobs/{job['id']}/cancel")
    for job in (queued, running):
        assert stack.wait_until_finished(job["id"])["status"] == JobStatus.CANCELLED
        assert stack.client.delete(f"/jobs/{job['id']}").status_code == 204
        assert keys_of(stack, job["id"]) == []


def test_a_failed_job_can_be_deleted(stack):
    job = stack.submit(activation="identity", learning_rate=100, steps=50)
    assert stack.wait_until_finished(job["id"])["status"] == "failed"
    assert stack.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert keys_of(stack, job["id"]) == []


def test_deleting_needs_the_write_token(tmp_path):
    guarded = ServiceStack(FAULTS_DB, tmp_path, API_TOKEN=TOKEN).start(worker=False)
    try:
        store = JobStore(guarded.redis, heartbeat_ttl_seconds=10)
        job = store.create("backprop", {})
        store.start(job.id, hostname="w@h", pid=1)
        store.finish(job.id, JobStatus.SUCCEEDED, result={})
        path = f"/jobs/{job.id}"
        assert guarded.client.delete(path).status_code == 401
        wrong = guarded.client.delete(path, headers={"Authorization": "Bearer not-it"})
        assert wrong.status_code == 403
        assert guarded.client.get(path).status_code == 200  # still there
        right = guarded.client.delete(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 204
        assert guarded.client.get(path).status_code == 404
    finally:
        guarded.stop()
