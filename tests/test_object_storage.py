"""Artifacts on an object store: ARTIFACTS_DIR=s3://bucket/prefix through the S3 API.

moto's server mode stands in for S3 here (a real HTTP server speaking the S3 API on this
machine); the service reaches it as it would AWS, through the usual AWS_* variables.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from redis import Redis

from service.artifacts import (
    CACHED_MARKER,
    RECENT_USE_SECONDS,
    UPLOAD_ATTEMPTS,
    ArtifactStore,
    ArtifactStoreUnavailable,
)
from service.errors import ServiceError
from service.jobs import tensorboard
from service.jobs.kinds import JOB_KINDS
from service.jobs.schemas import JobRecord
from service.models.store import ModelStore
from service.settings import Settings, artifact_store
from service.worker.runner import _arguments
from tests.conftest import OBJECT_STORE_DB
from tests.photo_like import encode
from tests.stack import ManagedProcess, ServiceStack, free_port, wait_for

BUCKET = "digit-artifacts"
TINY_MLP = {"hidden_units": [8], "epochs": 1, "train_limit": 300, "test_limit": 100, "seed": 0}


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 API server (moto) with one bucket; the environment that points clients at it."""
    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server = ManagedProcess(
        "moto",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        {**os.environ, **env},
        tmp_path_factory.mktemp("moto"),
    )
    server.start()
    try:
        wait_for(lambda: _answers(env["AWS_ENDPOINT_URL"]), 30, "moto's S3 server to answer")
        s3(env).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.TransportError:
        return False


def s3(env: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


def stored_keys(env: dict[str, str], prefix: str) -> dict[str, int]:
    """Every object under `prefix` in the bucket and its size."""
    listing = s3(env).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"]: item["Size"] for item in listing.get("Contents", [])}


@pytest.fixture
def store(s3_env, tmp_path, monkeypatch) -> ArtifactStore:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    prefix = f"s3://{BUCKET}/{tmp_path.name}"
    return ArtifactStore(prefix, tmp_path / "local", cache_bytes=2_000)


def put_model(env: dict[str, str], store: ArtifactStore, model_id: str, size: int) -> str:
    key = f"models/{model_id}/model.keras"
    s3(env).put_object(Bucket=BUCKET, Key=f"{store.url.split('/', 3)[3]}/{key}", Body=b"m" * size)
    return key


def test_a_file_is_downloaded_once_then_read_from_the_local_copy(s3_env, store):
    key = put_model(s3_env, store, "a" * 32, 100)
    path = store.fetch_file(key)
    assert path == store.local_path(key) and path.read_bytes() == b"m" * 100
    assert (path.parent / CACHED_MARKER).is_file()
    assert [p.name for p in path.parent.iterdir() if ".partial" in p.name] == []
    s3(s3_env).delete_object(Bucket=BUCKET, Key=f"{store.url.split('/', 3)[3]}/{key}")
    assert store.fetch_file(key) == path  # no second download: a model's files never change
    assert store.fetch_file(f"models/{'b' * 32}/model.keras") is None  # none stored


def used_ago(store: ArtifactStore, key: str, seconds: float) -> None:
    """Date the last use of `key`'s folder `seconds` back."""
    then = time.time() - seconds
    os.utime(store.local_path(key).parent / CACHED_MARKER, (then, then))


def test_the_local_copies_stay_within_their_bound_least_recently_used_first(s3_env, store):
    first, second, third = (put_model(s3_env, store, c * 32, 900) for c in "abc")
    staged = store.local_path(f"models/{'d' * 32}")  # a worker's model not yet uploaded
    staged.mkdir(parents=True)
    (staged / "model.keras").write_bytes(b"x" * 5_000)
    store.fetch_file(first)
    store.fetch_file(second)
    used_ago(store, first, 2 * RECENT_USE_SECONDS)
    used_ago(store, second, 3 * RECENT_USE_SECONDS)  # the least recently used
    store.fetch_file(third)  # 2,700 bytes cached, over the 2,000 bound
    assert store.local_path(first).is_file() and store.local_path(third).is_file()
    assert not store.local_path(second).exists()
    assert (staged / "model.keras").is_file()  # never evicted: not a copy of the store's
    # Used within RECENT_USE_SECONDS (another process may be loading it): kept, over the bound.
    store.fetch_file(first)
    assert store.fetch_file(second).read_bytes() == b"m" * 900  # downloaded again
    assert all(store.local_path(key).is_file() for key in (first, second, third))
    # A worker's upload is a cached copy too: it keeps the cache within its bound.
    for key in (first, second, third):
        used_ago(store, key, 2 * RECENT_USE_SECONDS)
    uploaded = f"models/{'e' * 32}"
    store.local_path(uploaded).mkdir(parents=True)
    (store.local_path(uploaded) / "model.keras").write_bytes(b"u" * 900)
    store.upload(uploaded)
    store.mark_cached(uploaded)
    left = [key for key in (first, second, third) if store.local_path(key).is_file()]
    assert len(left) == 1 and (store.local_path(uploaded) / "model.keras").is_file()


def test_upload_and_remove_reach_the_store_and_the_local_folder(s3_env, store):
    folder = store.local_path("models/" + "e" * 32)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"keras")
    (folder / "model.h5").write_bytes(b"h5")
    store.upload("models/" + "e" * 32)
    prefix = f"{store.url.split('/', 3)[3]}/models/{'e' * 32}/"
    assert stored_keys(s3_env, prefix) == {prefix + "model.h5": 2, prefix + "model.keras": 5}
    assert store.files("models/" + "e" * 32) == [("model.h5", 2), ("model.keras", 5)]
    store.remove("models/" + "e" * 32)
    assert stored_keys(s3_env, prefix) == {} and not folder.exists()
    store.remove("models/" + "e" * 32)  # already gone: nothing to do


