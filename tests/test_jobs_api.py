"""The jobs API over HTTP, with a real Redis and a real Celery worker."""

import os
import signal
from datetime import datetime

import pytest

from service.errors import ConflictError
from service.jobs import queue as queue_module
from service.jobs.kinds import InvalidJobError
from service.jobs.params import MAX_BACKPROP_STEPS, BackpropParams
from service.jobs.queue import submit_job_once
from service.jobs.schemas import JobSubmission
from service.jobs.store import JobStore
from tests.stack import wait_for
from tests.test_course_network import ACTIVATION_NAMES, random_case, tf_course_network

LONG_RUN = {"steps": MAX_BACKPROP_STEPS, "learning_rate": 1e-6}  # several seconds of work


def test_submitted_job_runs_on_the_worker_and_matches_tensorflow(stack):
    response = stack.client.post("/jobs", json={"kind": "backprop", "params": {"steps": 2}})
    assert response.status_code == 202
    submitted = response.json()
    assert submitted["status"] == "queued"
    assert response.headers["location"] == f"/jobs/{submitted['id']}"
    assert submitted["params"] == BackpropParams(steps=2).model_dump()

    job = stack.wait_until_finished(submitted["id"])
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    params = job["params"]
    tape, weights, nodes = tf_course_network(
        params["activation"], params["weights"], params["x"], params["y"]
    )
    expected = [float(g) for g in tape.gradient(nodes["loss"], weights)]
    assert result["gradients"] == pytest.approx(expected, rel=1e-9)
    assert result["output"] == pytest.approx(float(nodes["output"]), rel=1e-12)
    assert result["loss"] == pytest.approx(float(nodes["loss"]), rel=1e-12)
    assert len(result["history"]) == 2
    assert job["progress"] == {"step": 2, "steps": 2, "loss": result["history"][-1]}

    created, started, finished = (
        datetime.fromisoformat(job[field]) for field in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished
    assert job["worker"]["hostname"].startswith(stack.worker_name.split("@")[0])


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_every_activation_gives_tensorflows_gradients_through_the_api(stack, activation):
    weights, x, y = random_case(7)
    job = stack.submit(activation=activation, weights=weights, x=x, y=y, steps=1)
    result = stack.wait_until_finished(job["id"])["result"]

    tape, tf_weights, tf_nodes = tf_course_network(activation, weights, x, y)
    for node in result["nodes"]:
        if node["name"] in tf_nodes:
            expected = tape.gradient(tf_nodes["loss"], tf_nodes[node["name"]])
            assert node["grad"] == pytest.approx(float(expected), rel=1e-8, abs=1e-12)
    expected = [float(g) for g in tape.gradient(tf_nodes["loss"], tf_weights)]
    assert result["gradients"] == pytest.approx(expected, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "resnet"}, ["body", "kind"]),
        ({"params": {}}, ["body", "kind"]),
        ({"kind": "backprop", "params": {"steps": "many"}}, ["body", "params", "steps"]),
        ({"kind": "backprop", "params": {"steps": 0}}, ["body", "params", "steps"]),
        (
            {"kind": "backprop", "params": {"steps": MAX_BACKPROP_STEPS + 1}},
            ["body", "params", "steps"],
        ),
        ({"kind": "backprop", "params": {"lr": 0.1}}, ["body", "params", "lr"]),
        ({"kind": "backprop", "params": {"weights": [1, 2]}}, ["body", "params", "weights"]),
        ({"kind": "backprop", "params": {"activation": "gelu"}}, ["body", "params", "activation"]),
        ({"kind": "backprop", "params": {"x": "nan"}}, ["body", "params", "x"]),
        (
            {"kind": "backprop", "params": {"learning_rate": -1}},
            ["body", "params", "learning_rate"],
        ),
        ({"kind": "backprop", "params": [1, 2]}, ["body", "params"]),
    ],
)
def test_invalid_submissions_are_rejected_naming_the_field(stack, body, field):
    before = stack.client.get("/jobs").json()["total"]
    response = stack.client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert field in [item["loc"] for item in error["errors"]]
    assert ".".join(field[1:]) in error["detail"]
    assert stack.client.get("/jobs").json()["total"] == before  # nothing stored or queued


def test_unknown_kind_lists_the_kinds_there_are(client):
    response = client.post("/jobs", json={"kind": "resnet", "params": {}})
    assert "Expected one of: backprop" in response.json()["detail"]


