"""The data each plot needs, gathered from the job and sweep stores, with a clear error when a
plot cannot be drawn yet (or ever) for what was asked."""

from __future__ import annotations

from typing import Any

from service.errors import ConflictError, ServiceError
from service.jobs.schemas import JobRecord, JobStatus
from service.jobs.store import JobStore
from service.plots.figures import history_metrics
from service.sweeps.runs import summarize
from service.sweeps.schemas import SweepRecord


class NotPlottable(ServiceError):
    """The plot asked for does not exist for this job, sweep or model (another kind's plot, a
    metric it never recorded): 404, as it never will. One that will exist later is a 409."""

    status_code = 404
    code = "not_plottable"


def job_series(jobs: JobStore, job: JobRecord, series: str) -> list[dict[str, Any]]:
    entries = jobs.entries(job.id, series)
    if not entries:
        if job.kind == "backprop":
            raise NotPlottable(
                f"Job {job.id} is a backprop job: it has no per-epoch {series}. Plot its compute "
                f"graph with GET /jobs/{job.id}/plots/graph.png."
            )
        raise ConflictError(
            f"Job {job.id} has no {series} yet (status {job.status}): the first entry is "
            f"recorded {'after its first epoch' if series == 'history' else 'when it starts'}. "
            f"Try again later."
        )
    return entries


def confusion_matrix(job: JobRecord) -> list[list[int]]:
    matrix = (job.result or {}).get("confusion_matrix")
    if matrix is None:
        if job.status.is_finished:
            raise NotPlottable(
                f"Job {job.id} ({job.kind}, {job.status}) has no confusion matrix: only "
                f"classifiers (mlp, cnn, svhn_cnn) that succeeded record one."
            )
        raise ConflictError(
            f"Job {job.id} is {job.status}; its confusion matrix is recorded when it succeeds."
        )
    return matrix


def graph_nodes(job: JobRecord) -> list[dict[str, Any]]:
    if job.kind != "backprop":
        raise NotPlottable(
            f"Job {job.id} is a {job.kind} job; compute graphs are drawn for backprop jobs."
        )
    if job.status != JobStatus.SUCCEEDED:
        raise ConflictError(f"Job {job.id} is {job.status}; its graph is drawn once it succeeds.")
    return job.result["nodes"]


def cell_label(cell: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in cell.items())


def sweep_histories(
    jobs: JobStore, sweep: SweepRecord
) -> list[tuple[str, list[list[dict[str, Any]]]]]:
    """Each cell's label and the histories of its replicates recorded so far."""
    cells: dict[str, list[list[dict[str, Any]]]] = {}
    for sweep_job in sweep.jobs:
        history = jobs.entries(sweep_job.job_id, "history")
        runs = cells.setdefault(cell_label(sweep_job.cell), [])
        if history:
            runs.append(history)
    if not any(cells.values()):
        raise ConflictError(
            f"No job of sweep {sweep.id} has finished an epoch yet. Try again later."
        )
    return list(cells.items())


def pick_history_metric(
    cells: list[tuple[str, list[list[dict[str, Any]]]]], asked: str | None
) -> str:
    available = history_metrics([entry for _, runs in cells for run in runs for entry in run])
    return _pick(asked, available, preferred=("accuracy", "loss"), what="history metric")


def sweep_final_metrics(
    jobs: JobStore, sweep: SweepRecord, asked: str | None
) -> tuple[str, list[tuple[str, float, float, int]]]:
    """The metric and, per cell with a value, its label, mean, std and count."""
    summary = summarize(sweep, jobs)
    available = sorted({name for cell in summary.cells for name in cell.metrics})
    if not available:
        raise ConflictError(f"No job of sweep {sweep.id} has succeeded yet. Try again later.")
    metric = _pick(asked, available, preferred=("test_accuracy", "test_loss"), what="metric")
    rows = [
        (cell_label(cell.cell), stats.mean, stats.std, stats.count)
        for cell in summary.cells
        if (stats := cell.metrics.get(metric)) is not None
    ]
    return metric, rows


def sweep_gradient_panels(
    jobs: JobStore, sweep: SweepRecord
) -> dict[str, dict[str, list[list[dict[str, Any]]]]]:
    """Gradient series per panel (one per network depth, when the grid varies it) and line."""
    panels: dict[str, dict[str, list[list[dict[str, Any]]]]] = {}
    for sweep_job in sweep.jobs:
        gradients = jobs.entries(sweep_job.job_id, "gradients")
        if not gradients:
            continue
        cell = dict(sweep_job.cell)
        panel = f"depth={cell.pop('depth')}" if "depth" in cell else "all cells"
        line = cell_label(cell) or "gradients"
        panels.setdefault(panel, {}).setdefault(line, []).append(gradients)
    if not panels:
        raise ConflictError(
            f"No job of sweep {sweep.id} has recorded gradients yet. Try again later."
        )
    return panels


def _pick(asked: str | None, available: list[str], preferred: tuple[str, ...], what: str) -> str:
    if asked is not None:
        if asked not in available:
            raise NotPlottable(
                f"No {what} {asked!r} was recorded; expected one of: {', '.join(available)}."
            )
        return asked
    return next((name for name in preferred if name in available), available[0])
