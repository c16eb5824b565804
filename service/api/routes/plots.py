"""Plots of jobs, sweeps and models, as PNG images: each rendered once per state of what it
shows (see `service.plots.cache`), with an ETag; renders limited to PLOT_SLOTS at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, Response, UploadFile
from matplotlib.figure import Figure
from starlette.concurrency import run_in_threadpool

from service.api.deps import JobStoreDep, ModelStoreDep, SettingsDep, SweepStoreDep
from service.api.errors import ERROR_RESPONSES
from service.gates import Gate
from service.models.store import ModelStore
from service.plots import figures, sources
from service.plots.cache import PngCache, etag_matches, plot_etag
from service.plots.png import to_png
from service.predict.reading import Upload, prepare_digit, read_upload
from service.settings import Settings, get_settings

router = APIRouter(tags=["plots"], responses=ERROR_RESPONSES)

PNG = {
    200: {"content": {"image/png": {}}, "description": "A PNG image, with its ETag."},
    304: {"description": "Not modified: the If-None-Match header names the current ETag."},
}
MetricQuery = Annotated[str | None, Query(description="Which metric; default: the main one.")]
# Stored but revalidated on every use: a running job's plots change with each epoch.
REVALIDATE = "no-cache"
# Drawn from the client's own upload: no shared cache keeps it.
PRIVATE = "private, no-cache"


class Plots:
    """An app's rendered plots (per process) and the gate every render goes through."""

    def __init__(self, gate: Gate, cache: PngCache) -> None:
        self.gate = gate
        self.cache = cache

    def answer(
        self, request: Request, etag: str, draw: Callable[[], Figure], cache_control: str
    ) -> Response:
        """304 when the client holds `etag`, else the PNG: from the cache, or rendered now
        (holding a slot of the gate: `Busy`, a 503, when all are taken)."""
        headers = {"ETag": etag, "Cache-Control": cache_control}
        # Only GET: RFC 9110 defines 304 for GET and HEAD; a POST always gets its image.
        if request.method == "GET" and etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        png = self.cache.get(etag)
        if png is None:
            with self.gate.enter():
                png = to_png(draw())
            self.cache.put(etag, png)
        return Response(png, media_type="image/png", headers=headers)

    def figure(
        self, request: Request, draw: Callable[..., Figure], *inputs: Any, state: Any = None
    ) -> Response:
        """`draw(*inputs)`, its ETag derived from the inputs and `state` (e.g. the status of a
        job, which the figure does not show but which ends its changes)."""
        etag = plot_etag(draw.__name__, state, *inputs)
        return self.answer(request, etag, lambda: draw(*inputs), REVALIDATE)


async def get_plots(request: Request) -> Plots:
    """The app's `Plots`, made on first use (on the event loop: no two requests race)."""
    plots = getattr(request.app.state, "plots", None)
    if plots is None:
        slots = get_settings().plot_slots
        plots = Plots(Gate("rendering plots", slots, "PLOT_SLOTS"), PngCache())
        request.app.state.plots = plots
    return plots


PlotsDep = Annotated[Plots, Depends(get_plots)]


@router.get("/jobs/{job_id}/plots/history.png", response_class=Response, responses=PNG)
def job_history(job_id: str, jobs: JobStoreDep, plots: PlotsDep, request: Request) -> Response:
    """Training and validation curves of every metric, per epoch."""
    job = jobs.get(job_id)
    history = sources.job_series(jobs, job, "history")
    return plots.figure(request, figures.job_history, job.id, job.kind, history, state=job.status)


@router.get("/jobs/{job_id}/plots/gradients.png", response_class=Response, responses=PNG)
def job_gradients(job_id: str, jobs: JobStoreDep, plots: PlotsDep, request: Request) -> Response:
    """Largest gradient of each layer by depth, untrained and after training."""
    job = jobs.get(job_id)
    gradients = sources.job_series(jobs, job, "gradients")
    return plots.figure(
        request, figures.job_gradients, job.id, job.kind, gradients, state=job.status
    )


