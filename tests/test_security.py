"""Secure and bounded by default, over HTTP: who may send what, how much one request may carry,
how many models stay loaded, and how stored models are deleted."""

from __future__ import annotations

import io
import json
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import keras
import numpy as np
import pytest
from PIL import Image
from redis import Redis

from service.api.exposure import trusted_hosts
from service.models.store import ModelStore
from service.settings import Settings
from tests.conftest import SECURITY_DB
from tests.photo_like import encode
from tests.stack import ServiceStack, assert_some_busy, wait_for


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory, mnist_path):
    """No token (loopback only), every model unloaded beyond the pinned ones, one slot for
    preparing large images."""
    stack = ServiceStack(
        SECURITY_DB, tmp_path_factory.mktemp("security"), MNIST_PATH=str(mnist_path),
        MODEL_CACHE_BYTES="0", PREPARE_SLOTS="1",
    )  # fmt: skip
    stack.start()
    stack.client.timeout = httpx.Timeout(60)  # the first prediction imports TensorFlow
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def mlps(open_stack) -> list[str]:
    """Three tiny (untrained) mlp models, stored as a job stores its model: these tests are
    about which models are loaded and who may reach them, not what they read."""
    from training.mlp import build_mlp

    store = ModelStore(open_stack.redis, open_stack.log_dir / "artifacts")
    ids = []
    for seed in range(3):
        keras.utils.set_random_seed(seed)
        model_id = uuid.uuid4().hex
        folder = store.model_dir(model_id)
        folder.mkdir(parents=True)
        build_mlp([16]).save(folder / "model.keras")
        store.register(model_id, "mlp", "test", {}, {}, {"keras": "model.keras"})
        ids.append(model_id)
    return ids


def digit_png(mnist_path, index: int = 0) -> bytes:
    with np.load(mnist_path) as data:
        return encode(data["x_test"][index], "PNG")


