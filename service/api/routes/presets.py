"""The course's experiments, ready to submit."""

from fastapi import APIRouter, Response, status

from service.api.deps import (
    CeleryDep,
    JobStoreDep,
    ModelStoreDep,
    SettingsDep,
    SweepStoreDep,
    WriteAccess,
)
from service.api.errors import ERROR_RESPONSES
from service.errors import ConflictError, NotFoundError
from service.jobs.kinds import InvalidJobError
from service.jobs.queue import submit_job
from service.jobs.schemas import JobRecord, JobSubmission
from service.presets import PRESETS, Preset
from service.sweeps.runs import submit_sweep, summarize
from service.sweeps.schemas import SweepRecord, SweepSubmission

router = APIRouter(prefix="/presets", tags=["presets"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[Preset])
def list_presets() -> list[Preset]:
    """List the course's experiments, each with the body to POST to /jobs or /sweeps."""
    return list(PRESETS.values())


@router.post(
    "/{name}/submit",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRecord | SweepRecord,
    dependencies=[WriteAccess],
)
def submit_preset(
    name: str,
    response: Response,
    jobs: JobStoreDep,
    sweeps: SweepStoreDep,
    celery: CeleryDep,
    settings: SettingsDep,
    models: ModelStoreDep,
) -> JobRecord | SweepRecord:
    """Submit a preset as it stands: a job, or a sweep of jobs (409 while a model it starts
    from is missing)."""
    preset = PRESETS.get(name)
    if preset is None:
        raise NotFoundError(f"No preset {name!r}. Expected one of: {', '.join(PRESETS)}.")
    try:
        if preset.submit_to == "/sweeps":
            submission = SweepSubmission.model_validate(preset.body)
            record = submit_sweep(jobs, sweeps, celery, settings.job_queue, submission, models)
            response.headers["Location"] = f"/sweeps/{record.id}"
            return summarize(record, jobs)
        job_submission = JobSubmission.model_validate(preset.body)
        job = submit_job(jobs, celery, settings.job_queue, job_submission, models)
    except InvalidJobError as error:
        # A preset is valid as written: what stops it is the stored models (none to start
        # from yet), a state the client changes by training one, not by another request.
        raise ConflictError(f"The preset {name!r} cannot start now. {error.detail}") from None
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
