"""Serving: aliases, sums of 10 digits (files or one row), TF Serving's REST API, metrics,
micro-batching under concurrent load, and the default models a fresh start trains."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAULTS_DB
from tests.photo_like import encode, photo_of_digit, photo_of_row, row_of_digits
from tests.stack import ManagedProcess, ServiceStack, free_port, wait_for
from training.data.prepared import prepare_images
from training.data.sequences import DOUBTFUL_BELOW

SEQUENCE = 10


@pytest.fixture(scope="module")
def second_digit_model(stack, mnist_path):
    """An MLP, so that aliases have two digit models to point at."""
    job = stack.submit("mlp", hidden_units=[64], epochs=1, train_limit=3000, test_limit=500)
    finished = stack.wait_until_finished(job["id"], timeout=120)
    assert finished["status"] == "succeeded", finished["error"]
    return stack.client.get(f"/models/{finished['result']['model_id']}").json()


def post_digits(stack, images, **params):
    parts = [("file", (f"{i}.png", encode(image, "PNG"), "image/png")) for i, image in
             enumerate(images)]  # fmt: skip
    response = stack.client.post("/predict/digit", files=parts, params=params, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    return body.get("predictions", [body])


def post_sum(stack, images=None, row=None, **params):
    if row is not None:
        parts = [("file", ("row.jpg", row, "image/jpeg"))]
    else:
        parts = [("files", (f"{i}.png", encode(im, "PNG"), "image/png")) for i, im in
                 enumerate(images)]  # fmt: skip
    return stack.client.post("/predict/sum", files=parts, params=params, timeout=60)


# Aliases


def test_an_alias_names_a_model_and_moving_it_takes_effect_at_once(
    stack, digit_model, second_digit_model, test_digits
):
    images = test_digits[0][:2]
    first, second = digit_model["id"], second_digit_model["id"]
    put = stack.client.put(f"/models/{first}/aliases/production")
    assert put.status_code == 200, put.text
    assert post_digits(stack, images, model="production")[0]["model"]["id"] == first

    listing = stack.client.get("/models").json()
    assert listing["aliases"]["production"] == first
    assert next(m for m in listing["items"] if m["id"] == first)["aliases"] == ["production"]
    assert stack.client.get("/models/production").json()["id"] == first

    moved = stack.client.put(f"/models/{second}/aliases/production").json()
    assert moved == {"alias": "production", "model_id": second, "previous_model_id": first}
    assert post_digits(stack, images, model="production")[0]["model"]["id"] == second
    # An alias may name the model to alias: promote what "staging" names to "canary".
    stack.client.put(f"/models/{first}/aliases/staging")
    assert stack.client.put("/models/staging/aliases/canary").json()["model_id"] == first

    for alias in ("production", "staging", "canary"):
        assert stack.client.delete(f"/models/aliases/{alias}").status_code == 200
    gone = stack.client.post("/predict/digit", params={"model": "production"},
                             files=[("file", ("a.png", encode(images[0], "PNG")))])  # fmt: skip
    assert gone.status_code == 404
    assert "production" in gone.json()["detail"]
    assert stack.client.delete("/models/aliases/production").status_code == 404


@pytest.mark.parametrize(
    ("alias", "words"),
    [("Production", "lowercase"), ("a" * 32, "model id"), ("cnn", "job kind"), ("-x", "letter")],
)
def test_bad_aliases_are_refused(stack, digit_model, alias, words):
    response = stack.client.put(f"/models/{digit_model['id']}/aliases/{alias}")
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_a_default_reference_resolves_within_the_endpoints_kinds(
    stack, digit_model, second_digit_model, test_digits
):
    """TF Serving's `mlp` (newest mlp) and /predict/digit's default (newest cnn) are distinct
    answers; asking for one first must not make the other answer with it (a shared cache key
    once did)."""
    newest = {
        kind: stack.client.get("/models", params={"kind": kind, "limit": 1}).json()["items"][0]
        for kind in ("cnn", "mlp")
    }
    image = test_digits[0][:1].astype(float).tolist()
    for _ in range(2):  # the second round answers from the resolver's cache
        by_kind = stack.client.post("/v1/models/mlp:predict", json={"instances": image})
        assert by_kind.json()["model"] == {"id": newest["mlp"]["id"], "kind": "mlp"}
        default = post_digits(stack, test_digits[0][:1])[0]
        assert default["model"] == {"id": newest["cnn"]["id"], "kind": "cnn"}
        cnn = stack.client.post("/v1/models/cnn:predict", json={"instances": image})
        assert cnn.json()["model"] == {"id": newest["cnn"]["id"], "kind": "cnn"}


def test_an_alias_for_an_unknown_model_is_404(stack):
    assert stack.client.put(f"/models/{'0' * 32}/aliases/x").status_code == 404


# Sums


def test_a_sum_of_10_files_with_the_digit_model_reads_each_digit(stack, digit_model, test_digits):
    images, _ = test_digits
    sequence = images[:SEQUENCE]
    response = post_sum(stack, sequence, method="digit-model", model=digit_model["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    one_by_one = [p["digit"] for p in post_digits(stack, sequence, model=digit_model["id"])]
    assert body["digits"] == one_by_one
    assert body["cumulative"] == np.cumsum(one_by_one).tolist()
    assert body["sum"] == sum(one_by_one)
    assert body["model"] == {"id": digit_model["id"], "kind": "cnn"}
    assert body["method"] == "digit-model"


def test_the_calculator_reads_as_its_digit_model_and_never_contradicts_itself(
    stack, calculator_model, digit_model, test_digits
):
    images, _ = test_digits
    for start in range(0, 50, SEQUENCE):
        sequence = images[start : start + SEQUENCE]
        response = post_sum(stack, sequence, model=calculator_model["id"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["method"] == "calculator"
        assert body["model"] == {"id": calculator_model["id"], "kind": "calculator"}
        assert body["sum"] == sum(body["digits"])
        assert body["cumulative"] == np.cumsum(body["digits"]).tolist()
        assert body["uncertain"] == (min(body["confidences"]) < DOUBTFUL_BELOW)
        # It started from the session's digit model and kept it: the same readings.
        one_by_one = post_digits(stack, sequence, model=digit_model["id"])
        assert body["digits"] == [p["digit"] for p in one_by_one]
        np.testing.assert_allclose(
            body["confidences"], [p["confidence"] for p in one_by_one], atol=1e-5
        )
        # Its own sum output: exact arithmetic on the same probabilities.
        assert body["raw_sum"] == pytest.approx(
            sum(np.dot(p["probabilities"], np.arange(10)) for p in one_by_one), abs=1e-3
        )


def test_by_default_a_sum_is_read_by_the_more_accurate_default_model(
    stack, calculator_model, digit_model, test_digits
):
    """The session's calculator reads with the session's digit model, but the newest cnn
    may be another one (other tests train cnns): whichever the jobs measured as more exact
    answers, provided they measured it on as many test sequences."""
    newest = {
        kind: stack.client.get("/models", params={"kind": kind, "limit": 1}).json()["items"][0]
        for kind in ("cnn", "calculator")
    }
    metrics = {kind: record["metrics"] for kind, record in newest.items()}
    comparable = metrics["cnn"]["test_sequences"] == metrics["calculator"]["test_sequences"]
    calculator_wins = (
        metrics["calculator"]["test_exact_sum_accuracy"]
        >= (metrics["cnn"]["test_exact_sum_accuracy"])
    )
    expected = "calculator" if comparable and calculator_wins else "digit-model"
    body = post_sum(stack, test_digits[0][:SEQUENCE]).json()
    assert body["method"] == expected
    assert body["model"]["id"] == newest["calculator" if expected == "calculator" else "cnn"]["id"]
    # A model named by the client chooses the method.
    by_digit_model = post_sum(stack, test_digits[0][:SEQUENCE], model=digit_model["id"]).json()
    assert by_digit_model["method"] == "digit-model"
    by_calculator = post_sum(stack, test_digits[0][:SEQUENCE], model=calculator_model["id"])
    assert by_calculator.json()["method"] == "calculator"


def test_a_row_of_10_digits_is_split_left_to_right_and_summed(stack, digit_model, test_digits):
    images, labels = test_digits
    rng = np.random.default_rng(3)
    hits, clean_hits = [], []
    for start in range(0, 60, SEQUENCE):
        digits, truth = images[start : start + SEQUENCE], labels[start : start + SEQUENCE]
        row = encode(photo_of_row(digits, rng, invert=start == 30), "JPEG", 85)
        response = post_sum(stack, row=row, method="digit-model", model=digit_model["id"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["sum"] == sum(body["digits"])
        assert body["cumulative"] == np.cumsum(body["digits"]).tolist()
        hits.extend(np.array(body["digits"]) == truth)
        clean = [p["digit"] for p in post_digits(stack, digits, model=digit_model["id"])]
        clean_hits.extend(np.array(clean) == truth)
    # In order: position by position, about as right as the clean digits one by one.
    assert np.mean(hits) >= np.mean(clean_hits) - 0.1


def test_a_row_with_a_stray_mark_beside_its_last_digit_is_read(stack, digit_model, test_digits):
    """Once a 500: the splitter indexed past the end merging a fragment into the last digit."""
    images, _ = test_digits
    digits = images[:SEQUENCE]
    row, spans = row_of_digits(digits, 28, 6, np.random.default_rng(0))
    cv2.circle(row, (spans[-1][1] + 2, row.shape[0] // 2 - 10), 1, 0, -1)
    parts = [("file", ("row.png", encode(row, "PNG"), "image/png"))]
    response = stack.client.post(
        "/predict/sum", files=parts, params={"model": digit_model["id"]}, timeout=60
    )
    assert response.status_code == 200, response.text
    # The same pixels uploaded one by one: each digit's columns of the row (the stray mark with
    # the last). A row's ink is normalised as a whole, a single upload's on its own, so a digit
    # the session's small model is unsure of may read either way: those are not compared.
    margin = 3  # half the gap
    crops = [row[:, first - margin : last + margin] for first, last in spans[:-1]]
    crops.append(row[:, spans[-1][0] - margin : spans[-1][1] + 2 * margin])
    one_by_one = post_digits(stack, crops, model=digit_model["id"])
    sure = [i for i, reading in enumerate(one_by_one) if max(reading["probabilities"]) >= 0.9]
    assert len(sure) >= 8, one_by_one  # a merge gone wrong shifts the digits after it
    read = response.json()["digits"]
    assert [read[i] for i in sure] == [one_by_one[i]["digit"] for i in sure]


def test_sum_requests_without_10_digits_say_how_many_were_found(stack, digit_model, test_digits):
    images, _ = test_digits
    nine = post_sum(stack, images[:9], method="digit-model")
    assert nine.status_code == 422
    assert "got 9" in nine.json()["detail"]
    row = encode(photo_of_row(images[:7], np.random.default_rng(0)), "JPEG", 90)
    seven = post_sum(stack, row=row, method="digit-model")
    assert seven.status_code == 422
    assert "found 7 digits" in seven.json()["detail"]
    both = stack.client.post(
        "/predict/sum",
        params={"method": "digit-model"},
        files=[("file", ("r.png", encode(images[0], "PNG")))]
        + [("files", (f"{i}.png", encode(im, "PNG"))) for i, im in enumerate(images[:10])],
    )
    assert both.status_code == 422
    assert "not both" in both.json()["detail"]


def test_a_sum_with_the_calculator_needs_a_calculator_model(stack, digit_model, test_digits):
    response = post_sum(
        stack, test_digits[0][:SEQUENCE], model=digit_model["id"], method="calculator"
    )
    assert response.status_code == 422
    assert "calculator" in response.json()["detail"]


# TF Serving's REST API


def test_tf_serving_status_names_the_newest_model_of_a_kind_or_an_alias(stack, digit_model):
    newest = stack.client.get("/models", params={"kind": "cnn", "limit": 1}).json()["items"][0]
    status = stack.client.get("/v1/models/cnn").json()
    assert status["model_version_status"][0]["version"] == newest["id"]
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    stack.client.put(f"/models/{digit_model['id']}/aliases/served")
    by_alias = stack.client.get("/v1/models/served").json()
    assert by_alias["model_version_status"][0]["version"] == digit_model["id"]
    assert stack.client.get("/v1/models/nothing-here").status_code == 404


def test_tf_serving_predict_matches_the_stored_model(stack, digit_model, test_digits, tmp_path):
    images, _ = test_digits
    arrays = images[:5].astype(float).tolist()
    b64 = [{"b64": base64.b64encode(encode(im, "PNG")).decode()} for im in images[5:8]]
    response = stack.client.post(
        f"/v1/models/{digit_model['id']}:predict", json={"instances": arrays + b64}
    )
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (8, 10)
    assert response.json()["model"] == {"id": digit_model["id"], "kind": "cnn"}
    # Arrays are prepared as the training images were: the downloaded model on them.
    model = _download(stack, digit_model["id"], tmp_path)
    expected = model.predict(prepare_images(images[:5]), verbose=0)
    np.testing.assert_allclose(predictions[:5], expected, atol=1e-5)
    # Image files are prepared as uploads are: the same as the same digits uploaded.
    uploaded = [p["probabilities"] for p in post_digits(stack, images[:8], model=digit_model["id"])]
    np.testing.assert_allclose(predictions, uploaded, atol=1e-5)


def test_tf_serving_predict_with_a_calculator(stack, calculator_model, test_digits, tmp_path):
    images, _ = test_digits
    sequences = images[:20].reshape(2, SEQUENCE, 28, 28)
    response = stack.client.post(
        "/v1/models/calculator:predict", json={"instances": sequences.astype(float).tolist()}
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    prepared = prepare_images(images[:20]).reshape(2, SEQUENCE, 28, 28)
    expected = _download(stack, calculator_model["id"], tmp_path).predict(prepared, verbose=0)
    for name in ("sum", "cumulative", "digits"):
        got = np.array([prediction[name] for prediction in predictions])
        np.testing.assert_allclose(got, expected[name], atol=1e-4)


@pytest.mark.parametrize(
    ("instances", "status", "words"),
    [
        ([[[0] * 28] * 27], 422, "shape 27x28"),
        ([[["x"] * 28] * 28], 422, "not an array of numbers"),
        ([{"b64": "%%%"}], 422, "not valid base64"),
        ([{"image": "abc"}], 422, "only object accepted"),
        ([{"b64": base64.b64encode(b"not an image").decode()}], 415, "not an image"),
        ([], 422, "at least 1"),
    ],
)
def test_tf_serving_rejects_bad_instances(stack, digit_model, instances, status, words):
    response = stack.client.post(
        f"/v1/models/{digit_model['id']}:predict", json={"instances": instances}
    )
    assert response.status_code == status, response.text
    assert words in response.text


def test_tf_serving_refuses_arrays_out_of_0_255_or_scaled_to_0_1(
    stack, digit_model, calculator_model, test_digits
):
    images = test_digits[0][:10].astype(float)
    scaled = stack.client.post(
        f"/v1/models/{digit_model['id']}:predict", json={"instances": (images[:1] / 255).tolist()}
    )
    assert scaled.status_code == 422, scaled.text
    assert "instances[0] has no value above 1" in scaled.json()["detail"]
    assert "scaled to 0..1" in scaled.json()["detail"]
    over = images[:1].copy()
    over[0, 5, 5] = 300
    too_bright = stack.client.post(
        f"/v1/models/{digit_model['id']}:predict", json={"instances": over.tolist()}
    )
    assert too_bright.status_code == 422, too_bright.text
    assert "outside 0..255" in too_bright.json()["detail"]
    # A calculator's sequence: each of its 10 images is checked.
    sequence = images.copy()
    sequence[4] /= 255
    faint = stack.client.post(
        f"/v1/models/{calculator_model['id']}:predict", json={"instances": [sequence.tolist()]}
    )
    assert faint.status_code == 422, faint.text
    assert "instances[0][4] has no value above 1" in faint.json()["detail"]


def test_tf_serving_counts_a_calculator_instance_as_its_10_images(stack, calculator_model):
    """MAX_IMAGES_PER_REQUEST (64 on the session's stack) counts 28x28 images: 7 are 70."""
    instances = [np.zeros((SEQUENCE, 28, 28), np.uint8).tolist()] * 7
    refused = stack.client.post(
        f"/v1/models/{calculator_model['id']}:predict", json={"instances": instances}
    )
    assert refused.status_code == 413, refused.text
    assert "carries 70 images" in refused.json()["detail"]


# Micro-batching and metrics


def test_concurrent_requests_share_model_calls_and_get_their_own_answers(
    stack, digit_model, test_digits
):
    images, _ = test_digits
    photos = [encode(image, "PNG") for image in images[:64]]
    expected = [
        p["probabilities"] for p in post_digits(stack, images[:64], model=digit_model["id"])
    ]
    before = _metric(stack, "digit_service_predict_batch_rows", digit_model["id"])

    def one(index: int) -> list[float]:
        response = stack.client.post(
            "/predict/digit", params={"model": digit_model["id"]},
            files=[("file", (f"{index}.png", photos[index], "image/png"))], timeout=60,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()["probabilities"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(64)))
    np.testing.assert_allclose(answers, expected, atol=1e-5)
    after = _metric(stack, "digit_service_predict_batch_rows", digit_model["id"])
    rows = after["sum"] - before["sum"]
    calls = after["count"] - before["count"]
    assert rows == 64
    assert calls < 64  # some requests shared a call


def test_metrics_report_requests_batches_models_and_jobs(stack, digit_model, test_digits):
    post_digits(stack, test_digits[0][:3], model=digit_model["id"])
    response = stack.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(stack)
    labels = (("endpoint", "/predict/digit"), ("method", "POST"), ("model", digit_model["id"]))
    predict_key = ("digit_service_requests_total", (*labels, ("status", "200")))
    assert samples[predict_key] >= 1
    assert samples[("digit_service_models_loaded", ())] >= 1
    jobs = stack.client.get("/jobs", params={"status": "succeeded", "limit": 1}).json()["total"]
    assert samples[("digit_service_jobs", (("status", "succeeded"),))] == jobs
    assert ("digit_service_queue_length", ()) in samples
    answered = sum(
        value
        for (name, sample_labels), value in samples.items()
        if name == "digit_service_requests_total" and set(labels) <= set(sample_labels)
    )  # every status
    assert samples[("digit_service_request_seconds_count", labels)] == answered


def _metric(stack, name: str, model_id: str) -> dict[str, float]:
    """A histogram's sum and count for one model (0 before its first observation)."""
    samples = _samples(stack)
    return {
        part: samples.get((f"{name}_{part}", (("model", model_id),)), 0.0)
        for part in ("sum", "count")
    }


def _download(stack, model_id: str, folder):
    import keras

    from training import activations, calculator  # noqa: F401  registers custom objects

    path = folder / f"{model_id}.keras"
    path.write_bytes(stack.client.get(f"/models/{model_id}/download").content)
    return keras.saving.load_model(path)


# A fresh start


@pytest.mark.slow
def test_a_fresh_start_trains_the_default_models_and_answers_409_until_ready(
    tmp_path, mnist_path, test_digits
):
    overrides = '{"epochs": 1, "train_limit": 2000, "test_limit": 500}'
    fresh = ServiceStack(FAULTS_DB, tmp_path, MNIST_PATH=str(mnist_path),
                         BOOTSTRAP_MODELS="true", BOOTSTRAP_OVERRIDES=overrides)  # fmt: skip
    fresh.start()
    try:
        # The calculator starts from the digit model: queued once that is stored.
        (digit_job,) = fresh.client.get("/jobs").json()["items"]
        assert digit_job["kind"] == "cnn" and digit_job["params"]["epochs"] == 1
        photo = encode(photo_of_digit(test_digits[0][0], np.random.default_rng(0)), "JPEG")
        early = fresh.client.post("/predict/digit", files=[("file", ("a.jpg", photo))])
        assert early.status_code == 409
        assert "training is under way" in early.json()["detail"]
        early_sum = post_sum(fresh, test_digits[0][:SEQUENCE])
        assert early_sum.status_code == 409, early_sum.text
        finished = fresh.wait_until_finished(digit_job["id"], timeout=240)
        assert finished["status"] == "succeeded", finished["error"]
        ready = fresh.client.post("/predict/digit", files=[("file", ("a.jpg", photo))])
        assert ready.status_code == 200, ready.text

        def calculator_job() -> dict | None:
            items = fresh.client.get("/jobs", params={"kind": "calculator"}).json()["items"]
            return items[0] if items else None

        queued = wait_for(calculator_job, 30, "the calculator queued after the cnn")
        assert queued["params"]["digit_model"] == "cnn"
        finished = fresh.wait_until_finished(queued["id"], timeout=240)
        assert finished["status"] == "succeeded", finished["error"]
        assert finished["result"]["digit_model_id"] == ready.json()["model"]["id"]
        sums = post_sum(fresh, test_digits[0][:SEQUENCE], method="calculator")
        assert sums.status_code == 200, sums.text
        jobs = fresh.client.get("/jobs").json()["items"]
        assert len(jobs) == 2

        fresh.api.stop()  # a restart with models stored queues nothing new
        fresh.start_api()
        assert fresh.client.get("/jobs").json()["total"] == len(jobs)
    finally:
        fresh.stop()


@pytest.mark.slow
def test_several_api_processes_serve_and_report_metrics_together(tmp_path, mnist_path, test_digits):
    """`make run`'s API: service.api_server with API_WORKERS=2, metrics summed over both."""
    served = ServiceStack(FAULTS_DB, tmp_path, MNIST_PATH=str(mnist_path), API_WORKERS="2")
    served.env["PORT"] = str(served.port)
    served.api.command = [sys.executable, "-m", "service.api_server"]
    served.start()
    try:
        job = served.submit("cnn", conv_filters=[8], dense_units=16, epochs=1, train_limit=1000,
                            test_limit=200)  # fmt: skip
        finished = served.wait_until_finished(job["id"], timeout=120)
        assert finished["status"] == "succeeded", finished["error"]
        model_id = finished["result"]["model_id"]
        served.api.stop()
        served.start_api()  # both processes preload the stored model at start

        def loaded() -> float:
            return _samples(served)[("digit_service_models_loaded", ())]

        wait_for(lambda: loaded() == 2, timeout=60, message="both API processes to load")
        images = test_digits[0][:20]
        for image in images:
            response = served.client.post(
                "/predict/digit", params={"model": model_id},
                files=[("file", ("d.png", encode(image, "PNG"), "image/png"))],
            )  # fmt: skip
            assert response.status_code == 200, response.text
        labels = (("endpoint", "/predict/digit"), ("method", "POST"), ("model", model_id))
        key = ("digit_service_requests_total", (*labels, ("status", "200")))
        assert _samples(served)[key] == len(images)

        # A process that dies is replaced, and the replacement loads the model at start.
        children = _children(served.api.pid)
        os.kill(children[0], signal.SIGKILL)
        wait_for(lambda: len(set(_children(served.api.pid)) - set(children)) == 1, timeout=30,
                 message="a new API process")  # fmt: skip
        wait_for(lambda: loaded() == 2, timeout=60, message="the new process to load the model")
        for _ in range(10):
            response = served.client.post("/predict/digit", files=[("file", ("d.png", encode(
                images[0], "PNG"), "image/png"))])  # fmt: skip
            assert response.status_code == 200, response.text
    finally:
        served.stop()


def _children(pid: int) -> list[int]:
    """The API processes a supervisor started (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(int(child))
    return found


def _samples(stack) -> dict:
    text = stack.client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.slow
def test_api_processes_that_cannot_start_make_the_server_give_up(tmp_path):
    """A port held by another program: each process dies at once; the supervisor exits 1
    instead of restarting them forever, so `make run` stops and shows why."""
    import socket
    import subprocess

    from tests.stack import REPO_ROOT, redis_url

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "API_WORKERS": "2", "HOST": "127.0.0.1", "PORT": str(port),
               "REDIS_URL": redis_url(FAULTS_DB), "ARTIFACTS_DIR": str(tmp_path),
               "BOOTSTRAP_MODELS": "false"}  # fmt: skip
        command = [sys.executable, "-m", "service.api_server"]
        run = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert run.returncode == 1
    assert "giving up" in run.stderr
    assert "address already in use" in run.stderr.lower()


def test_tf_serving_a_large_batch_is_prepared_off_the_event_loop_alike(
    stack, digit_model, test_digits, tmp_path
):
    images = test_digits[0][:40]  # over INLINE_ITEMS: prepared in the thread pool
    response = stack.client.post(
        f"/v1/models/{digit_model['id']}:predict", json={"instances": images.tolist()}
    )
    assert response.status_code == 200, response.text
    model = _download(stack, digit_model["id"], tmp_path)
    expected = model.predict(prepare_images(images), verbose=0)
    np.testing.assert_allclose(response.json()["predictions"], expected, atol=1e-5)


@pytest.mark.slow
def test_an_api_serving_quantized_models_answers_close_to_the_model(
    stack, digit_model, test_digits, tmp_path
):
    """SERVE_QUANTIZED: another API on the same store runs the digit model with 8-bit weights;
    its answers move (so the setting took effect) but stay the model's digits."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(port)]
    settings = {"SERVE_QUANTIZED": "true", "PRELOAD_MODELS": "false"}  # loads on first use
    api = ManagedProcess("api-quantized", command, stack.env | settings, tmp_path)
    api.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:

        def ready() -> bool:
            if api.process.poll() is not None:
                raise RuntimeError(f"The quantized API exited:\n{api.log_tail()}")
            try:
                return client.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=60, message="the quantized API to answer")
        images = test_digits[0][:60]
        parts = [("file", (f"{i}.png", encode(image, "PNG"), "image/png")) for i, image in
                 enumerate(images)]  # fmt: skip
        answer = client.post("/predict/digit", files=parts, params={"model": digit_model["id"]})
        assert answer.status_code == 200, answer.text + api.log_tail()
        quantized = np.array([p["probabilities"] for p in answer.json()["predictions"]])
        exact = np.array(
            [p["probabilities"] for p in post_digits(stack, images, model=digit_model["id"])]
        )
        assert np.abs(quantized - exact).max() > 1e-4  # not the float model's answers
        assert np.abs(quantized - exact).mean() < 0.01
        assert (quantized.argmax(axis=1) == exact.argmax(axis=1)).mean() >= 0.95
    finally:
        client.close()
        api.stop()
