"""Dependencies for route handlers, as `Annotated` aliases so signatures read like plain types."""

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from redis import Redis

from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.predict.models import ModelCache, ModelResolver
from service.settings import Settings, get_settings
from service.sweeps.store import SweepStore

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_redis(request: Request) -> Redis:
    return request.app.state.redis


def get_job_store(request: Request) -> JobStore:
    return request.app.state.job_store


def get_model_store(request: Request) -> ModelStore:
    return request.app.state.model_store


def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


def get_model_resolver(request: Request) -> ModelResolver:
    return request.app.state.model_resolver


def get_sweep_store(request: Request) -> SweepStore:
    return request.app.state.sweep_store


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


RedisDep = Annotated[Redis, Depends(get_redis)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
ModelResolverDep = Annotated[ModelResolver, Depends(get_model_resolver)]
SweepStoreDep = Annotated[SweepStore, Depends(get_sweep_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
