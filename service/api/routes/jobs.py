"""Training jobs: submit, inspect, list, cancel and delete; download their TensorBoard logs."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import StreamingResponse

from service.api.deps import (
    ArtifactsDep,
    CeleryDep,
    IdempotencyKey,
    JobStoreDep,
    KindFilter,
    Limit,
    ModelStoreDep,
    Offset,
    SettingsDep,
    WriteAccess,
)
from service.api.errors import ERROR_RESPONSES
from service.jobs import tensorboard
from service.jobs.kinds import JOB_KINDS, get_kind
from service.jobs.queue import submit_job_once
from service.jobs.schemas import JobKindInfo, JobPage, JobRecord, JobStatus, JobSubmission

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRecord,
    dependencies=[WriteAccess],
)
def create_job(
    submission: JobSubmission,
    response: Response,
    store: JobStoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    models: ModelStoreDep,
    idempotency_key: IdempotencyKey = None,
) -> JobRecord:
    """Validate a job's parameters, store it and queue it (once per Idempotency-Key)."""
    record, created = submit_job_once(
        store, celery, settings.job_queue, submission, models, idempotency_key
    )
    response.headers["Location"] = f"/jobs/{record.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return record


@router.get("", response_model=JobPage)
def list_jobs(
    store: JobStoreDep,
    kind: KindFilter = None,
    status: Annotated[JobStatus | None, Query(description="Only jobs with this status.")] = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> JobPage:
    """List jobs, newest first, optionally filtered by kind and status."""
    if kind is not None:
        get_kind(kind, location=("query", "kind"))
    items, total = store.list(kind=kind, status=status, limit=limit, offset=offset)
    return JobPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/kinds", response_model=list[JobKindInfo])
def list_job_kinds() -> list[JobKindInfo]:
    """List the job kinds, each with the JSON Schema of its parameters and their defaults."""
    return [
        JobKindInfo(
            name=kind.name,
            description=kind.description,
            params_schema=kind.params_model.model_json_schema(),
        )
        for kind in JOB_KINDS.values()
    ]


@router.get("/{job_id}", response_model=JobRecord)
def get_job(job_id: str, store: JobStoreDep) -> JobRecord:
    """Get one job: status, progress, result or error, and timestamps."""
    return store.get(job_id)


@router.get("/{job_id}/history", response_model=list[dict[str, Any]])
def get_job_history(job_id: str, store: JobStoreDep) -> list[dict[str, Any]]:
    """Per-epoch losses and metrics (val_ ones too), learning rate and seconds, so far."""
    return store.entries(job_id, "history")


@router.get("/{job_id}/gradients", response_model=list[dict[str, Any]])
def get_job_gradients(job_id: str, store: JobStoreDep) -> list[dict[str, Any]]:
    """Per-layer gradient statistics on a fixed probe batch: untrained (epoch 0), then per epoch."""
    return store.entries(job_id, "gradients")


@router.get(
    "/{job_id}/tensorboard",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "A tar.gz of the job's log folder, entries under `{job_id}/`",
        },
        404: {
            **ERROR_RESPONSES[404],
            "description": "No such job, or one that has no logs and never will (not a Keras "
            "job, it ended without writing any, or they were removed while packed)",
        },
        409: {
            **ERROR_RESPONSES[409],
            "description": "No logs yet (the job is queued or has just started), logs too "
            "large to download (read them on disk), or a log folder that is a link",
        },
        503: {
            **ERROR_RESPONSES[503],
            "description": "Redis unreachable, or as many archives being packed as the API "
            "packs at once (Retry-After)",
        },
    },
)
def download_tensorboard_logs(
    job_id: str, store: JobStoreDep, artifacts: ArtifactsDep
) -> StreamingResponse:
    """Download the job's TensorBoard logs as a tar.gz, as they are so far."""
    record = store.get(job_id)
    # A plain `def`: FastAPI runs it in its thread pool, so packing never blocks the event loop.
    archive, size = tensorboard.archive(artifacts, record)
    return StreamingResponse(
        tensorboard.chunks(archive),
        media_type="application/gzip",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="tensorboard-{job_id}.tar.gz"',
        },
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobRecord,
    responses={202: {"model": JobRecord, "description": "Running; it stops at its next step"}},
    dependencies=[WriteAccess],
)
def cancel_job(job_id: str, store: JobStoreDep, response: Response) -> JobRecord:
    """Cancel a job: a queued one never runs; a running one stops at its next step."""
    record = store.request_cancel(job_id)
    if record.status == JobStatus.RUNNING:
        response.status_code = status.HTTP_202_ACCEPTED
    return record


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Deleted"}},
    dependencies=[WriteAccess],
)
def delete_job(job_id: str, store: JobStoreDep, artifacts: ArtifactsDep) -> Response:
    """Delete a finished job: its record, history, gradients and TensorBoard logs (not the model
    it trained)."""
    artifacts.check_reachable()  # 503 with nothing deleted, rather than orphan logs
    store.delete(job_id)
    tensorboard.remove_logs(artifacts, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