def test_malformed_json_is_a_clear_422(client):
    response = client.post(
        "/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_kinds_endpoint_documents_parameters_and_defaults(client):
    kinds = {kind["name"]: kind for kind in client.get("/jobs/kinds").json()}
    properties = kinds["backprop"]["params_schema"]["properties"]
    assert properties["steps"]["default"] == BackpropParams().steps
    assert set(properties) == set(BackpropParams.model_fields)


def test_unknown_job_is_404(client):
    for response in (client.get("/jobs/nope"), client.post("/jobs/nope/cancel")):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert "nope" in response.json()["detail"]


def test_unknown_route_uses_the_same_error_shape(client):
    response = client.get("/no-such-thing")
    assert response.status_code == 404
    assert set(response.json()) == {"code", "detail"}


def test_listing_is_newest_first_filtered_and_paginated(stack):
    ids = [stack.submit(steps=1, x=float(i))["id"] for i in range(3)]
    for job_id in ids:
        stack.wait_until_finished(job_id)
    failed = stack.submit(activation="identity", learning_rate=100, steps=50)
    stack.wait_until_finished(failed["id"])

    page = stack.client.get("/jobs", params={"limit": 2}).json()
    assert [job["id"] for job in page["items"]] == [failed["id"], ids[2]]
    assert page["limit"] == 2 and page["offset"] == 0
    total = page["total"]

    next_page = stack.client.get("/jobs", params={"limit": 2, "offset": 2}).json()
    assert [job["id"] for job in next_page["items"]] == [ids[1], ids[0]]
    assert next_page["total"] == total

    only_failed = stack.client.get("/jobs", params={"status": "failed", "kind": "backprop"})
    failed_ids = [job["id"] for job in only_failed.json()["items"]]
    assert failed_ids[0] == failed["id"]
    assert all(job["status"] == "failed" for job in only_failed.json()["items"])
    succeeded = stack.client.get("/jobs", params={"status": "succeeded", "limit": 100}).json()
    assert set(ids) <= {job["id"] for job in succeeded["items"]}
    assert failed["id"] not in {job["id"] for job in succeeded["items"]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"kind": "resnet"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"offset": -1}, "offset"),
    ],
)
def test_bad_list_filters_are_422(client, params, field):
    response = client.get("/jobs", params=params)
    assert response.status_code == 422
    assert ["query", field] in [item["loc"] for item in response.json()["errors"]]


def test_a_failing_job_reports_why(stack):
    job = stack.submit(activation="identity", learning_rate=100, steps=50)
    finished = stack.wait_until_finished(job["id"])
    assert finished["status"] == "failed"
    assert "diverged" in finished["error"]
    assert finished["result"] is None


