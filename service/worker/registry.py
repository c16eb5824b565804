"""Liveness records of workers in Redis: written by each worker, read by `GET /health`.

- `workers:{hostname}`: the worker's record (JSON), expiring unless refreshed;
- `workers:live`: a sorted set of hostnames by when their record expires, so that reading the
  live workers costs O(workers), whatever else Redis holds (no SCAN).
"""

import json
import time
from typing import Any

from redis import Redis

WORKER_KEY_PREFIX = "workers:"
LIVE_WORKERS_KEY = "workers:live"


def worker_key(hostname: str) -> str:
    return WORKER_KEY_PREFIX + hostname


def publish_worker(redis: Redis, info: dict[str, Any], ttl_ms: int) -> None:
    """Write (or refresh) a worker's record, valid for `ttl_ms`."""
    hostname = info["hostname"]
    pipe = redis.pipeline(transaction=True)
    pipe.set(worker_key(hostname), json.dumps(info), px=ttl_ms)
    pipe.zadd(LIVE_WORKERS_KEY, {hostname: time.time() + ttl_ms / 1000})
    pipe.execute()


def withdraw_worker(redis: Redis, hostname: str) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.delete(worker_key(hostname))
    pipe.zrem(LIVE_WORKERS_KEY, hostname)
    pipe.execute()


def live_workers(redis: Redis) -> list[dict[str, Any]]:
    """The records of every worker whose liveness record has not expired."""
    pipe = redis.pipeline(transaction=True)
    pipe.zremrangebyscore(LIVE_WORKERS_KEY, "-inf", time.time())
    pipe.zrange(LIVE_WORKERS_KEY, 0, -1)
    _, hostnames = pipe.execute()
    values = redis.mget([worker_key(name) for name in hostnames]) if hostnames else []
    return [json.loads(value) for value in values if value]
