"""TensorBoard logs: written by the training library at epoch ends, by every Keras job under
ARTIFACTS_DIR/tensorboard/{job_id}, downloaded as a tar.gz by GET /jobs/{id}/tensorboard and
removed with the job; read back with TensorBoard's own event-file loader."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    DEFAULT_SIZE_GUIDANCE,
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

from service.jobs.tensorboard import log_dir
from tests.stack import ServiceStack
from training.mlp import train_mlp
from training.progress import RecordingReporter

STATISTICS = ("max_abs", "mean_abs", "l2_norm")


def load_run(folder: Path) -> EventAccumulator:
    """Every event of one run (one folder), nothing sampled away."""
    run = EventAccumulator(str(folder), size_guidance=dict.fromkeys(DEFAULT_SIZE_GUIDANCE, 0))
    return run.Reload()


def series(run: EventAccumulator, tag: str) -> dict[int, np.ndarray]:
    """step -> value of a TF2 summary (scalars and histograms are stored as tensors)."""
    return {event.step: make_ndarray(event.tensor_proto) for event in run.Tensors(tag)}


def plugin(run: EventAccumulator, tag: str) -> str:
    return run.SummaryMetadata(tag).plugin_data.plugin_name


def assert_epoch_scalars(run: EventAccumulator, tag: str, expected: list[float]) -> None:
    """The scalar has one value per epoch, at steps 1..n, equal to the history's."""
    assert plugin(run, tag) == "scalars"
    values = series(run, tag)
    assert sorted(values) == list(range(1, len(expected) + 1))
    np.testing.assert_allclose([values[step] for step in sorted(values)], expected, rtol=1e-5)


def assert_gradients(run: EventAccumulator, gradients: list[dict]) -> None:
    """Per epoch (0 = untrained) and per layer's parameter: a histogram of the gradient, whose
    range is the recorded max |g|, and the recorded statistics as scalars."""
    steps = [entry["epoch"] for entry in gradients]
    for entry in gradients:
        for layer in entry["layers"]:
            name = f"{layer['layer']}/{layer['parameter']}"
            histogram = series(run, f"gradients/{name}")
            assert plugin(run, f"gradients/{name}") == "histograms"
            assert sorted(histogram) == steps
            buckets = histogram[entry["epoch"]]  # rows of (left edge, right edge, count)
            assert buckets[:, 2].sum() > 0
            largest = max(abs(buckets[0, 0]), abs(buckets[-1, 1]))
            assert largest == pytest.approx(layer["max_abs"], rel=1e-5, abs=1e-12)
            for statistic in STATISTICS:
                tag = f"gradient_{statistic}/{name}"
                assert plugin(run, tag) == "scalars"
                value = series(run, tag)[entry["epoch"]]
                assert value == pytest.approx(layer[statistic], rel=1e-5, abs=1e-12)


def assert_graphs(run: EventAccumulator, layer_names: set[str]) -> None:
    """The op graph of the forward pass, and Keras' conceptual graph naming every layer."""
    assert run.Tags()["graph"]
    assert len(run.Graph().node) > 0
    assert plugin(run, "keras") == "graph_keras_model"
    config = json.loads(make_ndarray(run.Tensors("keras")[0].tensor_proto).item())
    assert layer_names <= {layer["config"]["name"] for layer in config["config"]["layers"]}


def test_the_library_logs_a_fit_per_epoch(tmp_path, mnist_path):
    reporter = RecordingReporter()
    train_mlp(
        hidden_units=[16], epochs=2, train_limit=300, test_limit=100, seed=0,
        mnist_path=mnist_path, progress=reporter, tensorboard_dir=tmp_path,
    )  # fmt: skip
    history = reporter.history
    train, validation = load_run(tmp_path / "train"), load_run(tmp_path / "validation")
    for metric in ("loss", "accuracy", "learning_rate"):
        assert_epoch_scalars(train, f"epoch_{metric}", [entry[metric] for entry in history])
    for metric in ("loss", "accuracy"):
        expected = [entry[f"val_{metric}"] for entry in history]
        assert_epoch_scalars(validation, f"epoch_{metric}", expected)
    assert_gradients(train, reporter.gradients)
    for layer in reporter.gradients[0]["layers"]:
        weights = series(train, f"{layer['layer']}/{layer['parameter']}/histogram")
        assert sorted(weights) == [1, 2]
    assert_graphs(train, {"hidden_1", "digit"})


