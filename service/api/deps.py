"""Dependencies for route handlers, as `Annotated` aliases so signatures read like plain types.

They are `async def` although they only read attributes: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request (measured: it halved the
prediction endpoints' throughput)."""

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from redis import Redis

from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.predict.models import ModelCache, ModelResolver
from service.settings import Settings, get_settings
from service.sweeps.store import SweepStore


async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_job_store(request: Request) -> JobStore:
    return request.app.state.job_store


async def get_model_store(request: Request) -> ModelStore:
    return request.app.state.model_store


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


async def get_model_resolver(request: Request) -> ModelResolver:
    return request.app.state.model_resolver


async def get_sweep_store(request: Request) -> SweepStore:
    return request.app.state.sweep_store


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


RedisDep = Annotated[Redis, Depends(get_redis)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
ModelResolverDep = Annotated[ModelResolver, Depends(get_model_resolver)]
SweepStoreDep = Annotated[SweepStore, Depends(get_sweep_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
