"""Restarts and crashes of real processes: nothing stored is lost, no job stays running forever."""

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from service.jobs.store import JobStore
from service.jobs.task_names import RUN_JOB_TASK
from service.settings import Settings
from service.worker.celery_app import create_celery_app
from tests.conftest import FAULTS_DB
from tests.stack import HEARTBEAT_SECONDS, OwnRedis, ServiceStack, free_port, wait_for
from tests.test_jobs_api import LONG_RUN

pytestmark = pytest.mark.slow


@pytest.fixture
def own_stack(tmp_path):
    """A stack the test may break: its own API, worker and Redis DB."""
    stack = ServiceStack(FAULTS_DB, tmp_path).start()
    yield stack
    stack.stop()


def test_restarting_the_api_and_the_worker_loses_no_job(own_stack):
    finished = own_stack.wait_until_finished(own_stack.submit(steps=3)["id"])
    cancelled = own_stack.submit(**LONG_RUN)
    own_stack.wait_until_running(cancelled["id"])
    own_stack.client.post(f"/jobs/{cancelled['id']}/cancel")
    cancelled = own_stack.wait_until_finished(cancelled["id"])
    before = own_stack.client.get("/jobs", params={"limit": 100}).json()

    own_stack.api.stop()
    own_stack.start_api()
    assert own_stack.client.get("/jobs", params={"limit": 100}).json() == before

    own_stack.worker.stop()
    own_stack.start_worker()
    assert own_stack.job(finished["id"]) == finished
    assert own_stack.job(cancelled["id"]) == cancelled
    again = own_stack.submit(steps=1)
    assert own_stack.wait_until_finished(again["id"])["status"] == "succeeded"


def test_job_queued_while_no_worker_runs_starts_when_one_comes_up(own_stack):
    own_stack.worker.stop()
    job = own_stack.submit(steps=1)
    assert own_stack.job(job["id"])["status"] == "queued"
    own_stack.start_worker()
    assert own_stack.wait_until_finished(job["id"])["status"] == "succeeded"


def test_job_of_a_killed_worker_is_failed_not_left_running(own_stack):
    job = own_stack.submit(**LONG_RUN)
    own_stack.wait_until_running(job["id"])

    own_stack.worker.kill_group()  # the parent and the child running the job, as in a crash
    failed = own_stack.wait_until_finished(job["id"], timeout=30)
    assert failed["status"] == "failed"
    assert "stopped responding" in failed["error"]
    assert failed["finished_at"] is not None

    # The worker's liveness record expires, and /health says no worker is left.
    wait_for(
        lambda: own_stack.client.get("/health").json()["workers"]["live"] == 0,
        10,
        "the dead worker to drop out of /health",
    )
    assert own_stack.client.get("/health").json()["status"] == "degraded"


