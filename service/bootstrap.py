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

from service import redis_keys
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
LOCK_KEY = redis_keys.BOOTSTRAP_LOCK  # several API processes start at once; one bootstraps


def queue_missing_models(
    models: ModelStore,
    jobs: JobStore,
    celery_app: Celery,
    queue: str,
    overrides: dict[str, Any],
    attempts: int,
) -> list[JobRecord]:
    """Queue a training job for each default model kind that has no model and no job training
    one, once the model it starts from exists; `overrides` are merged into each preset's params
    (e.g. fewer epochs for a demo). Called again by the reconciler, this re-submits a default
    model whose job failed, up to `attempts` jobs per kind until one succeeds."""
    if not models.redis.set(LOCK_KEY, "1", nx=True, ex=60):
        return []
    try:
        queued = []
        for kind, preset in DEFAULT_MODEL_PRESETS.items():
            tried = redis_keys.bootstrap_attempts_key(kind)
            if models.newest(kind) is not None:
                models.redis.delete(tried)
                continue
            if _in_training(jobs, kind):
                continue
            if kind in STARTS_FROM and models.newest(STARTS_FROM[kind]) is None:
                continue  # queued when that model is registered
            made = int(models.redis.get(tried) or 0)
            if made >= attempts:
                if kind in _GAVE_UP:
                    continue
                _GAVE_UP.add(kind)
                logger.error(
                    "No %s model: its %d bootstrap jobs failed (see their errors in GET "
                    "/jobs?kind=%s); not trying again. Submit preset %s once the cause is "
                    "fixed, or restart the API with BOOTSTRAP_ATTEMPTS raised.",
                    kind, made, kind, preset,
                )  # fmt: skip
                continue
            body = PRESETS[preset].body
            params = {**body.get("params", {}), **overrides}
            job = submit_job(
                jobs, celery_app, queue, JobSubmission(kind=body["kind"], params=params)
            )
            models.redis.incr(tried)
            logger.info(
                "No %s model yet: queued job %s (preset %s, attempt %d of %d) to train one.",
                kind, job.id, preset, made + 1, attempts,
            )  # fmt: skip
            queued.append(job)
        return queued
    finally:
        models.redis.delete(LOCK_KEY)


_GAVE_UP: set[str] = set()  # kinds this process said it gave up on (said once)


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
    """Whether a job of `kind` is queued or running: counted, stopping at the first (a backlog of
    other kinds costs nothing to read)."""
    return any(
        jobs.redis.zintercard(2, [redis_keys.jobs_by_kind(kind), redis_keys.jobs_by_status(status)],
                              limit=1)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING)
    )  # fmt: skip
