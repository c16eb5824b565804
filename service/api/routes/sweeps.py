"""Sweeps over a parameter grid with replicates."""

from fastapi import APIRouter, Response, status

from service.api.deps import (
    CeleryDep,
    IdempotencyKey,
    JobStoreDep,
    Limit,
    ModelStoreDep,
    Offset,
    SettingsDep,
    SweepStoreDep,
    WriteAccess,
)
from service.api.errors import ERROR_RESPONSES
from service.sweeps.runs import cancel_sweep, submit_sweep_once, summarize
from service.sweeps.schemas import SweepPage, SweepRecord, SweepSubmission

router = APIRouter(prefix="/sweeps", tags=["sweeps"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SweepRecord,
    dependencies=[WriteAccess],
)
def create_sweep(
    submission: SweepSubmission,
    response: Response,
    jobs: JobStoreDep,
    sweeps: SweepStoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    models: ModelStoreDep,
    idempotency_key: IdempotencyKey = None,
) -> SweepRecord:
    """Queue one job per grid cell and replicate, after validating every one of them (once per
    Idempotency-Key)."""
    record, created = submit_sweep_once(
        jobs, sweeps, celery, settings.job_queue, submission, models, idempotency_key
    )
    response.headers["Location"] = f"/sweeps/{record.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return summarize(record, jobs)


@router.get("", response_model=SweepPage)
def list_sweeps(
    jobs: JobStoreDep,
    sweeps: SweepStoreDep,
    limit: Limit = 20,
    offset: Offset = 0,
) -> SweepPage:
    """List sweeps, newest first."""
    items, total = sweeps.list(limit=limit, offset=offset)
    return SweepPage(
        items=[summarize(item, jobs) for item in items], total=total, limit=limit, offset=offset
    )


@router.get("/{sweep_id}", response_model=SweepRecord)
def get_sweep(sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep) -> SweepRecord:
    """Get a sweep: its jobs and, per cell, the mean and std of final metrics over replicates."""
    return summarize(sweeps.get(sweep_id), jobs)


@router.post("/{sweep_id}/cancel", response_model=SweepRecord, dependencies=[WriteAccess])
def cancel(sweep_id: str, jobs: JobStoreDep, sweeps: SweepStoreDep) -> SweepRecord:
    """Cancel every job of the sweep that has not finished."""
    record = sweeps.get(sweep_id)
    cancel_sweep(record, jobs)
    return summarize(record, jobs)
