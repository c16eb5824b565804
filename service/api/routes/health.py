"""Service health: Redis reachability and live workers."""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from redis.exceptions import RedisError

from service.api.deps import RedisDep
from service.worker.registry import live_workers

router = APIRouter(tags=["health"])


class RedisHealth(BaseModel):
    reachable: bool
    error: str | None = None


class WorkersHealth(BaseModel):
    live: int
    details: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: RedisHealth
    workers: WorkersHealth


@router.get("/health", response_model=Health)
def health(redis: RedisDep) -> Health:
    """Report whether Redis answers and how many workers are alive ("degraded" if either fails)."""
    try:
        redis.ping()
        workers = live_workers(redis)
        redis_health = RedisHealth(reachable=True)
    except RedisError as error:
        workers, redis_health = [], RedisHealth(reachable=False, error=str(error))
    healthy = redis_health.reachable and bool(workers)
    return Health(
        status="ok" if healthy else "degraded",
        redis=redis_health,
        workers=WorkersHealth(live=len(workers), details=workers),
    )