@router.get("/jobs/{job_id}/plots/confusion.png", response_class=Response, responses=PNG)
def job_confusion(job_id: str, jobs: JobStoreDep, plots: PlotsDep, request: Request) -> Response:
    """The test set's confusion matrix, counts in the cells."""
    job = jobs.get(job_id)
    matrix = sources.confusion_matrix(job)
    return plots.figure(request, figures.confusion, job.id, job.kind, matrix, state=job.status)


@router.get("/jobs/{job_id}/plots/graph.png", response_class=Response, responses=PNG)
def job_graph(job_id: str, jobs: JobStoreDep, plots: PlotsDep, request: Request) -> Response:
    """A backprop job's compute graph, each node with its value and gradient."""
    job = jobs.get(job_id)
    nodes = sources.graph_nodes(job)
    return plots.figure(request, figures.compute_graph, job.id, nodes, state=job.status)


@router.get("/sweeps/{sweep_id}/plots/history.png", response_class=Response, responses=PNG)
def sweep_history(
    sweep_id: str,
    jobs: JobStoreDep,
    sweeps: SweepStoreDep,
    plots: PlotsDep,
    request: Request,
    metric: MetricQuery = None,
) -> Response:
    """Every cell's curve in one figure: mean over replicates with a +- std band."""
    sweep = sweeps.get(sweep_id)
    cells = sources.sweep_histories(jobs, sweep)
    metric = sources.pick_history_metric(cells, metric)
    return plots.figure(request, figures.sweep_history, sweep.id, cells, metric)


@router.get("/sweeps/{sweep_id}/plots/metric.png", response_class=Response, responses=PNG)
def sweep_metric(
    sweep_id: str,
    jobs: JobStoreDep,
    sweeps: SweepStoreDep,
    plots: PlotsDep,
    request: Request,
    metric: MetricQuery = None,
) -> Response:
    """A final metric per cell, mean +- std over replicates (default: test accuracy)."""
    sweep = sweeps.get(sweep_id)
    metric, cells = sources.sweep_final_metrics(jobs, sweep, metric)
    return plots.figure(request, figures.sweep_metric, sweep.id, cells, metric)


@router.get("/sweeps/{sweep_id}/plots/gradients.png", response_class=Response, responses=PNG)
def sweep_gradients(
    sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep, plots: PlotsDep, request: Request
) -> Response:
    """Largest gradient per layer: a subplot per network depth, a line per activation."""
    sweep = sweeps.get(sweep_id)
    panels = sources.sweep_gradient_panels(jobs, sweep)
    return plots.figure(request, figures.sweep_gradients, sweep.id, panels)


@router.post("/models/{model}/plots/feature-maps.png", response_class=Response, responses=PNG)
async def model_feature_maps(
    model: str,
    file: Annotated[UploadFile, File(description="An image of a digit.")],
    models: ModelStoreDep,
    settings: SettingsDep,
    plots: PlotsDep,
    request: Request,
) -> Response:
    """Every convolutional filter's output for the uploaded image, a mosaic per layer.

    Example, with a cnn model's id or alias: `curl -F file=@digit.png
    localhost:8000/models/$MODEL/plots/feature-maps.png -o maps.png`."""
    upload = await read_upload(file, settings)
    return await run_in_threadpool(_feature_maps, plots, request, models, model, upload, settings)


def _feature_maps(
    plots: Plots,
    request: Request,
    models: ModelStore,
    model: str,
    upload: Upload,
    settings: Settings,
) -> Response:
    record = models.resolve(model)
    if record.kind != "cnn":
        raise sources.NotPlottable(
            f"Model {model!r} is a {record.kind!r} model; feature maps are drawn for cnn models, "
            f"which read 28x28 digits. List them with GET /models?kind=cnn."
        )
    path = models.file_path(record, "keras")

    def draw() -> Figure:
        image = prepare_digit(upload, settings)
        from service.plots.features import feature_extractor  # TensorFlow: only on this path

        return figures.feature_maps(record.id, feature_extractor(path)(image), image)

    # A stored model never changes, so its id and the image's bytes determine the picture.
    etag = plot_etag("feature_maps", record.id, hashlib.sha256(upload.data).hexdigest())
    return plots.answer(request, etag, draw, PRIVATE)
