"""Plots of jobs, sweeps and models, as PNG images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import JobStoreDep, ModelStoreDep, SettingsDep, SweepStoreDep
from service.api.errors import ERROR_RESPONSES
from service.models.store import ModelStore
from service.plots import figures, sources
from service.plots.png import to_png
from service.predict.models import load_stored_model
from service.predict.reading import Upload, prepare_digit, read_upload
from service.settings import Settings

router = APIRouter(tags=["plots"], responses=ERROR_RESPONSES)

PNG = {200: {"content": {"image/png": {}}, "description": "A PNG image."}}
MetricQuery = Annotated[str | None, Query(description="Which metric; default: the main one.")]


def _png(figure) -> Response:
    return Response(to_png(figure), media_type="image/png")


@router.get("/jobs/{job_id}/plots/history.png", response_class=Response, responses=PNG)
def job_history(job_id: str, jobs: JobStoreDep) -> Response:
    """Training and validation curves of every metric, per epoch."""
    job = jobs.get(job_id)
    return _png(figures.job_history(job.id, job.kind, sources.job_series(jobs, job, "history")))


@router.get("/jobs/{job_id}/plots/gradients.png", response_class=Response, responses=PNG)
def job_gradients(job_id: str, jobs: JobStoreDep) -> Response:
    """Largest gradient of each layer by depth, untrained and after training."""
    job = jobs.get(job_id)
    gradients = sources.job_series(jobs, job, "gradients")
    return _png(figures.job_gradients(job.id, job.kind, gradients))


@router.get("/jobs/{job_id}/plots/confusion.png", response_class=Response, responses=PNG)
def job_confusion(job_id: str, jobs: JobStoreDep) -> Response:
    """The test set's confusion matrix, counts in the cells."""
    job = jobs.get(job_id)
    return _png(figures.confusion(job.id, job.kind, sources.confusion_matrix(job)))


@router.get("/jobs/{job_id}/plots/graph.png", response_class=Response, responses=PNG)
def job_graph(job_id: str, jobs: JobStoreDep) -> Response:
    """A backprop job's compute graph, each node with its value and gradient."""
    job = jobs.get(job_id)
    return _png(figures.compute_graph(job.id, sources.graph_nodes(job)))


@router.get("/sweeps/{sweep_id}/plots/history.png", response_class=Response, responses=PNG)
def sweep_history(
    sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep, metric: MetricQuery = None
) -> Response:
    """Every cell's curve in one figure: mean over replicates with a +- std band."""
    sweep = sweeps.get(sweep_id)
    cells = sources.sweep_histories(jobs, sweep)
    metric = sources.pick_history_metric(cells, metric)
    return _png(figures.sweep_history(sweep.id, cells, metric))


@router.get("/sweeps/{sweep_id}/plots/metric.png", response_class=Response, responses=PNG)
def sweep_metric(
    sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep, metric: MetricQuery = None
) -> Response:
    """A final metric per cell, mean +- std over replicates (default: test accuracy)."""
    sweep = sweeps.get(sweep_id)
    metric, cells = sources.sweep_final_metrics(jobs, sweep, metric)
    return _png(figures.sweep_metric(sweep.id, cells, metric))


@router.get("/sweeps/{sweep_id}/plots/gradients.png", response_class=Response, responses=PNG)
def sweep_gradients(sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep) -> Response:
    """Largest gradient per layer: a subplot per network depth, a line per activation."""
    sweep = sweeps.get(sweep_id)
    return _png(figures.sweep_gradients(sweep.id, sources.sweep_gradient_panels(jobs, sweep)))


@router.post("/models/{model}/plots/feature-maps.png", response_class=Response, responses=PNG)
async def model_feature_maps(
    model: str,
    file: Annotated[UploadFile, File(description="An image of a digit.")],
    models: ModelStoreDep,
    settings: SettingsDep,
) -> Response:
    """Every convolutional filter's output for the uploaded image, a grid per layer."""
    upload = await read_upload(file, settings)
    return await run_in_threadpool(_feature_maps, models, model, upload, settings)


def _feature_maps(models: ModelStore, model: str, upload: Upload, settings: Settings) -> Response:
    record = models.resolve(model)
    if record.kind != "cnn":
        raise sources.NotPlottable(
            f"Model {model!r} is a {record.kind!r} model; feature maps are drawn for cnn models, "
            f"which read 28x28 digits. List them with GET /models?kind=cnn."
        )
    image = prepare_digit(upload, settings)
    from training.feature_maps import convolution_outputs  # TensorFlow: only on this path

    stored = load_stored_model(models.file_path(record, "keras"))
    return _png(figures.feature_maps(record.id, convolution_outputs(stored, image), image))
