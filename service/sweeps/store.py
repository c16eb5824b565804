"""Sweep records in Redis: `sweep:{id}` (a hash) and `sweeps:all` (ids by creation time)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from service.errors import NotFoundError
from service.redis_keys import SWEEPS_ALL, sweep_key
from service.redis_pages import newest_first
from service.sweeps.schemas import SweepJob, SweepRecord


class SweepStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def add_create(
        pipe: Pipeline,
        sweep_id: str,
        kind: str,
        base_params: dict[str, Any],
        grid: dict[str, list[Any]],
        replicates: int,
        jobs: list[SweepJob],
        now: float,
    ) -> None:
        """Add the commands that store a new sweep to `pipe` (a transaction), so that its jobs'
        records are stored with it, all or nothing."""
        pipe.hset(
            sweep_key(sweep_id),
            mapping={
                "id": sweep_id,
                "kind": kind,
                "base_params": json.dumps(base_params),
                "grid": json.dumps(grid),
                "replicates": replicates,
                "jobs": json.dumps([job.model_dump(exclude={"status"}) for job in jobs]),
                "created_at": repr(now),
            },
        )
        pipe.zadd(SWEEPS_ALL, {sweep_id: now})

    def get(self, sweep_id: str) -> SweepRecord:
        raw = self.redis.hgetall(sweep_key(sweep_id))
        if not raw:
            raise NotFoundError(
                f"No sweep with id {sweep_id!r}. List sweeps with GET /sweeps; ids are the "
                "'id' field that POST /sweeps returned."
            )
        return _decode(raw)

    def list(self, limit: int = 20, offset: int = 0) -> tuple[list[SweepRecord], int]:
        return newest_first(self.redis, SWEEPS_ALL, sweep_key, _decode, limit, offset)


def _decode(raw: dict[str, str]) -> SweepRecord:
    return SweepRecord(
        id=raw["id"],
        kind=raw["kind"],
        base_params=json.loads(raw["base_params"]),
        grid=json.loads(raw["grid"]),
        replicates=int(raw["replicates"]),
        jobs=[SweepJob.model_validate(job) for job in json.loads(raw["jobs"])],
        created_at=datetime.fromtimestamp(float(raw["created_at"]), tz=UTC),
    )
