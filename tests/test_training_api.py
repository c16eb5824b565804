"""Keras training jobs through the API and a real worker: history, gradients, stored models."""

import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest

import training.activations  # noqa: F401  registers "lecun" so downloaded models load
from tests.conftest import QUICK_MLP
from training.callbacks import gradient_statistics
from training.data.mnist import load_mnist
from training.data.prepared import prepare_images
from training.keras_training import PROBE_SIZE


def test_mlp_job_records_history_per_epoch(stack, finished_mlp):
    history = stack.client.get(f"/jobs/{finished_mlp['id']}/history").json()
    assert [entry["epoch"] for entry in history] == [1, 2]
    for entry in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"} <= set(
            entry
        )
        assert entry["learning_rate"] == pytest.approx(QUICK_MLP["learning_rate"])
    assert finished_mlp["progress"]["epoch"] == 2
    assert finished_mlp["progress"]["batch"] == finished_mlp["progress"]["batches"]


def test_mlp_job_stores_a_model_that_reloads_in_both_formats(stack, finished_mlp, mnist_path):
    result = finished_mlp["result"]
    model = stack.client.get(f"/models/{result['model_id']}").json()
    assert model["kind"] == "mlp" and model["job_id"] == finished_mlp["id"]
    assert model["params"] == finished_mlp["params"]
    assert model["metrics"]["test_accuracy"] == result["test_accuracy"]
    listed = stack.client.get("/models", params={"kind": "mlp"}).json()["items"]
    assert result["model_id"] in [item["id"] for item in listed]

    _, test = load_mnist(mnist_path)
    images = prepare_images(test.images[: QUICK_MLP["test_limit"]])  # as the job tests
    predictions = {}
    for model_format in ("keras", "h5"):
        response = stack.client.get(
            f"/models/{result['model_id']}/download", params={"format": model_format}
        )
        assert response.status_code == 200
        assert response.headers["content-disposition"].endswith(f'.{model_format}"')
        predictions[model_format] = _load(response.content, model_format).predict(images, verbose=0)
    np.testing.assert_allclose(predictions["keras"], predictions["h5"], rtol=1e-6, atol=1e-7)
    accuracy = np.mean(np.argmax(predictions["keras"], axis=1) == test.labels[: len(images)])
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert np.sum(result["confusion_matrix"]) == QUICK_MLP["test_limit"]
    assert np.trace(result["confusion_matrix"]) == round(accuracy * len(images))


def test_gradient_statistics_match_the_trained_model(stack, finished_mlp, mnist_path):
    gradients = stack.client.get(f"/jobs/{finished_mlp['id']}/gradients").json()
    assert [entry["epoch"] for entry in gradients] == [0, 1, 2]
    untrained, last = gradients[0]["layers"], gradients[-1]["layers"]
    assert [(e["layer"], e["parameter"]) for e in untrained] == [
        (layer, parameter)
        for layer in ("hidden_1", "hidden_2", "digit")
        for parameter in ("kernel", "bias")
    ]
    assert untrained != last

    # The last entry is measured on the final weights: recompute it from the stored model.
    response = stack.client.get(f"/models/{finished_mlp['result']['model_id']}/download")
    model = _load(response.content, "keras")
    train, _ = load_mnist(mnist_path)
    expected = gradient_statistics(
        model,
        prepare_images(train.images[:PROBE_SIZE]),  # the probe: prepared as the job's images
        train.labels[:PROBE_SIZE],
        keras.losses.sparse_categorical_crossentropy,
    )
    for got, want in zip(last, expected, strict=True):
        assert got["layer"] == want["layer"] and got["parameter"] == want["parameter"]
        for statistic in ("max_abs", "mean_abs", "l2_norm"):
            assert got[statistic] == pytest.approx(want[statistic], rel=1e-4)


def test_history_grows_while_training_and_survives_cancel(stack, mnist_path):
    models_before = stack.client.get("/models").json()["total"]
    job = stack.submit(
        "mlp", hidden_units=[64], epochs=200, batch_size=32, train_limit=4000, test_limit=100
    )
    url = f"/jobs/{job['id']}"

    def history_length() -> int:
        return len(stack.client.get(f"{url}/history").json())

    stack.wait_for_job(
        job["id"],
        lambda j: j["status"] == "running" and history_length() >= 1,
        timeout=120,
        what="to finish an epoch",
    )
    running = stack.job(job["id"])
    assert running["progress"]["epochs"] == 200
    first = history_length()
    stack.wait_for_job(job["id"], lambda j: history_length() > first, what="to finish another")

    assert stack.client.post(f"{url}/cancel").status_code == 202
    cancelled = stack.wait_until_finished(job["id"])
    assert cancelled["status"] == "cancelled"
    kept = stack.client.get(f"{url}/history").json()
    assert len(kept) >= first + 1
    assert len(kept) < 200
    assert len(stack.client.get(f"{url}/gradients").json()) == len(kept) + 1
    assert stack.client.get("/models").json()["total"] == models_before


def test_mlp_depth_and_width_become_hidden_units(stack):
    job = stack.submit("mlp", depth=3, width=8, epochs=1, train_limit=64, test_limit=32)
    assert job["params"]["hidden_units"] == [8, 8, 8]
    assert "depth" not in job["params"]
    stack.wait_until_finished(job["id"], timeout=120)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"depth": 3}, ["body", "params"]),
        ({"hidden_units": [10], "width": 5, "depth": 2}, ["body", "params"]),
        ({"activation": "softmax"}, ["body", "params", "activation"]),
        ({"epochs": 100000}, ["body", "params", "epochs"]),
        ({"hidden_units": [10] * 101}, ["body", "params", "hidden_units"]),
        ({"hidden_units": [100000]}, ["body", "params", "hidden_units", 0]),
        ({"optimizer": "lbfgs"}, ["body", "params", "optimizer"]),
        ({"train_limit": 1, "validation_split": 0.5}, ["body", "params"]),
    ],
)
def test_invalid_mlp_params_are_422(client, params, field):
    response = client.post("/jobs", json={"kind": "mlp", "params": params})
    assert response.status_code == 422, response.text
    assert field in [item["loc"] for item in response.json()["errors"]]


def test_series_of_a_job_without_epochs_are_empty_and_unknown_jobs_404(stack):
    job = stack.wait_until_finished(stack.submit(steps=1)["id"])
    assert stack.client.get(f"/jobs/{job['id']}/history").json() == []
    assert stack.client.get("/jobs/unknown/history").status_code == 404
    assert stack.client.get("/jobs/unknown/gradients").status_code == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/models/0123456789abcdef0123456789abcdef", 404),
        ("/models/..%2F..%2Fetc%2Fpasswd/download", 404),
        ("/models/not-an-id/download", 404),
        ("/models/0123456789abcdef0123456789abcdef/download?format=onnx", 422),
        ("/models?kind=resnet", 422),
    ],
)
def test_model_lookups_fail_clearly(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["detail"]


def _load(content: bytes, model_format: str) -> keras.Model:
    """Load a downloaded model by way of a temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model.{model_format}"
        path.write_bytes(content)
        return keras.saving.load_model(path)
