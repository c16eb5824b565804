"""The FastAPI application: routers, error handlers, and what lives for the whole process."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from redis import Redis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from service.api.errors import register_exception_handlers
from service.api.routes import health, jobs, models, predict, presets, sweeps
from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.predict.models import ModelCache
from service.settings import Settings, get_settings
from service.sweeps.store import SweepStore
from service.worker.celery_app import celery_app

logger = logging.getLogger(__name__)


async def fail_lost_jobs_forever(store: JobStore, interval: float) -> None:
    """Every `interval` seconds, fail running jobs whose worker stopped sending heartbeats."""
    while True:
        try:
            for job_id in await run_in_threadpool(store.fail_lost_jobs):
                logger.warning("Job %s lost its worker; marked failed.", job_id)
        except RedisError as error:
            logger.warning("Could not check for lost jobs: %s", error)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = get_settings()
    redis = Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )
    app.state.redis = redis
    app.state.job_store = JobStore(redis, settings.heartbeat_ttl_seconds)
    app.state.model_store = ModelStore(redis, settings.artifacts_dir)
    app.state.sweep_store = SweepStore(redis)
    app.state.model_cache = ModelCache(app.state.model_store)
    app.state.celery = celery_app
    reaper = asyncio.create_task(
        fail_lost_jobs_forever(app.state.job_store, settings.heartbeat_seconds)
    )
    try:
        yield
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper
        redis.close()


def create_app() -> FastAPI:
    logging.basicConfig(level=get_settings().log_level.upper())
    app = FastAPI(
        title="Digit service",
        description=(
            "Train, inspect and serve handwritten-digit models. Training runs as jobs on "
            "Celery workers; job records live in Redis."
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    register_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(models.router)
    app.include_router(sweeps.router)
    app.include_router(presets.router)
    app.include_router(predict.router)
    return app


app = create_app()
