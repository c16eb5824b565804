"""Submitting jobs: validate, store, then queue by task name (no TensorFlow on this path)."""

import logging
from typing import Any

from celery import Celery
from redis.exceptions import RedisError

from service.errors import NotFoundError, UnavailableError
from service.jobs.kinds import InvalidJobError, JobKind, check_size, get_kind, validate_params
from service.jobs.limits import digit_network
from service.jobs.schemas import JobRecord, JobSubmission
from service.jobs.store import JobStore
from service.jobs.task_names import RUN_JOB_TASK
from service.models.store import ModelStore

logger = logging.getLogger(__name__)


def submit_job(
    store: JobStore,
    celery_app: Celery,
    queue: str,
    submission: JobSubmission,
    models: ModelStore | None = None,
) -> JobRecord:
    """Validate the submission (with `models`, also that the stored models its params name
    exist and fit), store it as queued, and send it to the workers' queue."""
    kind = get_kind(submission.kind)
    params = validate_params(kind, submission.params)
    if models is not None:
        check_model_references(kind, params, models)
    return enqueue_job(store, celery_app, queue, kind.name, params)


def check_model_references(kind: JobKind, params: dict[str, Any], models: ModelStore) -> None:
    """`InvalidJobError` when a param names a stored model that is missing or of a kind that
    cannot serve, or one that makes the job too large to train (the worker looks it up again
    when the job starts: it may change meanwhile)."""
    for param, _ in kind.model_references:
        if not params.get(param):
            continue
        try:
            stored = models.digit_model(params[param])
        except (ValueError, NotFoundError) as error:
            location = ["body", "params", param]
            raise InvalidJobError(
                f"Invalid parameters for job kind {kind.name!r}: {param}: {error}",
                [{"loc": location, "msg": str(error), "type": "model_reference"}],
            ) from None
        check_size(kind, params, digit_network(stored.kind, stored.params))


def enqueue_job(
    store: JobStore, celery_app: Celery, queue: str, kind: str, params: dict[str, Any]
) -> JobRecord:
    """Store already validated params as a queued job and send it to the workers' queue."""
    record = store.create(kind, params)
    send_job(store, celery_app, queue, record.id)
    return record


def send_job(store: JobStore, celery_app: Celery, queue: str, job_id: str) -> None:
    """Send a stored queued job's message; `UnavailableError` (the job marked failed, or left
    to the reconciler when even that fails) when it cannot be sent."""
    try:
        celery_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    except Exception as error:  # OperationalError, or any other refusal of the broker
        logger.exception("Could not queue job %s", job_id)
        try:
            store.mark_failed(job_id, f"Could not be queued: {error}")
        except RedisError:
            # Left queued with no message: the reconciler sends it again or fails it.
            raise UnavailableError(
                f"The job was stored as {job_id!r} but could not be queued ({error}); the "
                f"service sends it again once Redis answers: see GET /jobs/{job_id}."
            ) from error
        raise UnavailableError(
            f"The job was stored as {job_id!r} but could not be queued ({error}); it is "
            "marked failed. Check that Redis is reachable and submit it again."
        ) from error
