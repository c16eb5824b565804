"""TensorBoard logs: written by the training library at epoch ends, by every Keras job under
ARTIFACTS_DIR/tensorboard/{job_id}, downloaded as a tar.gz by GET /jobs/{id}/tensorboard and
removed with the job; read back with TensorBoard's own event-file loader."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import (
    DEFAULT_SIZE_GUIDANCE,
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

from service.errors import ConflictError, NotFoundError
from service.gates import Busy
from service.jobs import tensorboard
from service.jobs.schemas import JobRecord, JobStatus
from service.jobs.tensorboard import archive, log_dir, log_files, pack, remove_logs
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


def assert_history_logged(folder: Path, history: list[dict]):
    """The run in `folder` holds each epoch's loss, accuracy and learning rate (train/) and
    validation metrics (validation/) as the job's history has them; the train run."""
    train, validation = load_run(folder / "train"), load_run(folder / "validation")
    for metric in ("loss", "accuracy", "learning_rate"):
        assert_epoch_scalars(train, f"epoch_{metric}", [entry[metric] for entry in history])
    for metric in ("loss", "accuracy"):
        expected = [entry[f"val_{metric}"] for entry in history]
        assert_epoch_scalars(validation, f"epoch_{metric}", expected)
    return train


def test_the_library_logs_a_fit_per_epoch(tmp_path, mnist_path):
    reporter = RecordingReporter()
    train_mlp(
        hidden_units=[16], epochs=2, train_limit=300, test_limit=100, seed=0,
        mnist_path=mnist_path, progress=reporter, tensorboard_dir=tmp_path,
    )  # fmt: skip
    history = reporter.history
    train = assert_history_logged(tmp_path, history)
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
        # Nothing of the worker's account: ids and names zeroed.
        assert {(member.uid, member.gid, member.uname, member.gname) for member in members} == {
            (0, 0, "", "")
        }
        archive.extractall(into, filter="data")
    return into / job_id


def test_a_jobs_logs_download_with_its_history_gradients_and_graph(stack, digit_model, tmp_path):
    job_id = digit_model["job_id"]
    folder = download(stack, job_id, tmp_path)
    history = stack.client.get(f"/jobs/{job_id}/history").json()
    gradients = stack.client.get(f"/jobs/{job_id}/gradients").json()
    assert len(history) == 2

    train = assert_history_logged(folder, history)
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
    response = stack.client.get(f"/jobs/{queued['id']}/tensorboard")
    assert response.status_code == 404  # a Keras job that ended before writing any
    assert "(cancelled) has no TensorBoard logs: none were written" in response.json()["detail"]

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


# The archive at function level, on folders laid out as a worker's (and as no worker's).


def keras_job(status: JobStatus) -> JobRecord:
    return JobRecord(
        id=uuid.uuid4().hex, kind="mlp", status=status, params={}, created_at=datetime.now(UTC)
    )


def write_logs(artifacts: Path, job_id: str, files: dict[str, bytes]) -> Path:
    """The job's log folder holding `files` (relative path -> content)."""
    folder = log_dir(artifacts, job_id)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def unpack(packed: tuple[io.IOBase, int]) -> dict[str, bytes]:
    """name -> content of every entry of an archive `archive` or `pack` made (closing it)."""
    file, size = packed
    with file:
        data = file.read()
    assert len(data) == size
    assert data[8] == 0  # gzip's XFL: neither its slowest level (2) nor its fastest (4)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


LOGS = {"train/events.1": b"train events", "validation/events.1": b"validation events"}


def test_files_removed_or_cut_short_after_listing_are_packed_as_they_are_now(tmp_path):
    job = keras_job(JobStatus.RUNNING)
    folder = write_logs(tmp_path, job.id, {**LOGS, "train/events.2": b"more"})
    files = log_files(folder)
    assert [(path.relative_to(folder).as_posix(), size) for path, size in files] == [
        ("train/events.1", 12), ("train/events.2", 4), ("validation/events.1", 17)
    ]  # fmt: skip
    (folder / "train/events.2").unlink()
    os.truncate(folder / "validation/events.1", 5)
    assert unpack(pack(job.id, folder, files)) == {
        f"{job.id}/train/events.1": b"train events",
        f"{job.id}/validation/events.1": b"valid",
    }