def test_only_loopback_host_names_are_answered_without_a_token(open_stack):
    rebound = open_stack.client.get("/models", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and rebound.json()["code"] == "bad_host"
    assert "ALLOWED_HOSTS" in rebound.json()["detail"]
    for host in ("localhost", "127.0.0.1", f"127.0.0.1:{open_stack.port}"):
        assert open_stack.client.get("/models", headers={"Host": host}).status_code == 200


def test_host_names_are_compared_without_case_and_loopback_stays_allowed():
    hosts = trusted_hosts(Settings(allowed_hosts=["Digits.Example.com"], api_token="t" * 16))
    assert "digits.example.com" in hosts and "127.0.0.1" in hosts  # the healthcheck's


def test_uppercase_loopback_names_are_answered(open_stack):
    assert open_stack.client.get("/models", headers={"Host": "LOCALHOST"}).status_code == 200


def test_the_own_page_behind_a_proxy_is_not_cross_site(open_stack):
    behind = open_stack.client.post(
        "/jobs",
        json={"kind": "backprop"},
        headers={"Origin": "https://digits.example.com",
                 "X-Forwarded-Host": "digits.example.com, inner.proxy"},
    )  # fmt: skip
    assert behind.status_code == 202, behind.text


def test_a_change_sent_by_a_browser_from_another_site_is_refused(open_stack):
    forged = open_stack.client.post(
        "/jobs", json={"kind": "backprop"}, headers={"Origin": "http://attacker.example"}
    )
    assert forged.status_code == 403 and "another site" in forged.json()["detail"]
    fetched = open_stack.client.post(
        "/jobs", json={"kind": "backprop"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert fetched.status_code == 403
    own_page = open_stack.client.post(
        "/jobs", json={"kind": "backprop"}, headers={"Origin": open_stack.base_url}
    )
    assert own_page.status_code == 202
    reads = open_stack.client.get("/models", headers={"Origin": "http://attacker.example"})
    assert reads.status_code == 200  # reading is not changing


def test_every_answer_carries_a_request_id(open_stack):
    given = open_stack.client.get("/health", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = open_stack.client.get("/nowhere", headers={"X-Request-ID": "bad id\twith tab"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


def test_an_unexpected_error_answers_in_the_api_shape_with_its_request_id(open_stack):
    model_id = "f" * 32
    open_stack.redis.hset(f"model:{model_id}", mapping={
        "id": model_id, "kind": "mlp", "job_id": "x", "params": "{not json", "metrics": "{}",
        "files": "{}", "created_at": "0"})  # fmt: skip
    broken = open_stack.client.get(f"/models/{model_id}", headers={"X-Request-ID": "r-1"})
    open_stack.redis.delete(f"model:{model_id}")
    assert broken.status_code == 500
    assert broken.json()["code"] == "internal_error" and "r-1" in broken.json()["detail"]
    assert broken.headers["x-request-id"] == "r-1"
    assert "r-1" in open_stack.api.log_tail(20000)


def test_stored_file_names_cannot_leave_the_model_folder(open_stack):
    model_id = "e" * 32
    open_stack.redis.hset(f"model:{model_id}", mapping={
        "id": model_id, "kind": "mlp", "job_id": "x", "params": "{}", "metrics": "{}",
        "files": json.dumps({"keras": "../../../../etc/passwd"}), "created_at": "0"})  # fmt: skip
    try:
        download = open_stack.client.get(f"/models/{model_id}/download")
    finally:
        open_stack.redis.delete(f"model:{model_id}")
    assert download.status_code == 404 and b"root:" not in download.content


def test_an_alias_with_a_trailing_newline_is_refused(open_stack, mlps):
    moved = open_stack.client.put(f"/models/{mlps[0]}/aliases/prod%0A")
    assert moved.status_code == 422 and moved.json()["code"] == "invalid_alias"


def test_health_reads_no_keyspace_scan(open_stack):
    for index in range(200):
        open_stack.redis.set(f"filler:{index}", 1)
    redis = open_stack.redis

    def scans() -> int:
        stats = redis.info("commandstats").get("cmdstat_scan", {})
        return stats.get("calls", 0)

    before = scans()
    for _ in range(5):
        assert open_stack.client.get("/health").json()["workers"]["live"] == 1
    assert scans() == before
    redis.delete(*[f"filler:{index}" for index in range(200)])


def test_a_request_with_more_images_than_allowed_is_refused_before_decoding(
    open_stack, mlps, mnist_path
):
    png = digit_png(mnist_path)
    files = [("file", (f"{i}.png", png, "image/png")) for i in range(65)]
    refused = open_stack.client.post(f"/predict/digit?model={mlps[0]}", files=files)
    assert refused.status_code == 413 and refused.json()["code"] == "too_many_images"
    assert "65" in refused.json()["detail"] and "MAX_IMAGES_PER_REQUEST" in refused.json()["detail"]
    allowed = open_stack.client.post(f"/predict/digit?model={mlps[0]}", files=files[:64])
    assert allowed.status_code == 200 and len(allowed.json()["predictions"]) == 64
    thousand = [("file", (f"{i}.png", png, "image/png")) for i in range(1000)]
    cut_short = open_stack.client.post(f"/predict/digit?model={mlps[0]}", files=thousand)
    assert cut_short.status_code == 413 and cut_short.json()["code"] == "too_many_images"
    assert "MAX_IMAGES_PER_REQUEST" in cut_short.json()["detail"]
    # The boundary as Starlette's parser reads it: the first Content-Type, its last boundary.
    body = (
        b"".join(
            b'--abc\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n"
            for _ in range(200)
        )
        + b"--abc--\r\n"
    )
    for content_type in ("multipart/form-data; boundary=zzz; boundary=abc",
                         "multipart/form-data; boundary =abc"):  # fmt: skip
        tricked = open_stack.client.post(f"/predict/digit?model={mlps[0]}", content=body,
                                         headers={"Content-Type": content_type})  # fmt: skip
        assert tricked.status_code == 413, (content_type, tricked.text)
        assert tricked.json()["code"] == "too_many_images"
    instances = {"instances": [np.zeros((28, 28)).tolist()] * 65}
    served = open_stack.client.post(f"/v1/models/{mlps[0]}:predict", json=instances)
    assert served.status_code == 413 and served.json()["code"] == "too_many_images"


def test_numbers_too_large_for_an_array_are_refused_clearly(open_stack, mlps):
    huge = {"instances": [[[10**400] * 28] * 28]}
    answer = open_stack.client.post(f"/v1/models/{mlps[0]}:predict", json=huge)
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_instance"


def test_tiny_files_of_huge_images_are_refused_by_the_pixel_budget(open_stack, mlps):
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")  # 64 Mpx in a few kB
    bomb = buffer.getvalue()
    assert len(bomb) < 20_000
    files = [("file", (f"{i}.png", bomb, "image/png")) for i in range(40)]
    refused = open_stack.client.post(f"/predict/digit?model={mlps[0]}", files=files)
    assert refused.status_code == 413 and refused.json()["code"] == "too_many_images"
    assert "MAX_REQUEST_PIXELS" in refused.json()["detail"]


def test_large_uploads_beyond_the_preparation_slots_answer_503_with_retry_after(
    open_stack, mlps, mnist_path
):
    with np.load(mnist_path) as data:
        digit = data["x_test"][0]
    page = cv2.resize(255 - digit, (3000, 3000), interpolation=cv2.INTER_CUBIC)
    upload = encode(page, "PNG")  # a large PNG: prepared in the thread pool, a slot each
    start = threading.Barrier(8)

    def post(_: int):
        start.wait()
        return open_stack.client.post(
            f"/predict/digit?model={mlps[0]}", files={"file": ("page.png", upload, "image/png")},
            timeout=60,
        )  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert_some_busy(answers, "PREPARE_SLOTS")


def models_loaded(stack: ServiceStack) -> float:
    text = stack.client.get("/metrics").text
    return float(re.search(r"^digit_service_models_loaded (\S+)$", text, re.MULTILINE)[1])


def test_models_beyond_the_cache_budget_are_unloaded_but_aliased_ones_stay(
    open_stack, mlps, mnist_path
):
    png = {"file": ("digit.png", digit_png(mnist_path, 7), "image/png")}

    def predict(model_id: str) -> list[float]:
        answer = open_stack.client.post(f"/predict/digit?model={model_id}", files=png)
        assert answer.status_code == 200, answer.text
        return answer.json()["probabilities"]

    first = predict(mlps[0])
    predict(mlps[1])
    assert models_loaded(open_stack) == 1  # MODEL_CACHE_BYTES=0: the last one only
    assert predict(mlps[0]) == first  # loaded again, the same answer
    assert open_stack.client.put(f"/models/{mlps[1]}/aliases/kept").status_code == 200
    predict(mlps[1])
    predict(mlps[2])
    assert models_loaded(open_stack) == 2  # the aliased model stays
    assert open_stack.client.delete("/models/aliases/kept").status_code == 200


def test_a_deleted_model_is_gone_everywhere(open_stack, mlps, mnist_path):
    doomed = mlps[2]
    assert open_stack.client.put(f"/models/{doomed}/aliases/doomed").status_code == 200
    named = open_stack.client.delete(f"/models/{doomed}")
    assert named.status_code == 409 and "doomed" in named.json()["detail"]
    assert open_stack.client.get(f"/models/{doomed}").status_code == 200
    assert open_stack.client.delete("/models/aliases/doomed").status_code == 200
    png = {"file": ("digit.png", digit_png(mnist_path), "image/png")}
    assert open_stack.client.post(f"/predict/digit?model={doomed}", files=png).status_code == 200
    record = open_stack.client.get(f"/models/{doomed}").json()
    assert open_stack.client.delete(f"/models/{doomed}").status_code == 204
    assert open_stack.client.get(f"/models/{doomed}").status_code == 404
    gone = open_stack.client.post(f"/predict/digit?model={doomed}", files=png)
    assert gone.status_code == 404
    artifacts = open_stack.log_dir / "artifacts" / "models"
    assert not (artifacts / doomed).exists() and record["files"]
    assert open_stack.client.delete(f"/models/{doomed}").status_code == 404
    assert open_stack.client.delete("/models/not-an-id").status_code == 404


def test_a_model_deleted_by_another_process_is_unloaded_here(open_stack, mlps, mnist_path):
    png = {"file": ("digit.png", digit_png(mnist_path), "image/png")}
    target = mlps[1]
    assert open_stack.client.post(f"/predict/digit?model={target}", files=png).status_code == 200
    assert models_loaded(open_stack) >= 1
    loaded = models_loaded(open_stack)
    redis = Redis.from_url(open_stack.redis_url, decode_responses=True)
    ModelStore(redis, open_stack.log_dir / "artifacts").delete(target)  # as another API would
    wait_for(lambda: models_loaded(open_stack) == loaded - 1, 10, "the model to be unloaded")
    redis.close()
