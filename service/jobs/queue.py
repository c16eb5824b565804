"""Submitting jobs: validate, store, then queue by task name (no TensorFlow on this path)."""

import logging
import time
from typing import Any

from celery import Celery
from redis.client import Pipeline

from service import redis_keys
from service.errors import NotFoundError
from service.jobs.idempotency import create_once, replayed
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
    return submit_job_once(store, celery_app, queue, submission, models)[0]


def submit_job_once(
    store: JobStore,
    celery_app: Celery,
    queue: str,
    submission: JobSubmission,
    models: ModelStore | None = None,
    idempotency_key: str | None = None,
) -> tuple[JobRecord, bool]:
    """`submit_job`, once per `idempotency_key`: returns the job and whether this call created
    it (False: the job an earlier request with that key created, as it is now)."""
    request = submission.model_dump(mode="json", exclude_unset=True)  # as the client sent it
    earlier = replayed(store.redis, "jobs", idempotency_key, request, redis_keys.job_key)
    if earlier is not None:
        return store.get(earlier), False
    kind = get_kind(submission.kind)
    params = validate_params(kind, submission.params)
    if models is not None:
        check_model_references(kind, params, models)
    job_id = store.new_id()

    def create(pipe: Pipeline) -> str:
        store.add_create(pipe, job_id, kind.name, params, time.time())
        return job_id

    job_id, created = create_once(
        store.redis, "jobs", idempotency_key, request, create, redis_keys.job_key
    )
    if created:
        send_job(celery_app, queue, job_id)
    return store.get(job_id), created


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


def send_job(celery_app: Celery, queue: str, job_id: str) -> bool:
    """Send a stored queued job's message; False when the broker refuses it. The job stays
    queued then, and the reconciler sends it again (service.jobs.reconciler)."""
    try:
        celery_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    except Exception:  # OperationalError, or any other refusal of the broker
        logger.exception("Could not send job %s; the reconciler will send it again.", job_id)
        return False
    return True