def test_logs_removed_after_listing_are_404_saying_so(tmp_path):
    job = keras_job(JobStatus.SUCCEEDED)
    folder = write_logs(tmp_path, job.id, LOGS)
    files = log_files(folder)
    remove_logs(tmp_path, job.id)  # as DELETE /jobs/{id} does
    assert not folder.exists()
    with pytest.raises(NotFoundError, match="removed while they were being packed"):
        pack(job.id, folder, files)


def test_links_are_neither_packed_nor_followed(tmp_path):
    secrets = tmp_path / "secrets"
    (secrets / "inner").mkdir(parents=True)
    (secrets / "key.pem").write_bytes(b"secret")
    (secrets / "inner" / "cert.pem").write_bytes(b"secret too")
    job = keras_job(JobStatus.SUCCEEDED)
    folder = write_logs(tmp_path / "artifacts", job.id, LOGS)
    (folder / "train" / "key.pem").symlink_to(secrets / "key.pem")
    (folder / "linked").symlink_to(secrets)
    expected = {f"{job.id}/{name}": content for name, content in LOGS.items()}
    assert unpack(archive(tmp_path / "artifacts", job)) == expected

    files = log_files(folder)  # a listed file replaced by a link before it is packed
    (folder / "validation" / "events.1").unlink()
    (folder / "validation" / "events.1").symlink_to(secrets / "key.pem")
    assert unpack(pack(job.id, folder, files)) == {f"{job.id}/train/events.1": b"train events"}


def test_a_job_folder_that_is_a_link_is_refused_and_removed_as_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cert.pem").write_bytes(b"secret")
    job = keras_job(JobStatus.SUCCEEDED)
    folder = log_dir(tmp_path / "artifacts", job.id)
    folder.parent.mkdir(parents=True)
    folder.symlink_to(elsewhere)
    with pytest.raises(ConflictError, match="is a link, which the service never makes"):
        archive(tmp_path / "artifacts", job)
    remove_logs(tmp_path / "artifacts", job.id)
    assert not folder.is_symlink() and not folder.exists()
    assert (elsewhere / "cert.pem").read_bytes() == b"secret"


def test_logs_over_the_cap_are_409_pointing_to_tensorboard(tmp_path, monkeypatch):
    job = keras_job(JobStatus.SUCCEEDED)
    folder = write_logs(tmp_path, job.id, LOGS)
    total = sum(len(content) for content in LOGS.values())
    monkeypatch.setattr(tensorboard, "MAX_ARCHIVE_BYTES", total - 1)
    with pytest.raises(ConflictError, match=f"logs are {total:,} bytes") as error:
        archive(tmp_path, job)
    assert f"tensorboard --logdir {folder}" in error.value.detail
    monkeypatch.setattr(tensorboard, "MAX_ARCHIVE_BYTES", total)
    assert len(unpack(archive(tmp_path, job))) == len(LOGS)


@pytest.mark.parametrize("folder_made", [False, True])
def test_a_running_keras_job_without_logs_yet_is_409_an_ended_one_404(tmp_path, folder_made):
    running, failed = keras_job(JobStatus.RUNNING), keras_job(JobStatus.FAILED)
    if folder_made:  # the worker made the folders, no event file yet
        for job in (running, failed):
            (log_dir(tmp_path, job.id) / "train").mkdir(parents=True)
    with pytest.raises(ConflictError, match="no TensorBoard logs yet: it has just started"):
        archive(tmp_path, running)
    with pytest.raises(NotFoundError, match=r"\(failed\) has no TensorBoard logs"):
        archive(tmp_path, failed)


def test_packings_beyond_the_slots_are_503_with_retry_after(tmp_path):
    job = keras_job(JobStatus.SUCCEEDED)
    write_logs(tmp_path, job.id, LOGS)
    with contextlib.ExitStack() as held:
        for _ in range(tensorboard.PACKING_SLOTS):
            held.enter_context(tensorboard.PACKING.enter())
        with pytest.raises(Busy, match="busy packing TensorBoard logs") as error:
            archive(tmp_path, job)
    assert error.value.status_code == 503 and error.value.headers["Retry-After"]
    assert len(unpack(archive(tmp_path, job))) == len(LOGS)  # a slot freed, packed again