def test_a_store_that_cannot_be_written_says_where_and_what_to_check(s3_env, tmp_path, monkeypatch):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    missing = ArtifactStore("s3://no-such-bucket/models", tmp_path)
    with pytest.raises(ArtifactStoreUnavailable) as refused:
        missing.check_writable()
    assert refused.value.status_code == 503
    assert "s3://no-such-bucket/models" in refused.value.detail
    assert "ARTIFACTS_DIR" in refused.value.detail and "bucket exists" in refused.value.detail


def test_a_missing_bucket_or_an_unreachable_store_is_a_503_not_a_missing_file(
    s3_env, tmp_path, monkeypatch
):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    missing = ArtifactStore("s3://no-such-bucket/models", tmp_path)
    with pytest.raises(ArtifactStoreUnavailable, match="no-such-bucket"):
        missing.fetch_file(f"models/{'a' * 32}/model.keras")
    with pytest.raises(ArtifactStoreUnavailable, match="no-such-bucket"):
        missing.check_reachable()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    down = ArtifactStore(f"s3://{BUCKET}/models", tmp_path)
    with pytest.raises(ArtifactStoreUnavailable, match="EndpointConnectionError"):
        down.fetch_file(f"models/{'a' * 32}/model.keras")


def test_only_the_named_files_are_uploaded_and_a_missing_one_is_refused(s3_env, store):
    key = "models/" + "f" * 32
    folder = store.local_path(key)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"keras")
    (folder / "stray.tmp").write_bytes(b"stray")
    ticks = []
    store.upload(key, ["model.keras"], on_file=lambda: ticks.append(1))
    prefix = f"{store.url.split('/', 3)[3]}/{key}/"
    assert stored_keys(s3_env, prefix) == {prefix + "model.keras": 5} and ticks == [1]
    with pytest.raises(FileNotFoundError, match=r"model\.h5"):
        store.upload(key, ["model.keras", "model.h5"])
    with pytest.raises(FileNotFoundError):
        store.upload(key, ["../" + "f" * 32 + "/model.keras"])


