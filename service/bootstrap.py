"""Ready after the first start: train the default models the prediction endpoints need.

On start, for each default model kind with no stored model and no job training one, the API
queues the preset that trains it, as an ordinary job; the calculator starts from the default
digit model, so it is queued once a digit model is stored (the API checks again whenever a
model is registered). Until a model exists, the prediction endpoints answer 409 naming the job
(service.predict.models). Then the newest stored models are loaded into memory, so the first
prediction does not wait for a model to load.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from service.jobs.queue import submit_job
from service.jobs.schemas import JobRecord, JobStatus, JobSubmission
from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.predict.models import DIGIT_TASK, SUM_TASK, ModelCache
from service.presets import PRESETS

logger = logging.getLogger(__name__)

# The default model kind of each prediction task, the preset that trains it, and the kind of
# model that preset starts from (docs/training.md: the calculator reads digits with the cnn).
DEFAULT_MODEL_PRESETS = {DIGIT_TASK.kinds[0]: "cnn", SUM_TASK.kinds[0]: "calculator-from-cnn"}
STARTS_FROM = {SUM_TASK.kinds[0]: DIGIT_TASK.kinds[0]}
LOCK_KEY = "bootstrap:lock"  # several API processes start at once; one of them bootstraps


def queue_missing_models(
    models: ModelStore,
    jobs: JobStore,
    celery_app: Celery,
    queue: str,
    overrides: dict[str, Any],
) -> list[JobRecord]:
    """Queue a training job for each default model kind that has no model and no job training
    one, once the model it starts from exists; `overrides` are merged into each preset's params
    (e.g. fewer epochs for a demo)."""
    if not models.redis.set(LOCK_KEY, "1", nx=True, ex=60):
        return []
    try:
        queued = []
        for kind, preset in DEFAULT_MODEL_PRESETS.items():
            if models.newest(kind) is not None or _in_training(jobs, kind):
                continue
            if kind in STARTS_FROM and models.newest(STARTS_FROM[kind]) is None:
                continue  # queued when that model is registered
            body = PRESETS[preset].body
            params = {**body.get("params", {}), **overrides}
            job = submit_job(
                jobs, celery_app, queue, JobSubmission(kind=body["kind"], params=params)
            )
            logger.info(
                "No %s model yet: queued job %s (preset %s) to train one.", kind, job.id, preset
            )
            queued.append(job)
        return queued
    finally:
        models.redis.delete(LOCK_KEY)


def load_default_models(models: ModelStore, cache: ModelCache) -> list[str]:
    """Load the newest model of each default kind into memory; returns their ids."""
    loaded = []
    for kind in DEFAULT_MODEL_PRESETS:
        record = models.newest(kind)
        if record is not None:
            cache.get(record)
            loaded.append(record.id)
    return loaded


def _in_training(jobs: JobStore, kind: str) -> bool:
    return any(
        jobs.list(kind=kind, status=status, limit=1)[0]
        for status in (JobStatus.QUEUED, JobStatus.RUNNING)
    )