def test_redis_unreachable_gives_503_and_health_says_so(tmp_path):
    stack = ServiceStack(FAULTS_DB, tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    stack.api.start()
    try:
        wait_for(lambda: _answers(stack), 60, "the API to answer")
        health = stack.client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["redis"]["reachable"] is False
        assert health.json()["redis"]["error"]

        unknown = "0" * 32  # well formed, so that Redis is asked (a malformed id is a 404)
        for response in (
            stack.client.post("/jobs", json={"kind": "backprop", "params": {}}),
            stack.client.get("/jobs"),
            stack.client.get(f"/jobs/{unknown}"),
            stack.client.post(f"/jobs/{unknown}/cancel"),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "unavailable"
            assert "REDIS_URL" in response.json()["detail"]

        # Validation still comes first: a bad request is a 422 even while Redis is down.
        bad = stack.client.post("/jobs", json={"kind": "backprop", "params": {"steps": 0}})
        assert bad.status_code == 422
    finally:
        stack.client.close()
        stack.api.stop()


def _answers(stack: ServiceStack) -> bool:
    try:
        return stack.client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def test_a_job_of_a_kind_the_worker_does_not_know_fails_at_once_saying_so(own_stack):
    record = JobStore(own_stack.redis, 10).create("no_such_kind", {})
    celery = create_celery_app(Settings(redis_url=own_stack.redis_url))
    celery.send_task(RUN_JOB_TASK, args=[record.id], queue=Settings().job_queue)
    failed = own_stack.wait_until_finished(record.id, timeout=30)
    assert failed["status"] == "failed"
    assert "knows no job kind 'no_such_kind'" in failed["error"]
    assert own_stack.wait_until_finished(own_stack.submit(steps=1)["id"])["status"] == "succeeded"


# Many heartbeat TTLs (1.5 s in the tests) and several epochs; FAULT_REDIS_DOWN_SECONDS=30 for
# the 30 s (training then ends while Redis is down, and its outcome waits).
REDIS_DOWN_SECONDS = float(os.environ.get("FAULT_REDIS_DOWN_SECONDS", "8"))


def test_a_redis_restart_mid_training_loses_neither_the_job_nor_an_epoch(tmp_path, mnist_path):
    redis = OwnRedis(tmp_path).start()
    stack = ServiceStack(0, tmp_path, redis_base=redis.url, MNIST_PATH=str(mnist_path)).start()
    try:
        epochs = 16  # about 0.8 s each on 2 CPU cores: training outlasts the outage
        job = stack.submit("mlp", hidden_units=[32], epochs=epochs, train_limit=12000,
                           test_limit=200, batch_size=32, seed=0)  # fmt: skip
        # Stopped mid-epoch: the job's progress shows a batch inside an epoch, not its end.
        midway = stack.wait_for_job(job["id"], is_mid_epoch, 120, "to be in the middle of an epoch")
        redis.stop()
        time.sleep(REDIS_DOWN_SECONDS)
        redis.start()
        # Its heartbeat expired while Redis was down; its worker brings it back, and the job
        # is not failed as lost meanwhile.
        wait_for(lambda: stack.client.get("/health").json()["redis"]["reachable"], 30,
                 "the API to reach Redis again")  # fmt: skip
        time.sleep(3 * HEARTBEAT_SECONDS * 2)
        assert stack.job(job["id"])["status"] in {"running", "succeeded"}
        finished = stack.wait_until_finished(job["id"], timeout=120)
        assert finished["status"] == "succeeded", finished["error"]
        # Read at the first poll that saw it succeeded: its model is registered already.
        model = stack.client.get(f"/models/{finished['result']['model_id']}")
        assert model.status_code == 200 and model.json()["job_id"] == job["id"]
        history = stack.client.get(f"/jobs/{job['id']}/history").json()
        assert [entry["epoch"] for entry in history] == list(range(1, epochs + 1))
        assert midway["progress"]["epoch"] < epochs  # Redis stopped before the last epoch
    finally:
        if redis.process is None:
            redis.start()
        stack.stop()
        redis.stop()


def is_mid_epoch(job: dict) -> bool:
    progress = job["progress"] or {}
    return 0 < progress.get("batch", 0) < progress.get("batches", 0)


# The reconciler, quick for the tests: a pass every 0.5 s, a message missing for 1 s is lost.
RECONCILER = {"RECONCILE_SECONDS": "0.5", "QUEUED_GRACE_SECONDS": "1"}


@pytest.fixture
def reconciled_stack(tmp_path):
    stack = ServiceStack(FAULTS_DB, tmp_path, **RECONCILER).start()
    yield stack
    stack.stop()


def test_a_job_stored_but_never_sent_is_sent_again_by_the_reconciler(reconciled_stack):
    stack = reconciled_stack
    # As when the API dies between storing a job and sending its message.
    record = JobStore(stack.redis, 10).create("backprop", {"steps": 1})
    finished = stack.wait_until_finished(record.id, timeout=60)
    assert finished["status"] == "succeeded", finished["error"]
    # Sent again at least once (a slow worker may let a pass send it twice); it ran once.
    assert int(stack.redis.hget(f"job:{record.id}", "resends") or 0) >= 1
    assert times_started(stack, record.id) == 1


def test_jobs_waiting_behind_a_long_one_are_never_sent_again(reconciled_stack):
    stack = reconciled_stack
    long = stack.submit(**LONG_RUN)
    waiting = [stack.submit(steps=1) for _ in range(2)]
    stack.wait_until_running(long["id"])
    # The worker lists the jobs whose messages it holds: the reconciler leaves those alone.
    wait_for(lambda: long["id"] in stack.worker_record()["holding"], 30, "the worker to list it")
    time.sleep(3)  # several reconciler periods, each past the 1 s grace
    for job in [long, *waiting]:
        assert stack.wait_until_finished(job["id"])["status"] == "succeeded"
        assert stack.redis.hget(f"job:{job['id']}", "resends") is None, job["id"]


def test_a_job_whose_message_keeps_getting_lost_is_failed_saying_so(tmp_path):
    stack = ServiceStack(FAULTS_DB, tmp_path, MAX_RESENDS="0", **RECONCILER).start(worker=False)
    try:
        record = JobStore(stack.redis, 10).create("backprop", {"steps": 1})
        failed = stack.wait_until_finished(record.id, timeout=30)
        assert failed["status"] == "failed"
        assert "message was lost" in failed["error"] and "MAX_RESENDS" in failed["error"]
    finally:
        stack.stop()


def test_a_job_whose_worker_died_between_receiving_and_starting_it_runs_once_later(
    reconciled_stack,
):
    stack = reconciled_stack
    child = pool_child(stack.worker.pid)
    os.kill(child, signal.SIGSTOP)  # the parent hands it the job; it never starts it
    job = stack.submit(steps=1)
    wait_for(lambda: stack.redis.hlen("unacked") == 1, 10, "the worker to take the message")
    stack.worker.kill_group()
    time.sleep(2)  # past the grace: the reconciler sees the message held by a dead worker
    assert stack.job(job["id"])["status"] == "queued"

    stack.start_worker()
    finished = stack.wait_until_finished(job["id"], timeout=60)
    assert finished["status"] == "succeeded", finished["error"]
    assert int(stack.redis.hget(f"job:{job['id']}", "resends") or 0) >= 1
    assert times_started(stack, job["id"]) == 1
    # The dead worker's message was dropped; the new one's is acknowledged after its run.
    wait_for(lambda: stack.redis.hlen("unacked") == 0, 30, "every message to be acknowledged")


def times_started(stack: ServiceStack, job_id: str) -> int:
    """How many times a worker of the stack started the job, by the workers' logs."""
    return sum(
        log.read_text(errors="replace").count(f"Job {job_id} (")
        for log in stack.log_dir.glob("worker-*.log")
    )


def pool_child(parent: int) -> int:
    """The worker's pool child: a child of the worker's process with its command line."""

    def find() -> int | None:
        command = Path(f"/proc/{parent}/cmdline").read_bytes()
        for entry in Path("/proc").iterdir():
            try:
                if not entry.name.isdigit():
                    continue
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == parent and (entry / "cmdline").read_bytes() == command:
                    return int(entry.name)
            except (OSError, ValueError, IndexError):
                continue
        return None

    return wait_for(find, 20, f"a pool child of the worker {parent}")


def test_bootstrap_submits_a_default_model_whose_job_failed_again_a_bounded_number_of_times(
    tmp_path,
):
    stack = ServiceStack(
        FAULTS_DB, tmp_path, BOOTSTRAP_MODELS="true", BOOTSTRAP_ATTEMPTS="2", **RECONCILER
    ).start(worker=False)
    store = JobStore(stack.redis, 10)
    try:

        def cnn_jobs() -> list[dict]:
            return stack.client.get("/jobs", params={"kind": "cnn"}).json()["items"]

        first = wait_for(cnn_jobs, 30, "the bootstrap job")[0]
        store.mark_failed(first["id"], "out of memory")  # as its worker would
        again = wait_for(lambda: len(cnn_jobs()) == 2 and cnn_jobs(), 30, "a second job")[0]
        assert again["status"] == "queued" and again["params"] == first["params"]
        store.mark_failed(again["id"], "out of memory")
        time.sleep(2)  # four reconciler periods: no third attempt
        assert [job["status"] for job in cnn_jobs()] == ["failed", "failed"]
    finally:
        stack.stop()


# Only the stalled job's kind (backprop) has a tiny stall limit; the healthy job after it is of
# another kind, with its default limit (900 s), which no busy machine reaches while its child
# imports TensorFlow. The cancel test keeps every default stall limit.
STALL_SECONDS, CANCEL_GRACE_SECONDS = 2, 2
HEALTHY_RUN = {"hidden_units": [8], "epochs": 1, "train_limit": 1000, "test_limit": 100,
               "seed": 0}  # fmt: skip


@pytest.fixture
def stalling_stack(tmp_path, mnist_path):
    stack = ServiceStack(
        FAULTS_DB, tmp_path, JOB_STALL_SECONDS=json.dumps({"backprop": STALL_SECONDS}),
        MNIST_PATH=str(mnist_path),
    ).start()  # fmt: skip
    yield stack
    stack.stop()


def test_a_stopped_training_process_is_failed_as_stalled_and_the_next_job_runs(stalling_stack):
    stack = stalling_stack
    job = stack.submit(**LONG_RUN)
    seen = stack.wait_for_job(
        job["id"],
        lambda job: (
            (job["status"] == "running" and job["progress"] is not None)
            or job["status"] == "failed"
        ),
        60,
        "to run (or to have stalled already, on a busy machine)",
    )
    child = seen["worker"]["pid"]
    if seen["status"] == "running":
        os.kill(child, signal.SIGSTOP)  # as a deadlock or a hung GPU call: no progress, no exit
    failed = stack.wait_until_finished(job["id"], timeout=60)
    assert failed["status"] == "failed"
    assert "no progress for 2 s" in failed["error"] and "JOB_STALL_SECONDS" in failed["error"]
    wait_for(lambda: not _alive(child), 30, f"the stalled process {child} to be killed")
    after = stack.wait_until_finished(stack.submit("mlp", **HEALTHY_RUN)["id"], timeout=180)
    assert after["status"] == "succeeded", after["error"]


@pytest.fixture
def cancelling_stack(tmp_path):
    stack = ServiceStack(
        FAULTS_DB, tmp_path, CANCEL_GRACE_SECONDS=str(CANCEL_GRACE_SECONDS)
    ).start()
    yield stack
    stack.stop()


def test_cancelling_a_job_that_cannot_stop_kills_it_after_the_grace(cancelling_stack):
    stack = cancelling_stack
    job = stack.submit(**LONG_RUN)
    child = stack.wait_until_running(job["id"])["worker"]["pid"]
    os.kill(child, signal.SIGSTOP)
    assert stack.client.post(f"/jobs/{job['id']}/cancel").status_code == 202
    cancelled = stack.wait_until_finished(job["id"], timeout=60)
    assert cancelled["status"] == "cancelled"
    wait_for(lambda: not _alive(child), 30, f"the cancelled job's process {child} to be killed")
    after = stack.wait_until_finished(stack.submit(steps=1)["id"], timeout=60)
    assert after["status"] == "succeeded", after["error"]


def _alive(pid: int) -> bool:
    """Whether the process runs (a killed child its parent has not reaped yet does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_sweep_whose_queueing_fails_leaves_no_orphans_and_a_retry_gives_one_sweep(tmp_path):
    redis = OwnRedis(tmp_path).start()
    stack = ServiceStack(0, tmp_path, redis_base=redis.url, MAX_RESENDS="100", **RECONCILER)
    stack.start()
    try:
        # The broker refuses every message (LPUSH is how Celery queues one), records go in.
        stack.redis.execute_command("ACL", "SETUSER", "default", "-lpush")
        body = {"base": {"kind": "backprop", "params": {"steps": 1}},
                "grid": {"activation": ["relu", "tanh", "sigmoid"]}}  # fmt: skip
        key = {"Idempotency-Key": "sweep-1"}
        first = stack.client.post("/sweeps", json=body, headers=key)
        assert first.status_code == 202, first.text
        sweep = first.json()
        job_ids = {job["job_id"] for job in sweep["jobs"]}
        jobs = stack.client.get("/jobs", params={"limit": 100}).json()["items"]
        assert {job["id"] for job in jobs} == job_ids  # every job belongs to the sweep
        assert {job["status"] for job in jobs} == {"queued"}

        retry = stack.client.post("/sweeps", json=body, headers=key)
        assert retry.status_code == 202 and retry.json()["id"] == sweep["id"]
        assert stack.client.get("/sweeps").json()["total"] == 1
        assert stack.client.get("/jobs").json()["total"] == len(job_ids)

        stack.redis.execute_command("ACL", "SETUSER", "default", "+lpush")
        finished = wait_for(
            lambda: (s := stack.client.get(f"/sweeps/{sweep['id']}").json())["status"]
            == "finished" and s, 60, "the sweep's jobs, sent again, to finish",
        )  # fmt: skip
        assert {job["status"] for job in finished["jobs"]} == {"succeeded"}
    finally:
        stack.redis.execute_command("ACL", "SETUSER", "default", "+lpush")
        stack.stop()
        redis.stop()
