"""Liveness records of workers in Redis: written by each worker, read by `GET /health`.

- `workers:{hostname}`: the worker's record (JSON), expiring unless refreshed; it lists the jobs
  whose messages the worker holds (`holding`) and for how long it has held some while running
  none (`holding_idle_seconds`, see `IdleHolding`), which the reconciler reads;
- `workers:live`: a sorted set of hostnames by when their record expires, so that reading the
  live workers costs O(workers), whatever else Redis holds (no SCAN).
"""

import json
import time
from collections.abc import Callable
from typing import Any

from redis import Redis

from service.redis_keys import LIVE_WORKERS, worker_key

# Both by Redis' own clock (TIME), so workers and API processes whose clocks differ agree.
PUBLISH_SCRIPT = """
local now = redis.call('TIME')
local expires = tonumber(now[1]) + tonumber(now[2]) / 1e6 + tonumber(ARGV[3]) / 1000
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], expires, ARGV[1])
"""
LIVE_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(now[1]) + tonumber(now[2]) / 1e6)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def publish_worker(redis: Redis, info: dict[str, Any], ttl_ms: int) -> None:
    """Write (or refresh) a worker's record, valid for `ttl_ms`."""
    hostname = info["hostname"]
    redis.eval(PUBLISH_SCRIPT, 2, worker_key(hostname), LIVE_WORKERS,
               hostname, json.dumps(info), ttl_ms)  # fmt: skip


def withdraw_worker(redis: Redis, hostname: str) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.delete(worker_key(hostname))
    pipe.zrem(LIVE_WORKERS, hostname)
    pipe.execute()


def live_workers(redis: Redis) -> list[dict[str, Any]]:
    """The records of every worker whose liveness record has not expired."""
    hostnames = redis.eval(LIVE_SCRIPT, 1, LIVE_WORKERS)
    values = redis.mget([worker_key(name) for name in hostnames]) if hostnames else []
    return [json.loads(value) for value in values if value]


class IdleHolding:
    """Seconds a worker has held job messages while running no job, by its monotonic clock.

    A job waits in a worker's hands only behind one it runs (bounded by the stall and time
    limits); holding jobs and running none for long means its pool is stuck before starting
    them (a child stopped or hung before it accepted its job), which no watchdog sees.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._since: float | None = None

    def seconds(self, holding: bool, running: bool) -> float:
        if not holding or running:
            self._since = None
            return 0.0
        now = self.clock()
        if self._since is None:
            self._since = now
        return now - self._since