def test_an_upload_the_store_refuses_is_tried_again_then_reported(store, monkeypatch):
    key = "models/" + "9" * 32
    store.local_path(key).mkdir(parents=True)
    (store.local_path(key) / "model.keras").write_bytes(b"keras")
    real_put, calls = store._fs.put_file, []

    def refused_twice(*args, **kwargs):  # the store's edge: a flaky connection
        calls.append(args)
        if len(calls) <= 2:
            raise ConnectionError("connection reset by peer")
        return real_put(*args, **kwargs)

    monkeypatch.setattr(store._fs, "put_file", refused_twice)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    ticks = []
    store.upload(key, ["model.keras"], on_file=lambda: ticks.append(1))
    assert len(calls) == UPLOAD_ATTEMPTS == len(ticks)
    assert store.files(key) == [("model.keras", 5)]
    calls.clear()

    def refused(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(store._fs, "put_file", refused)
    with pytest.raises(ArtifactStoreUnavailable, match=r"upload to.*connection reset"):
        store.upload(key, ["model.keras"])
    assert len(calls) == UPLOAD_ATTEMPTS


def test_object_names_that_leave_their_folder_are_never_listed(s3_env, store):
    prefix = store.url.split("/", 3)[3]
    for name in ("logs/events.1", "logs/../escape", "logs//double"):
        s3(s3_env).put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=b"x")
    assert store.files("logs") == [("events.1", 1)]
    with pytest.raises(ValueError, match="plain relative"):
        store.download_folder("logs", ["../escape"], store.local_root)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [("mlp", "running", 409), ("mlp", "queued", 409), ("mlp", "failed", 404),
     ("backprop", "succeeded", 404)],
)  # fmt: skip
def test_logs_not_in_the_store_say_when_they_will_be(store, kind, status, code):
    record = JobRecord(id="c" * 32, kind=kind, status=status, params={},
                       created_at=datetime.now(UTC))  # fmt: skip
    with pytest.raises(ServiceError) as refused:
        tensorboard.archive(store, record)
    assert refused.value.status_code == code
    if (kind, status) == ("mlp", "running"):
        assert "when it ends" in refused.value.detail and store.url in refused.value.detail


def test_logs_in_the_store_are_packed_as_uploaded(s3_env, store):
    key = tensorboard.logs_key("c" * 32)
    folder = store.local_path(key)
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "events.out.tfevents.1").write_bytes(b"e" * 300)
    store.upload(key)
    record = JobRecord(id="c" * 32, kind="mlp", status="succeeded", params={},
                       created_at=datetime.now(UTC))  # fmt: skip
    archive, size = tensorboard.archive(store, record)
    with archive, tarfile.open(fileobj=archive) as packed:
        members = {m.name: m.size for m in packed.getmembers() if m.isfile()}
    assert members == {f"{'c' * 32}/train/events.out.tfevents.1": 300} and size > 0


def test_a_job_writes_its_logs_where_the_api_reads_them(tmp_path):
    """With a folder ARTIFACTS_DIR and LOCAL_DIR elsewhere, the worker's TensorBoard folder is
    the one DELETE and GET /jobs/{id}/tensorboard use, in ARTIFACTS_DIR."""
    settings = Settings(_env_file=None, artifacts_dir=tmp_path / "shared",
                        local_dir=tmp_path / "own")  # fmt: skip
    models = ModelStore(Redis(), artifact_store(settings))  # no round trip is made
    record = JobRecord(id="d" * 32, kind="mlp", status="running", params={},
                       created_at=datetime.now(UTC))  # fmt: skip
    arguments, _ = _arguments(JOB_KINDS["mlp"], record, settings, models, None)
    assert arguments["tensorboard_dir"] == models.artifacts.local_path(
        tensorboard.logs_key(record.id))  # fmt: skip
    assert arguments["tensorboard_dir"].is_relative_to((tmp_path / "shared").resolve())


def test_a_folder_artifacts_dir_stays_the_store_whatever_local_dir_says(tmp_path):
    shared, own = tmp_path / "shared", tmp_path / "own"
    settings = Settings(_env_file=None, artifacts_dir=shared, local_dir=own)
    local = artifact_store(settings)
    assert not local.remote
    assert local.local_path("models/x") == (shared / "models" / "x").resolve()
    assert settings.local_artifacts_dir == own  # metrics, caches, Redis data


@pytest.fixture(scope="module")
def split_stack(s3_env, tmp_path_factory, mnist_path: Path) -> Iterator[ServiceStack]:
    """An API and a worker sharing only Redis and the object store: each its own local
    folder, as on two machines."""
    root = tmp_path_factory.mktemp("object-store")
    shared = {**s3_env, "ARTIFACTS_DIR": f"s3://{BUCKET}/deployment", "MNIST_PATH": str(mnist_path)}
    stack = ServiceStack(
        OBJECT_STORE_DB, root, **shared, LOCAL_DIR=str(root / "api-machine"),
        worker_settings={"LOCAL_DIR": str(root / "worker-machine")},
    )  # fmt: skip
    stack.start()
    yield stack
    stack.stop()


