"""The names of the Redis keys the service's jobs, models, sweeps, workers, metrics and
reconciler use, in one place (with the two of Celery's own the reconciler reads). Lua scripts get
them as KEYS or are built from these prefixes. The strings never change: stored data is read by
them.

Ids reaching these functions have been checked (32 hex digits), so no name can reach another
record's key (`{id}:history` would name a job's list).
"""

from __future__ import annotations

import hashlib

# Jobs
JOB_PREFIX = "job:"
JOBS_ALL = "jobs:all"
JOBS_BY_KIND_PREFIX = "jobs:kind:"
JOBS_BY_STATUS_PREFIX = "jobs:status:"
JOB_SERIES = ("history", "gradients")


def job_key(job_id: str) -> str:
    """A hash: the job's record."""
    return JOB_PREFIX + job_id


def job_heartbeat_key(job_id: str) -> str:
    """A key with a TTL: the running job's worker is alive while it exists."""
    return f"{JOB_PREFIX}{job_id}:heartbeat"


def job_series_key(job_id: str, series: str) -> str:
    """A list of JSON entries, one per epoch: `history` or `gradients`."""
    if series not in JOB_SERIES:
        raise ValueError(f"Unknown series {series!r}; expected one of {JOB_SERIES}.")
    return f"{JOB_PREFIX}{job_id}:{series}"


def jobs_by_kind(kind: str) -> str:
    """A sorted set of job ids by creation time."""
    return JOBS_BY_KIND_PREFIX + kind


def jobs_by_status(status: str) -> str:
    """A sorted set of job ids by creation time."""
    return JOBS_BY_STATUS_PREFIX + status


# Models (service.models.store writes them; a job's success registers its model atomically)
MODEL_PREFIX = "model:"
MODELS_ALL = "models:all"
MODELS_BY_KIND_PREFIX = "models:kind:"
MODELS_ALIASES = "models:aliases"  # a hash: alias name -> model id
MODELS_CHANGED_CHANNEL = "models:changed"  # published on every registration and alias change


def model_key(model_id: str) -> str:
    """A hash: the model's record."""
    return MODEL_PREFIX + model_id


def models_by_kind(kind: str) -> str:
    """A sorted set of model ids by creation time, newest last."""
    return MODELS_BY_KIND_PREFIX + kind


# Sweeps
SWEEP_PREFIX = "sweep:"
SWEEPS_ALL = "sweeps:all"


def sweep_key(sweep_id: str) -> str:
    return SWEEP_PREFIX + sweep_id


# Workers (service.worker.registry)
WORKER_PREFIX = "workers:"
LIVE_WORKERS = "workers:live"


def worker_key(hostname: str) -> str:
    return WORKER_PREFIX + hostname


# Celery's (kombu's Redis transport defaults): messages taken by a worker and not yet acknowledged,
# which the reconciler reads
CELERY_UNACKED = "unacked"  # a hash: delivery tag -> [message, exchange, routing key]
CELERY_UNACKED_INDEX = "unacked_index"  # a sorted set: delivery tag by when it was taken

# Coordination between API processes
BOOTSTRAP_LOCK = "bootstrap:lock"
RECONCILER_LOCK = "reconciler:lock"


def bootstrap_attempts_key(kind: str) -> str:
    """A counter of the bootstrap jobs queued for a default model kind that has no model."""
    return f"bootstrap:attempts:{kind}"


def idempotency_key(scope: str, client_key: str) -> str:
    """What a client's `Idempotency-Key` on `scope` (`jobs`, `sweeps`) first created; the key is
    hashed, so any string the client sends names one fixed-size key."""
    digest = hashlib.sha256(client_key.encode()).hexdigest()
    return f"idempotency:{scope}:{digest}"
