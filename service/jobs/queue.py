"""Submitting jobs: validate, store, then queue by task name (no TensorFlow on this path)."""

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from service.errors import UnavailableError
from service.jobs.kinds import get_kind, validate_params
from service.jobs.schemas import JobRecord, JobSubmission
from service.jobs.store import JobStore
from service.worker.celery_app import RUN_JOB_TASK

logger = logging.getLogger(__name__)


def submit_job(
    store: JobStore, celery_app: Celery, queue: str, submission: JobSubmission
) -> JobRecord:
    """Validate the submission, store it as queued, and send it to the workers' queue."""
    kind = get_kind(submission.kind)
    return enqueue_job(
        store, celery_app, queue, kind.name, validate_params(kind, submission.params)
    )


def enqueue_job(
    store: JobStore, celery_app: Celery, queue: str, kind: str, params: dict[str, Any]
) -> JobRecord:
    """Store already validated params as a queued job and send it to the workers' queue."""
    record = store.create(kind, params)
    try:
        celery_app.send_task(RUN_JOB_TASK, args=[record.id], queue=queue)
    except OperationalError as error:
        logger.exception("Could not queue job %s", record.id)
        store.mark_failed(record.id, f"Could not be queued: {error}")
        raise UnavailableError(
            f"The job was stored as {record.id!r} but could not be queued ({error}); it is "
            "marked failed. Check that Redis is reachable and submit it again."
        ) from error
    return record
