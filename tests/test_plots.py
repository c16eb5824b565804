"""Plots of real jobs, sweeps and models, as PNG files over HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.plots import figures
from tests.photo_like import encode


@pytest.fixture(scope="module")
def mlp_job(stack, mnist_path):
    job = stack.submit("mlp", depth=2, width=32, epochs=3, train_limit=2000, test_limit=500,
                       seed=0)  # fmt: skip
    finished = stack.wait_until_finished(job["id"], timeout=120)
    assert finished["status"] == "succeeded", finished["error"]
    return finished


@pytest.fixture(scope="module")
def sweep(stack, mnist_path):
    body = {
        "base": {"kind": "mlp", "params": {"width": 16, "epochs": 2, "train_limit": 1000,
                                           "test_limit": 200}},
        "grid": {"depth": [1, 3]},
        "replicates": 2,
    }  # fmt: skip
    created = stack.client.post("/sweeps", json=body)
    assert created.status_code == 202, created.text
    for job in created.json()["jobs"]:
        assert stack.wait_until_finished(job["job_id"], timeout=180)["status"] == "succeeded"
    return created.json()


def get_png(stack, path: str, **params) -> Image.Image:
    response = stack.client.get(path, params=params, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return _image(response.content)


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.width >= 400 and image.height >= 300
    assert np.asarray(image.convert("L")).std() > 5  # something is drawn
    return image


@pytest.mark.parametrize("plot", ["history", "gradients", "confusion"])
def test_a_job_s_plots_are_pngs(stack, mlp_job, plot):
    get_png(stack, f"/jobs/{mlp_job['id']}/plots/{plot}.png")


def test_the_history_figure_says_what_and_which_job(stack, mlp_job):
    history = stack.client.get(f"/jobs/{mlp_job['id']}/history").json()
    figure = figures.job_history(mlp_job["id"], "mlp", history)
    assert mlp_job["id"] in figure.get_suptitle()
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["loss", "accuracy"]
    for axis in figure.axes:
        assert axis.get_xlabel() == "epoch"
        assert [line.get_label() for line in axis.get_lines()] == ["training", "validation"]
        assert len(axis.get_lines()[0].get_xdata()) == len(history)


def test_a_backprop_job_has_a_graph_and_no_history(stack):
    job = stack.wait_until_finished(stack.submit("backprop", steps=3)["id"])
    get_png(stack, f"/jobs/{job['id']}/plots/graph.png")
    nodes = job["result"]["nodes"]
    figure = figures.compute_graph(job["id"], nodes)
    drawn = [text.get_text() for text in figure.axes[0].texts if text.get_text()]  # not arrows
    assert len(drawn) == len(nodes)
    assert all(text.startswith(node["name"]) for text, node in zip(drawn, nodes, strict=True))
    history = stack.client.get(f"/jobs/{job['id']}/plots/history.png")
    assert history.status_code == 422
    assert "graph.png" in history.json()["detail"]
    confusion = stack.client.get(f"/jobs/{job['id']}/plots/confusion.png")
    assert confusion.status_code == 422


def test_graph_of_a_keras_job_and_plots_of_unknown_jobs(stack, mlp_job):
    assert stack.client.get(f"/jobs/{mlp_job['id']}/plots/graph.png").status_code == 422
    assert stack.client.get(f"/jobs/{'0' * 32}/plots/history.png").status_code == 404


@pytest.mark.parametrize("plot", ["history", "metric", "gradients"])
def test_a_sweep_s_plots_are_pngs(stack, sweep, plot):
    get_png(stack, f"/sweeps/{sweep['id']}/plots/{plot}.png")


def test_the_sweep_figures_hold_every_cell(stack, sweep):
    from service.jobs.store import JobStore
    from service.plots import sources
    from service.sweeps.schemas import SweepRecord

    jobs = JobStore(stack.redis, 10)
    record = SweepRecord.model_validate(stack.client.get(f"/sweeps/{sweep['id']}").json())
    cells = sources.sweep_histories(jobs, record)
    history = figures.sweep_history(record.id, cells, "accuracy")
    labels = {line.get_label() for line in history.axes[0].get_lines()}
    assert {label for label, _ in cells} <= labels  # a training curve per cell
    metric, rows = sources.sweep_final_metrics(jobs, record, None)
    assert metric == "test_accuracy"
    assert len(rows) == 2 and all(count == 2 for *_, count in rows)
    panels = sources.sweep_gradient_panels(jobs, record)
    assert sorted(panels) == ["depth=1", "depth=3"]
    gradients = figures.sweep_gradients(record.id, panels)
    assert len(gradients.axes) == 2
    assert len(gradients.axes[1].get_lines()) == 2  # untrained and trained


def test_an_unknown_metric_is_refused_with_the_ones_there_are(stack, sweep):
    response = stack.client.get(f"/sweeps/{sweep['id']}/plots/metric.png",
                                params={"metric": "happiness"})  # fmt: skip
    assert response.status_code == 422
    assert "test_accuracy" in response.json()["detail"]


def test_feature_maps_of_an_uploaded_digit(stack, digit_model, test_digits, mlp_job):
    files = [("file", ("digit.png", encode(test_digits[0][0], "PNG"), "image/png"))]
    response = stack.client.post(f"/models/{digit_model['id']}/plots/feature-maps.png",
                                 files=files, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    _image(response.content)
    mlp = stack.client.post(f"/models/{mlp_job['result']['model_id']}/plots/feature-maps.png",
                            files=files)  # fmt: skip
    assert mlp.status_code == 422
    assert "cnn" in mlp.json()["detail"]
