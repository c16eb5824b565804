"""Which stored model answers a prediction, and each model loaded once per process."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool

from service.errors import ConflictError, ServiceError
from service.gates import Busy
from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from service.models.store import (
    DIGIT_KINDS,
    FIND_MODEL_SCRIPT,
    ModelRecord,
    ModelStore,
    find_by_reference,
    find_newest,
    found_model,
)
from service.predict.batching import MicroBatcher
from service.predict.runtime import compiled_predict
from service.redis_keys import MODELS_CHANGED_CHANNEL

logger = logging.getLogger(__name__)

LOAD_WAIT_SECONDS = 5.0  # how long a request waits for another request's model load


class WrongModelKind(ServiceError):
    status_code = 422
    code = "wrong_model_kind"


@dataclass(frozen=True)
class Task:
    """What a prediction endpoint does, which model kinds can do it (the first is the default
    kind, whose newest model answers when none is named) and the preset that trains one."""

    name: str
    kinds: tuple[str, ...]
    preset: str


DIGIT_TASK = Task("digit predictions", DIGIT_KINDS, preset="cnn")
SUM_TASK = Task("sums of 10 digits", ("calculator",), preset="calculator-from-cnn")


class ModelResolver:
    """Which stored model answers: the one a reference (id or alias) names, else the newest of
    the task's default kind.

    Answers are cached while this process is subscribed to the model store's change channel:
    every registration and alias change publishes on it and empties the cache, so a new model
    or a moved alias answers the next request without a Redis round trip on every request.
    Unsubscribed (Redis restarting), every request asks Redis (one round trip, on the asyncio
    client, so the event loop never blocks); with Redis unreachable, the last answer for the
    same reference is used, so models already loaded keep serving.
    """

    def __init__(self, redis: AsyncRedis, jobs: JobStore) -> None:
        self.redis = redis
        self.jobs = jobs
        self._find = redis.register_script(FIND_MODEL_SCRIPT)
        # Keyed by the whole task: two tasks may share a name but not the kinds they allow.
        self._cache: dict[tuple[Task, str | None], ModelRecord] = {}
        self._generation = 0  # bumped by every clearing of the cache
        self._subscribed = False
        self._last: dict[tuple[Task, str | None], ModelRecord] = {}

    async def resolve(self, task: Task, reference: str | None) -> ModelRecord:
        key = (task, reference)
        if self._subscribed and key in self._cache:
            return self._cache[key]
        generation = self._generation
        try:
            record = await self._resolve(task, reference)
        except RedisError:
            if key not in self._last:
                raise
            logger.warning(
                "Redis unreachable; %s keep using model %s.", task.name, self._last[key].id
            )
            return self._last[key]
        self._last[key] = record
        # Not if a change arrived while Redis was answering: the answer may predate it.
        if self._subscribed and generation == self._generation:
            self._cache[key] = record
        return record

    def forget(self) -> None:
        """Drop cached answers (the models or aliases changed)."""
        self._generation += 1
        self._cache.clear()

    async def follow_changes(
        self,
        retry_seconds: float = 1.0,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run for the life of the process: keep the cache only while subscribed; await
        `on_change` after each change."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(MODELS_CHANGED_CHANNEL)
                    self.forget()  # anything may have changed while unsubscribed
                    self._subscribed = True
                    await _notify(on_change)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.forget()
                            await _notify(on_change)
            except RedisError as error:
                logger.warning("Not following model changes (%s); retrying.", error)
            finally:
                self._subscribed = False
                self.forget()
            await asyncio.sleep(retry_seconds)

    async def _resolve(self, task: Task, reference: str | None) -> ModelRecord:
        if reference:
            record = found_model(await self._find(args=find_by_reference(reference)), reference)
            if record.kind not in task.kinds:
                raise WrongModelKind(
                    f"Model {reference!r} is a {record.kind!r} model; {task.name} need one of "
                    f"kind {' or '.join(task.kinds)}. List them with GET /models?kind="
                    f"{task.kinds[0]}."
                )
            return record
        raw = await self._find(args=find_newest(task.kinds[0]))
        if not raw:
            raise ConflictError(await run_in_threadpool(self._no_model_message, task))
        return found_model(raw, task.kinds[0])

    def _no_model_message(self, task: Task) -> str:
        kind = task.kinds[0]
        for status in (JobStatus.RUNNING, JobStatus.QUEUED):
            training, _ = self.jobs.list(kind=kind, status=status, limit=1)
            if training:
                job = training[0]
                return (
                    f"No {kind} model is ready for {task.name} yet: training is under way in job "
                    f"{job.id} ({status}). Follow it at GET /jobs/{job.id} and try again when it "
                    f"has succeeded."
                )
        return (
            f"No {kind} model has been trained yet, so there is nothing to answer {task.name}. "
            f"Train one with POST /presets/{task.preset}/submit (or POST /jobs with "
            f'{{"kind": "{kind}"}}), wait for the job to succeed, and try again.'
        )


async def _notify(on_change: Callable[[], Awaitable[None]] | None) -> None:
    """Run `on_change`; its failure is logged, never the end of following changes."""
    if on_change is None:
        return
    try:
        await on_change()
    except Exception:
        logger.exception("Reacting to a change of the stored models failed.")


@dataclass(frozen=True)
class LoadedModel:
    """A stored model in memory, with the batcher its predictions go through."""

    record: ModelRecord
    batcher: MicroBatcher
    size_bytes: int  # its weights


class ModelCache:
    """Models by id, each loaded from the model store once, each behind a `MicroBatcher`, at
    most `max_bytes` of weights in all: loading one beyond that unloads the least recently used
    others, except the pinned ones (`pinned()`: the default models and aliased ones). A model
    larger than the budget alone is still served, alone with the pinned ones.

    An unloaded model's batcher stops once no request holds the model any more, so a request
    that got it just before keeps its answer."""

    def __init__(
        self,
        store: ModelStore,
        max_batch: int,
        max_wait: float,
        max_bytes: int,
        quantized: bool = False,
        pinned: Callable[[], set[str]] = set,
        on_batch: Callable[[ModelRecord, int], None] | None = None,
        on_load: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_bytes = max_bytes
        self.quantized = quantized
        self._pinned = pinned
        self._on_batch = on_batch
        self._on_load = on_load
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()  # changes of `_models`
        self._loading = threading.Lock()

    def peek(self, record: ModelRecord) -> LoadedModel | None:
        """The model if it is already in memory (now its most recently used)."""
        loaded = self._models.get(record.id)
        if loaded is not None:
            with contextlib.suppress(KeyError):  # unloaded meanwhile: still served this once
                self._models.move_to_end(record.id)
        return loaded

    def get(self, record: ModelRecord) -> LoadedModel:
        """The model, loaded now if it is not in memory yet."""
        loaded = self.peek(record)
        if loaded is not None:
            return loaded
        # One load at a time (seconds of CPU each), and a bounded wait for it: a client naming
        # model after model gets 503s, not a pile of threads that starves the thread pool.
        if not self._loading.acquire(timeout=LOAD_WAIT_SECONDS):
            raise Busy(
                f"The service is busy loading another model into memory; model {record.id} is "
                "not loaded yet and nothing was done. Retry in a few seconds."
            )
        try:
            loaded = self._models.get(record.id)  # loaded by the request this one waited for
            if loaded is None:
                loaded = self._load(record)
                with self._lock:
                    self._models[record.id] = loaded
                    self._unload_beyond_budget(keep=record.id)
                    self._report()
            return loaded
        finally:
            self._loading.release()

    def discard(self, model_id: str) -> None:
        """Unload a model (deleted from the store)."""
        with self._lock:
            if self._models.pop(model_id, None) is not None:
                self._report()

    @property
    def loaded_ids(self) -> list[str]:
        """Ids of the models in memory, least recently used first."""
        return list(self._models)

    def close(self) -> None:
        for loaded in list(self._models.values()):
            loaded.batcher.close()

    def _unload_beyond_budget(self, keep: str) -> None:
        # A copy: `peek` reorders the dict from the event loop, without the lock.
        total = sum(loaded.size_bytes for loaded in list(self._models.values()))
        if total <= self.max_bytes:
            return
        try:
            pinned = self._pinned() | {keep}
        except RedisError as error:  # which models are defaults is unknown: unload none
            logger.warning("Over MODEL_CACHE_BYTES, but cannot tell pinned models: %s", error)
            return
        for model_id in list(self._models):
            if total <= self.max_bytes:
                break
            if model_id not in pinned:
                total -= self._models.pop(model_id).size_bytes
                logger.info("Model %s unloaded (MODEL_CACHE_BYTES reached).", model_id)

    def _report(self) -> None:
        if self._on_load is not None:
            self._on_load(len(self._models))

    def _load(self, record: ModelRecord) -> LoadedModel:
        on_batch = self._on_batch
        model = read_stored_model(self.store.file_path(record, "keras"))
        batcher = MicroBatcher(
            compiled_predict(model, self.quantized),
            max_batch=self.max_batch,
            max_wait=self.max_wait,
            on_batch=(lambda rows: on_batch(record, rows)) if on_batch else None,
            name=record.id[:8],
        )
        loaded = LoadedModel(record, batcher, weight_bytes(model))
        # Unloaded and no request holding it: its thread ends and the model's memory is freed.
        weakref.finalize(loaded, batcher.close, wait=False)
        return loaded


def weight_bytes(model: Any) -> int:
    return sum(
        int(np.prod(weight.shape)) * np.dtype(weight.dtype).itemsize for weight in model.weights
    )


@functools.lru_cache(maxsize=2)
def load_stored_model(path: Path) -> Any:
    """A model file from the model store, loaded once per process and path for the plots (the
    batchers hold their own, bounded by the ModelCache)."""
    return read_stored_model(path)


def read_stored_model(path: Path) -> Any:
    """A model file from the model store, loaded in safe mode."""
    # TensorFlow is imported here, on first use, never on the API's queueing path.
    import keras
    import tensorflow as tf

    from training import activations, calculator  # noqa: F401  registers custom objects

    if not tf.config.list_physical_devices("GPU"):
        # One CPU thread per op: TF's pool otherwise spins on every core between calls, taking
        # the CPU that the event loop needs to decode and prepare the next requests. Set
        # before TensorFlow runs anything, whichever endpoint loads the first model.
        with contextlib.suppress(RuntimeError):  # already set by an earlier load
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    return keras.saving.load_model(path, safe_mode=True)