def test_cancel_queued_job_never_runs_and_running_job_stops(stack):
    running = stack.submit(**LONG_RUN)
    stack.wait_until_running(running["id"])
    queued = stack.submit(steps=1)

    response = stack.client.post(f"/jobs/{queued['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    response = stack.client.post(f"/jobs/{running['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    stopped = stack.wait_until_finished(running["id"], timeout=30)
    assert stopped["status"] == "cancelled"
    assert stopped["progress"]["step"] < MAX_BACKPROP_STEPS
    assert stopped["result"] is None

    # The worker takes jobs in order: once a later job has finished, the cancelled one was seen.
    later = stack.submit(steps=1)
    assert stack.wait_until_finished(later["id"])["status"] == "succeeded"
    never_ran = stack.job(queued["id"])
    assert never_ran["status"] == "cancelled"
    assert never_ran["started_at"] is None and never_ran["worker"] is None


def test_cancelling_a_finished_job_is_409_and_changes_nothing(stack):
    job = stack.wait_until_finished(stack.submit(steps=1)["id"])
    response = stack.client.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 409
    assert "already succeeded" in response.json()["detail"]
    assert stack.job(job["id"]) == job


def test_progress_is_visible_while_a_job_runs(stack):
    job = stack.submit(**LONG_RUN)
    first = stack.wait_until_running(job["id"])["progress"]["step"]
    later = stack.wait_for_job(
        job["id"], lambda j: (j["progress"] or {}).get("step", 0) > first, what="to progress"
    )
    assert later["progress"]["steps"] == MAX_BACKPROP_STEPS
    stack.client.post(f"/jobs/{job['id']}/cancel")
    stack.wait_until_finished(job["id"])


def test_job_whose_worker_process_dies_is_failed_and_the_worker_recovers(stack):
    job = stack.submit(**LONG_RUN)
    running = stack.wait_until_running(job["id"])
    child_pid = running["worker"]["pid"]
    assert child_pid != stack.worker_record()["pid"], "the job must run in a pool child"

    os.kill(child_pid, signal.SIGKILL)
    failed = stack.wait_until_finished(job["id"], timeout=30)
    assert failed["status"] == "failed"
    assert "stopped responding" in failed["error"]

    # The worker replaces its dead child and keeps serving.
    after = stack.submit(steps=1)
    assert stack.wait_until_finished(after["id"])["status"] == "succeeded"


def test_each_job_runs_in_a_fresh_child_process(stack):
    first = stack.wait_until_finished(stack.submit(steps=1)["id"])
    second = stack.wait_until_finished(stack.submit(steps=1)["id"])
    assert first["worker"]["pid"] != second["worker"]["pid"]


def test_health_reports_redis_and_live_workers(stack):
    response = stack.client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["redis"]["reachable"] is True
    assert health["workers"]["live"] >= 1
    worker = stack.worker_record(health)
    assert worker["queues"] == ["gpu"]
    wait_for(lambda: stack.worker_record()["gpus"] is not None, 60, "the GPU probe to answer")
    assert isinstance(stack.worker_record()["gpus"], list)
    assert worker["tensorflow_in_parent"] is False


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(client):
    from tests.conftest import JSON_LIMIT_BYTES, REQUEST_LIMIT_BYTES

    padding = "x" * (JSON_LIMIT_BYTES + 1)
    response = client.post("/jobs", json={"kind": "backprop", "params": {}, "pad": padding})
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "request_too_large"
    assert "MAX_JSON_BYTES" in response.json()["detail"]
    upload = client.post("/predict/digit", files={"file": ("a.png", b"0" * REQUEST_LIMIT_BYTES)})
    assert upload.status_code == 413, upload.text
    assert "MAX_REQUEST_BYTES" in upload.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(JSON_LIMIT_BYTES // 1_000_000 + 2):
            yield b" " * 1_000_000

    streamed = client.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["code"] == "request_too_large"
    assert client.get("/jobs", params={"limit": 1}).status_code == 200  # still serving


def test_a_retried_submission_with_the_same_idempotency_key_creates_one_job(stack):
    key = {"Idempotency-Key": f"retry-{os.getpid()}-{datetime.now().timestamp()}"}
    body = {"kind": "backprop", "params": {"steps": 1}}
    first = stack.client.post("/jobs", json=body, headers=key)
    again = stack.client.post("/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert stack.wait_until_finished(first.json()["id"])["status"] == "succeeded"

    other = stack.client.post("/jobs", json={**body, "params": {"steps": 2}}, headers=key)
    assert other.status_code == 409
    assert (
        "Idempotency-Key" in other.json()["detail"] and first.json()["id"] in other.json()["detail"]
    )
    too_long = stack.client.post("/jobs", json=body, headers={"Idempotency-Key": "x" * 256})
    assert too_long.status_code == 422

    # Its job deleted, the key creates a new one.
    assert stack.client.delete(f"/jobs/{first.json()['id']}").status_code == 204
    anew = stack.client.post("/jobs", json=body, headers=key)
    assert anew.status_code == 202 and anew.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in anew.headers


class RecordingCelery:
    """Takes messages without a broker."""

    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    def send_task(self, name: str, args: list[str], queue: str) -> None:
        self.sent.append(args)


def test_a_retry_is_answered_from_its_key_before_validation_and_by_what_the_client_sent(
    monkeypatch, store_redis
):
    store, celery = JobStore(store_redis, 10), RecordingCelery()
    first = JobSubmission(kind="backprop", params={"steps": 1})
    job, created = submit_job_once(store, celery, "q", first, idempotency_key="k1")
    assert created and job.params["steps"] == 1 and len(celery.sent) == 1

    # After a deploy that changed a default, or with its referenced model deleted since,
    # validation would now differ or refuse: the retry never gets there.
    def refuse(*_args, **_kwargs):
        raise InvalidJobError("would be refused now", [])

    monkeypatch.setattr(queue_module, "validate_params", refuse)
    retry = JobSubmission(kind="backprop", params={"steps": 1})
    again, created = submit_job_once(store, celery, "q", retry, idempotency_key="k1")
    assert not created and again.id == job.id and len(celery.sent) == 1

    # What the client sent decides, not the params the server filled in: another body is
    # a conflict even though its validated params would be the same.
    explicit = JobSubmission(kind="backprop", params={"steps": 1, **_defaults_but_steps()})
    with pytest.raises(ConflictError, match="Idempotency-Key"):
        submit_job_once(store, celery, "q", explicit, idempotency_key="k1")


def _defaults_but_steps() -> dict:
    defaults = BackpropParams().model_dump(mode="json")
    defaults.pop("steps")
    return defaults
