"""Submitting a sweep (every cell validated, then the sweep and its jobs stored in one
transaction, then their messages sent), summarizing its cells, and cancelling what is left of
it."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

from celery import Celery
from redis.client import Pipeline

from service import redis_keys
from service.errors import ConflictError
from service.jobs.idempotency import create_once, replayed
from service.jobs.kinds import (
    InvalidJobError,
    JobKind,
    get_kind,
    validate_param,
    validate_params,
)
from service.jobs.queue import check_model_references, send_job
from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.sweeps.schemas import (
    MAX_SWEEP_JOBS,
    CellSummary,
    MetricSummary,
    SweepJob,
    SweepRecord,
    SweepSubmission,
)
from service.sweeps.store import SweepStore

# History fields that describe the run rather than the model's quality.
_NOT_METRICS = {"epoch", "seconds", "learning_rate"}


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first parameter varying slowest."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def submit_sweep(
    jobs: JobStore,
    sweeps: SweepStore,
    celery: Celery,
    queue: str,
    submission: SweepSubmission,
    models: ModelStore | None = None,
) -> SweepRecord:
    """Validate every cell and replicate (with `models`, also the stored models their params
    name, and the size of a job that fine-tunes one), then store the sweep with one queued job
    each, all at once, then send the jobs."""
    return submit_sweep_once(jobs, sweeps, celery, queue, submission, models)[0]


def submit_sweep_once(
    jobs: JobStore,
    sweeps: SweepStore,
    celery: Celery,
    queue: str,
    submission: SweepSubmission,
    models: ModelStore | None = None,
    idempotency_key: str | None = None,
) -> tuple[SweepRecord, bool]:
    """`submit_sweep`, once per `idempotency_key`: returns the sweep and whether this call
    created it (False: the sweep an earlier request with that key created)."""
    request = submission.model_dump(mode="json", exclude_unset=True)  # as the client sent it
    earlier = replayed(jobs.redis, "sweeps", idempotency_key, request, redis_keys.sweep_key)
    if earlier is not None:
        return sweeps.get(earlier), False
    kind = get_kind(submission.base.kind, location=("body", "base", "kind"))
    _check_grid(kind, submission)
    planned = []
    for cell in expand_grid(submission.grid):
        for replicate in range(submission.replicates):
            params = _replicate_params(kind, submission.base.params | cell, replicate)
            try:
                validated = validate_params(kind, params)
                if models is not None:
                    check_model_references(kind, validated, models)
            except InvalidJobError as error:
                raise InvalidJobError(f"In the cell {cell}: {error.detail}", error.errors) from None
            planned.append((cell, replicate, validated))

    sweep_id = sweeps.new_id()
    sweep_jobs = [
        SweepJob(job_id=jobs.new_id(), cell=cell, replicate=replicate)
        for cell, replicate, _ in planned
    ]

    def create(pipe: Pipeline) -> str:
        # The sweep and every job of it, in one transaction: never a job without its sweep.
        now = time.time()
        sweeps.add_create(pipe, sweep_id, kind.name, submission.base.params, submission.grid,
                          submission.replicates, sweep_jobs, now)  # fmt: skip
        for sweep_job, (_, _, params) in zip(sweep_jobs, planned, strict=True):
            jobs.add_create(pipe, sweep_job.job_id, kind.name, params, now)
        return sweep_id

    sweep_id, created = create_once(
        jobs.redis, "sweeps", idempotency_key, request, create, redis_keys.sweep_key
    )
    if created:
        for sweep_job in sweep_jobs:
            if not send_job(celery, queue, sweep_job.job_id):
                break  # the rest stay queued too: the reconciler sends them all
    return sweeps.get(sweep_id), created


def _check_grid(kind: JobKind, submission: SweepSubmission) -> None:
    fields = kind.params_model.model_fields
    for name in submission.grid.keys() & submission.base.params.keys() & fields.keys():
        # Every cell replaces it, so no cell's params check it.
        value = submission.base.params[name]
        validate_param(kind, name, value, ["body", "base", "params", name])
    for name, values in submission.grid.items():
        if name not in fields:
            _invalid_grid(
                name, f"{kind.name!r} has no parameter {name!r}; it has: {', '.join(fields)}"
            )
        if not values:
            _invalid_grid(name, f"grid.{name} lists no values; give at least one")
    total = math.prod(len(values) for values in submission.grid.values()) * submission.replicates
    if total > MAX_SWEEP_JOBS:
        _invalid_grid(
            None,
            f"this sweep would start {total} jobs, more than the {MAX_SWEEP_JOBS} allowed; "
            "use fewer values or replicates, or split it into several sweeps",
        )


def _invalid_grid(name: str | None, message: str) -> None:
    location = ["body", "grid", *([name] if name else [])]
    raise InvalidJobError(
        f"Invalid sweep: {message}.", [{"loc": location, "msg": message, "type": "invalid_grid"}]
    )


def _replicate_params(kind: JobKind, params: dict[str, Any], replicate: int) -> dict[str, Any]:
    """Replicate r of a seeded kind runs with seed (given seed or 0) + r: repeatable, distinct."""
    seed = params.get("seed")
    if "seed" not in kind.params_model.model_fields:
        return params
    if seed is not None and type(seed) is not int:
        return params  # not a seed ({}, "1", true): validation refuses it and says why
    return params | {"seed": (seed or 0) + replicate}


def summarize(record: SweepRecord, jobs: JobStore) -> SweepRecord:
    """Fill in each job's status, the sweep's status and every cell's final metrics."""
    ids = [job.job_id for job in record.jobs]
    by_id = {job.id: job for job in jobs.get_many(ids)}
    last_epochs = dict(zip(ids, jobs.last_entries(ids, "history"), strict=True))
    cells: dict[str, CellSummary] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for sweep_job in record.jobs:
        job = by_id.get(sweep_job.job_id)
        sweep_job.status = job.status if job else None
        key = repr(sorted(sweep_job.cell.items()))
        summary = cells.setdefault(
            key, CellSummary(cell=sweep_job.cell, jobs=0, succeeded=0, metrics={})
        )
        summary.jobs += 1
        if job is None or job.status != JobStatus.SUCCEEDED:
            continue
        summary.succeeded += 1
        for name, value in _final_metrics(job.result, last_epochs[job.id]).items():
            values.setdefault(key, {}).setdefault(name, []).append(value)
    for key, summary in cells.items():
        summary.metrics = {name: _summary(series) for name, series in values.get(key, {}).items()}
    record.cells = list(cells.values())
    statuses = [job.status for job in record.jobs]
    if all(status is None or status.is_finished for status in statuses):
        record.status = "finished"
    elif JobStatus.RUNNING in statuses or any(s and s.is_finished for s in statuses):
        record.status = "running"
    else:
        record.status = "queued"
    return record


def _final_metrics(result: Any, last_epoch: dict[str, Any] | None) -> dict[str, float]:
    """The result's numeric scalars, and the last epoch's metrics as final_<name>."""
    metrics = {
        name: float(value)
        for name, value in (result or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    for name, value in (last_epoch or {}).items():
        if name not in _NOT_METRICS and isinstance(value, int | float):
            metrics[f"final_{name}"] = float(value)
    return metrics


def _summary(series: list[float]) -> MetricSummary:
    mean = sum(series) / len(series)
    variance = sum((value - mean) ** 2 for value in series) / len(series)
    return MetricSummary(mean=mean, std=math.sqrt(variance), count=len(series))


def cancel_sweep(record: SweepRecord, jobs: JobStore) -> None:
    """Cancel every job of the sweep that has not finished."""
    for sweep_job in record.jobs:
        try:
            jobs.request_cancel(sweep_job.job_id)
        except ConflictError:
            continue  # already finished
