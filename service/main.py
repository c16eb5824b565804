"""The FastAPI application: routers, error handlers, and what lives for the whole process."""

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator

import cv2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from kombu.exceptions import OperationalError
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from service.api import openapi
from service.api.access import AccessMiddleware
from service.api.body_limit import BodyLimitMiddleware
from service.api.deps import ReadAccess
from service.api.errors import register_exception_handlers
from service.api.exposure import check_exposure
from service.api.metrics_middleware import RequestMetricsMiddleware
from service.api.request_id import RequestIdMiddleware
from service.api.routes import (
    health,
    jobs,
    kserve_v2,
    metrics,
    models,
    plots,
    predict,
    presets,
    sweeps,
    tf_serving,
    web,
)
from service.bootstrap import load_default_models, queue_missing_models
from service.errors import ServiceError
from service.gates import Gate
from service.jobs.reconciler import Reconciler
from service.jobs.store import JobStore
from service.metrics import ServiceMetrics
from service.models.store import ModelStore
from service.predict.models import DIGIT_TASK, SUM_TASK, ModelCache, ModelResolver
from service.predict.serving import Serving
from service.settings import Settings, artifact_store, get_settings
from service.sweeps.store import SweepStore
from service.worker.celery_app import celery_app

logger = logging.getLogger(__name__)
DEFAULT_KINDS = (DIGIT_TASK.kinds[0], SUM_TASK.kinds[0])  # their newest models stay loaded
REDIS_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5, "health_check_interval": 30}


async def reconcile_forever(reconciler: Reconciler, interval: float) -> None:
    """Every `interval` seconds, fail running jobs whose worker stopped sending heartbeats;
    every reconciler period, a pass over queued jobs and default models
    (service.jobs.reconciler)."""
    last_pass = -math.inf
    while True:
        try:
            await run_in_threadpool(reconciler.fail_lost_jobs)
            if time.monotonic() - last_pass >= reconciler.period_seconds:
                last_pass = time.monotonic()
                await run_in_threadpool(reconciler.run_pass)
        except (RedisError, OperationalError) as error:
            logger.warning("Could not reconcile jobs: %s", error)
        except Exception:
            logger.exception("The reconciler's pass failed; trying again.")
        await asyncio.sleep(interval)


def start_serving(app: FastAPI, settings: Settings) -> None:
    """Queue the default models' training if there are none, and load those there are (in a
    thread of its own, so the API answers while a model loads)."""
    queue_default_models(app, settings)
    if settings.preload_models:
        threading.Thread(
            target=_preload, args=(app.state.model_store, app.state.model_cache), daemon=True
        ).start()


def follow_model_changes(app: FastAPI, settings: Settings) -> None:
    """After any change of the stored models (in any process): unload deleted ones, and queue
    the training of missing default models."""
    cache: ModelCache = app.state.model_cache
    try:
        for model_id in cache.loaded_ids:
            if not app.state.model_store.exists(model_id):
                cache.discard(model_id)
    except RedisError as error:
        logger.warning("Could not check for deleted models: %s", error)
    queue_default_models(app, settings)


def queue_default_models(app: FastAPI, settings: Settings) -> None:
    """Queue the training of missing default models (at start, and after every change of the
    stored models: the calculator waits for a digit model to start from)."""
    if not settings.bootstrap_models:
        return
    try:
        queue_missing_models(
            app.state.model_store,
            app.state.job_store,
            app.state.celery,
            settings.job_queue,
            settings.bootstrap_overrides,
            settings.bootstrap_attempts,
        )
    except (RedisError, ServiceError) as error:
        logger.warning("Could not check for default models to train: %s", error)


def _preload(models: ModelStore, cache: ModelCache) -> None:
    try:
        for model_id in load_default_models(models, cache):
            logger.info("Model %s loaded for predictions.", model_id)
    except Exception:  # a model that cannot load now fails again, with its reason, on request
        logger.exception("Could not preload the default models.")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = get_settings()
    check_exposure(settings)  # also when uvicorn runs the app without service.api_server
    # Requests are prepared one per core already (API_WORKERS processes); OpenCV's own pool
    # of threads only spun between its calls, taking half a core from the event loop.
    cv2.setNumThreads(1)
    redis = Redis.from_url(settings.redis_url, decode_responses=True, **REDIS_OPTIONS)
    app.state.redis = redis
    app.state.job_store = JobStore(redis, settings.heartbeat_ttl_seconds)
    app.state.model_store = ModelStore(redis, artifact_store(settings))
    app.state.sweep_store = SweepStore(redis)
    # Predictions look their model up on the event loop, through the asyncio client.
    async_redis = AsyncRedis.from_url(settings.redis_url, decode_responses=True, **REDIS_OPTIONS)
    app.state.model_resolver = ModelResolver(async_redis, app.state.job_store)
    metrics: ServiceMetrics = app.state.metrics
    metrics.attach_job_store(redis, settings.job_queue)
    app.state.model_cache = ModelCache(
        app.state.model_store,
        max_batch=settings.predict_max_batch,
        max_wait=settings.predict_max_wait_ms / 1000,
        max_bytes=settings.model_cache_bytes,
        quantized=settings.serve_quantized,
        pinned=lambda: app.state.model_store.pinned_ids(DEFAULT_KINDS),
        on_batch=lambda record, rows: metrics.batch_size.labels(record.id).observe(rows),
        on_load=metrics.models_loaded.set,
    )
    app.state.serving = Serving(
        app.state.model_resolver, app.state.model_cache, settings, app.state.prepare_gate
    )
    app.state.celery = celery_app
    await run_in_threadpool(start_serving, app, settings)
    reconciler = Reconciler(
        app.state.job_store,
        celery_app,
        settings.job_queue,
        grace_seconds=settings.queued_grace_seconds,
        max_resends=settings.max_resends,
        period_seconds=settings.reconcile_seconds,
        held_idle_seconds=settings.held_idle_seconds,
        after_pass=lambda: queue_default_models(app, settings),
    )
    background = [
        asyncio.create_task(reconcile_forever(reconciler, settings.heartbeat_seconds)),
        asyncio.create_task(
            app.state.model_resolver.follow_changes(
                on_change=lambda: run_in_threadpool(follow_model_changes, app, settings)
            )
        ),
    ]
    try:
        yield
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        app.state.model_cache.close()
        metrics.process_exiting()
        await async_redis.aclose()
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
    app.state.metrics = ServiceMetrics()
    app.state.prepare_gate = Gate(
        "preparing large images", get_settings().prepare_slots, "PREPARE_SLOTS"
    )
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=get_settings().max_request_bytes,
        max_json_bytes=min(get_settings().max_json_bytes, get_settings().max_request_bytes),
        max_images=get_settings().max_images_per_request,
    )
    app.add_middleware(AccessMiddleware, settings=get_settings())  # before any body is read
    app.add_middleware(RequestIdMiddleware)
    # Predictions first: a request is matched against the routes in order (0.3 ms a
    # prediction when they came after every other router's routes).
    for router in (predict, tf_serving, kserve_v2):
        app.include_router(router.router, dependencies=[ReadAccess])
    app.include_router(health.router)  # open: healthchecks carry no token
    app.include_router(kserve_v2.health_router)  # open, as /health
    app.include_router(web.router)  # the page itself; its requests carry no token
    for router in (jobs, models, sweeps, presets, plots, metrics):
        app.include_router(router.router, dependencies=[ReadAccess])
    app.mount("/static", StaticFiles(directory=web.STATIC_DIR), name="static")
    openapi.install(app)
    return app


app = create_app()
