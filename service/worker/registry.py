"""Liveness records of workers in Redis: written by each worker, read by `GET /health`."""

import json
from typing import Any

from redis import Redis

WORKER_KEY_PREFIX = "workers:"


def worker_key(hostname: str) -> str:
    return WORKER_KEY_PREFIX + hostname


def live_workers(redis: Redis) -> list[dict[str, Any]]:
    """The records of every worker whose liveness record has not expired."""
    keys = list(redis.scan_iter(match=WORKER_KEY_PREFIX + "*", count=100))
    values = redis.mget(keys) if keys else []
    return [json.loads(value) for value in values if value]