def test_without_a_folder_the_library_writes_nothing(tmp_path, mnist_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Keras' callback would default to ./logs
    train_mlp(hidden_units=[8], epochs=1, train_limit=200, test_limit=50, mnist_path=mnist_path)
    assert list(tmp_path.iterdir()) == []


def download(stack: ServiceStack, job_id: str, into: Path) -> Path:
    """GET the job's logs and extract them; the extracted job folder."""
    response = stack.client.get(f"/jobs/{job_id}/tensorboard")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert f"tensorboard-{job_id}.tar.gz" in response.headers["content-disposition"]
    assert int(response.headers["content-length"]) == len(response.content)
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        members = archive.getmembers()
        assert members and all(member.isfile() for member in members)
        assert all(member.name.startswith(f"{job_id}/") for member in members)
        archive.extractall(into, filter="data")
    return into / job_id


def test_a_jobs_logs_download_with_its_history_gradients_and_graph(stack, digit_model, tmp_path):
    job_id = digit_model["job_id"]
    folder = download(stack, job_id, tmp_path)
    history = stack.client.get(f"/jobs/{job_id}/history").json()
    gradients = stack.client.get(f"/jobs/{job_id}/gradients").json()
    assert len(history) == 2

    train, validation = load_run(folder / "train"), load_run(folder / "validation")
    for metric in ("loss", "accuracy", "learning_rate"):
        assert_epoch_scalars(train, f"epoch_{metric}", [entry[metric] for entry in history])
    for metric in ("loss", "accuracy"):
        expected = [entry[f"val_{metric}"] for entry in history]
        assert_epoch_scalars(validation, f"epoch_{metric}", expected)
    assert history[1]["learning_rate"] < history[0]["learning_rate"]  # the cosine decay's
    assert_gradients(train, gradients)
    layers = {layer["layer"] for layer in gradients[0]["layers"]}
    assert {"conv_1", "conv_2", "dense", "digit"} <= layers
    assert_graphs(train, layers)

    described = load_run(folder)
    text = make_ndarray(described.Tensors("run")[0].tensor_proto).item().decode()
    assert f"cnn job {job_id}" in text and "conv_filters" in text
    assert plugin(described, "_hparams_/session_start_info") == "hparams"


def test_logs_so_far_while_a_job_runs_not_yet_while_queued_none_once_deleted(stack, tmp_path):
    job = stack.submit("mlp", hidden_units=[8], epochs=40, train_limit=1000, test_limit=100, seed=0)
    stack.wait_for_job(
        job["id"], lambda j: (j["progress"] or {}).get("epoch", 0) >= 3, what="in epoch 3"
    )
    folder = download(stack, job["id"], tmp_path)
    assert stack.job(job["id"])["status"] == "running"  # it was while its logs were packed
    epochs = series(load_run(folder / "train"), "epoch_loss")
    assert 2 <= len(epochs) < 40 and sorted(epochs) == list(range(1, len(epochs) + 1))

    queued = stack.submit("mlp", hidden_units=[8], epochs=1, train_limit=300, test_limit=100)
    response = stack.client.get(f"/jobs/{queued['id']}/tensorboard")
    assert response.status_code == 409  # not yet: the worker is busy with the first job
    assert response.json()["code"] == "conflict"
    assert "no TensorBoard logs yet: it is queued" in response.json()["detail"]
    assert stack.client.post(f"/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"

    stack.client.post(f"/jobs/{job['id']}/cancel")
    assert stack.wait_until_finished(job["id"])["status"] == "cancelled"
    on_disk = stack.log_dir / "artifacts" / "tensorboard" / job["id"]
    assert (on_disk / "train").is_dir()
    assert stack.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert not on_disk.exists()
    response = stack.client.get(f"/jobs/{job['id']}/tensorboard")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("job_id", [uuid.uuid4().hex, "not-a-job"])
def test_an_unknown_job_has_no_logs(stack, job_id):
    response = stack.client.get(f"/jobs/{job_id}/tensorboard")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert f"No job with id {job_id!r}" in body["detail"]


def test_a_log_folder_is_only_ever_a_job_ids(tmp_path):
    assert log_dir(tmp_path, "a" * 32) == tmp_path.resolve() / "tensorboard" / ("a" * 32)
    with pytest.raises(ValueError, match="Not a job id"):
        log_dir(tmp_path, "../models")


def test_a_job_that_is_not_a_keras_job_has_no_logs(stack):
    job = stack.wait_until_finished(stack.submit("backprop", steps=1)["id"])
    assert job["status"] == "succeeded", job["error"]
    response = stack.client.get(f"/jobs/{job['id']}/tensorboard")
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "not_found"
    assert "backprop job, which writes no TensorBoard logs" in body["detail"]
    assert "cnn" in body["detail"]


def test_the_download_is_declared_in_openapi(stack):
    operation = stack.client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/tensorboard"]
    responses = operation["get"]["responses"]
    assert list(responses["200"]["content"]) == ["application/gzip"]
    assert "application/json" in responses["404"]["content"]