def test_a_model_trained_with_one_folder_is_served_by_an_api_with_another(
    split_stack, s3_env, test_digits
):
    stack, root = split_stack, split_stack.log_dir
    job = stack.wait_until_finished(stack.submit("mlp", **TINY_MLP)["id"], timeout=180)
    assert job["status"] == "succeeded", job["error"]
    model_id = job["result"]["model_id"]
    stored = stored_keys(s3_env, f"deployment/models/{model_id}/")
    assert set(stored) == {f"deployment/models/{model_id}/model.{f}" for f in ("keras", "h5")}
    # The worker's machine keeps a copy (a cache it may evict); its logs went to the store.
    worker_copy = root / "worker-machine" / "models" / model_id
    assert (worker_copy / CACHED_MARKER).is_file()
    assert not (root / "worker-machine" / "tensorboard" / job["id"]).exists()
    api_copy = root / "api-machine" / "models" / model_id
    assert not api_copy.exists()

    images = test_digits[0]
    files = [("file", (f"{i}.png", encode(image, "PNG"), "image/png")) for i, image in
             enumerate(images[:20])]  # fmt: skip
    answer = stack.client.post("/predict/digit", params={"model": model_id}, files=files)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert {p["model"]["id"] for p in predictions} == {model_id}
    keras_bytes = (
        s3(s3_env)
        .get_object(Bucket=BUCKET, Key=f"deployment/models/{model_id}/model.keras")["Body"]
        .read()
    )
    assert (api_copy / "model.keras").read_bytes() == keras_bytes  # downloaded, whole

    download = stack.client.get(f"/models/{model_id}/download", params={"format": "h5"})
    assert download.status_code == 200, download.text
    assert len(download.content) == stored[f"deployment/models/{model_id}/model.h5"]

    logs = stack.client.get(f"/jobs/{job['id']}/tensorboard")
    assert logs.status_code == 200, logs.text
    with tarfile.open(fileobj=io.BytesIO(logs.content)) as archive:
        packed = {member.name: member.size for member in archive.getmembers() if member.isfile()}
    uploaded = stored_keys(s3_env, f"deployment/tensorboard/{job['id']}/")
    assert packed == {
        key.removeprefix("deployment/tensorboard/"): size for key, size in uploaded.items()
    }
    assert any("events.out.tfevents" in name for name in packed)

    assert stack.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert stored_keys(s3_env, f"deployment/tensorboard/{job['id']}/") == {}
    assert stack.client.delete(f"/models/{model_id}").status_code == 204
    assert stored_keys(s3_env, f"deployment/models/{model_id}/") == {}
    assert not api_copy.exists()  # the deleting API's own copy goes too


def test_a_worker_that_cannot_write_the_store_fails_the_job_before_training(split_stack):
    stack = split_stack
    models_before = stack.client.get("/models").json()["total"]
    stack.worker.stop()
    stack.worker_env["ARTIFACTS_DIR"] = "s3://no-such-bucket/deployment"
    try:
        stack.start_worker()
        job = stack.wait_until_finished(stack.submit("mlp", **TINY_MLP)["id"], timeout=60)
    finally:
        stack.worker.stop()
        stack.worker_env["ARTIFACTS_DIR"] = stack.env["ARTIFACTS_DIR"]
        stack.start_worker()
    assert job["status"] == "failed" and job["progress"] is None  # no step trained
    assert "s3://no-such-bucket/deployment" in job["error"]
    assert job["result"] is None
    assert stack.client.get("/models").json()["total"] == models_before


def test_a_start_with_a_store_it_cannot_open_is_refused_saying_what_to_install(tmp_path):
    env = {**os.environ, "ARTIFACTS_DIR": "nosuchstore://bucket/prefix"}
    refused = subprocess.run(
        [sys.executable, "-c", "import service.worker.celery_app"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "ARTIFACTS_DIR=nosuchstore://bucket/prefix" in refused.stderr
    assert "pip install 'digit-service[s3]'" in refused.stderr
