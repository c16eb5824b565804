"""Runs one stored job inside a worker child process: start it, report its progress, honour
cancellation, and store how it ended. (Its heartbeat comes from the worker's parent process.)"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery.exceptions import SoftTimeLimitExceeded
from redis import Redis
from redis.exceptions import RedisError

from service.artifacts import ArtifactStore, ArtifactStoreUnavailable
from service.jobs import tensorboard
from service.jobs.kinds import JOB_KINDS, JobKind
from service.jobs.schemas import JobRecord, JobStatus
from service.jobs.store import SERIES, JobStore, ModelEntry
from service.models.store import ModelStore
from service.settings import Settings, artifact_store, get_settings
from service.worker.time_limits import soft_limit_reached, time_limit_error, watch_soft_limit
from service.worker.watchdog import ProgressClock
from training.progress import TrainingCancelled

logger = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_RETRY_SECONDS, MAX_REDIS_BACKOFF_SECONDS = 1.0, 10.0
# Bounded waits, so that a Redis unreachable over the network never blocks training for long.
REDIS_OPTIONS = {"socket_connect_timeout": 5, "socket_timeout": 30}


class JobEnded(TrainingCancelled):
    """Raised inside a training run whose job no longer runs (it ended elsewhere)."""


class StoreReporter:
    """A training `ProgressReporter` backed by the job store, that outlives Redis outages.

    Training code may report every step; this writes at most every `interval` seconds (and on
    `flush`) and reads the cancel flag at most that often, so Redis is never the bottleneck.
    History and gradient entries are kept in order until Redis has them: while Redis does not
    answer (a restart, say), training goes on, and every write is tried again at the next
    report; entries are written by index, so a retry never appends one twice.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        interval: float = 0.2,
        clock: ProgressClock | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.clock = clock  # tells the worker's parent the job is not stalled
        self.interval = interval
        self._pending: dict[str, Any] | None = None
        self._unsent: dict[str, list[dict[str, Any]]] = {series: [] for series in SERIES}
        self._sent = dict.fromkeys(SERIES, 0)  # entries of each series Redis has
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._redis_failed_at: float | None = None  # the last failed try, while Redis is down
        self._redis_failures = 0  # tries failed in a row

    def report(self, **progress: Any) -> None:
        self.tick()
        self._pending = progress
        if time.monotonic() - self._last_write >= self.interval:
            self.try_flush()

    def record_epoch(self, entry: dict[str, Any]) -> None:
        self.tick()
        self._unsent["history"].append(entry)
        self.try_flush()

    def record_gradients(self, entry: dict[str, Any]) -> None:
        self._unsent["gradients"].append(entry)
        self.try_flush()

    def check_cancelled(self) -> None:
        self.tick()
        now = time.monotonic()
        if now - self._last_cancel_check < self.interval:
            return
        self._last_cancel_check = now
        if self._waiting_for_redis():
            return
        try:
            status, cancel_requested = self.store.get_raw(self.job_id, "status", "cancel_requested")
        except RedisError as error:
            self._redis_failed(error)
            return
        if status != JobStatus.RUNNING.value:
            # Ended elsewhere: failed as lost (a network partition outlasted its heartbeat) or
            # stalled, or deleted since. Training for it would hold the worker for nothing.
            raise JobEnded(f"Job {self.job_id} is {status or 'deleted'}; training stopped.")
        if cancel_requested == "1":
            raise TrainingCancelled(f"Job {self.job_id} was cancelled.")

    def tick(self) -> None:
        """Tell the worker's parent the job is alive (no-op without a clock)."""
        if self.clock is not None:
            self.clock.tick()

    def _waiting_for_redis(self) -> bool:
        """While Redis does not answer, it is asked again after 1 s, 2 s, ... up to 10 s since
        the last try (each try may wait for a connection), so the outage barely slows training."""
        if self._redis_failed_at is None:
            return False
        backoff = min(MAX_REDIS_BACKOFF_SECONDS, REDIS_RETRY_SECONDS * self._redis_failures)
        return time.monotonic() - self._redis_failed_at < backoff

    def try_flush(self, force: bool = False) -> bool:
        """Write what is pending; False (kept for the next try) when Redis does not answer."""
        self._last_write = time.monotonic()
        if not force and self._waiting_for_redis():
            return False
        try:
            self.flush()
        except RedisError as error:
            self._redis_failed(error)
            return False
        if self._redis_failed_at is not None:
            logger.info("Job %s reaches Redis again; progress and history written.", self.job_id)
            self._redis_failed_at, self._redis_failures = None, 0
        return True

    def flush(self) -> None:
        """Write what is pending, entries first; raises `RedisError` when Redis does not answer
        (nothing is lost: it stays pending)."""
        for series, unsent in self._unsent.items():
            if unsent:
                self.store.append_from(self.job_id, series, self._sent[series], unsent)
                self._sent[series] += len(unsent)
                unsent.clear()
        if self._pending is not None:
            self.store.report_progress(self.job_id, self._pending)
            self._pending = None

    def drain(self, limit_seconds: float) -> bool:
        """Write everything pending, waiting up to `limit_seconds` for Redis to answer (the
        progress clock ticking meanwhile); False when Redis still had not answered."""
        deadline = time.monotonic() + limit_seconds
        while not self.try_flush(force=True):
            if time.monotonic() >= deadline:
                return False
            self.tick()
            time.sleep(REDIS_RETRY_SECONDS)
        return True

    def _redis_failed(self, error: RedisError) -> None:
        first = self._redis_failed_at is None
        self._redis_failed_at = time.monotonic()
        self._redis_failures += 1
        if first:
            logger.warning(
                "Job %s cannot reach Redis (%s); training goes on, progress and history are "
                "kept until it answers.",
                self.job_id,
                error,
            )


def until_redis_answers(
    call: Callable[[], T], deadline: float, what: str, clock: ProgressClock | None = None
) -> T:
    """`call()`, tried again while Redis does not answer, until `deadline` (`time.monotonic()`);
    `clock` ticks at each try, so that the worker's parent never takes the wait for a stall."""
    while True:
        if clock is not None:
            clock.tick()
        try:
            return call()
        except RedisError as error:
            if time.monotonic() > deadline:
                raise
            logger.warning("Could not %s (%s); trying again.", what, error)
            time.sleep(REDIS_RETRY_SECONDS)


def run_job(job_id: str, worker_hostname: str) -> None:
    """Run the stored job `job_id` to its end, recording the outcome in the store.

    `worker_hostname` is the Celery node name, as `GET /health` lists the worker.
    """
    watch_soft_limit()
    settings = get_settings()
    redis = Redis.from_url(settings.redis_url, decode_responses=True, **REDIS_OPTIONS)
    store = JobStore(redis, settings.heartbeat_ttl_seconds)
    models = ModelStore(redis, artifact_store(settings))
    record = store.start(job_id, hostname=worker_hostname, pid=os.getpid())
    if record is None:
        logger.info("Job %s is no longer queued (cancelled or already handled); skipping.", job_id)
        return
    logger.info("Job %s (%s) started with params %s", job_id, record.kind, record.params)
    clock = ProgressClock(job_id)
    try:
        _run_started(
            job_id, record, settings, store, models, StoreReporter(store, job_id, clock=clock)
        )
    finally:
        clock.close()


def _run_started(
    job_id: str,
    record: JobRecord,
    settings: Settings,
    store: JobStore,
    models: ModelStore,
    reporter: StoreReporter,
) -> None:
    """Run a started job's training and record how it ended (training stops early when the job
    is cancelled or has ended elsewhere: `StoreReporter.check_cancelled`)."""
    model_id = None
    try:
        kind = _kind(record)
        model_id = uuid.uuid4().hex if kind.produces_model else None
        if kind.produces_model or kind.uses_tensorflow:
            models.artifacts.check_writable()  # now, not after hours of training
        arguments, started_from = _arguments(kind, record, settings, models, model_id)
        # The prepared-image cache on the artifacts volume (shared by a host's workers, kept
        # across container restarts), unless PREPARED_CACHE_DIR says otherwise.
        os.environ.setdefault(
            "PREPARED_CACHE_DIR", str(settings.local_artifacts_dir / "cache" / "prepared")
        )
        train = _entry_point(kind)
        _describe_run(arguments.get("tensorboard_dir"), record)
        try:
            result = {**train(**arguments, progress=reporter), **started_from}
        finally:
            if kind.uses_tensorflow:
                _store_logs(models.artifacts, job_id)
        if model_id is not None:  # complete in the store before it is registered
            models.upload(model_id, result.get("files", {}), on_file=reporter.tick)
    except JobEnded as error:  # nothing more to write for it (it may even be deleted)
        logger.warning("%s", error)
        _discard(models, model_id)
        return
    except Exception as error:
        status, message = _how_it_ended(job_id, error, settings)
        deadline = time.monotonic() + settings.redis_outage_seconds
        end_job(store, models, reporter, job_id, status, deadline, error=message, model_id=model_id)
        return
    model = None
    if model_id is not None:
        result["model_id"] = model_id
        metrics = {name: value for name, value in result.items() if name.startswith("test_")}
        files = result.get("files", {})
        model = ModelEntry(model_id, kind.name, record.params, metrics, files)
    deadline = time.monotonic() + settings.redis_outage_seconds
    if end_job(store, models, reporter, job_id, JobStatus.SUCCEEDED, deadline, result, model=model):
        logger.info("Job %s succeeded.", job_id)
    else:
        logger.warning("Job %s finished but was no longer running; result not stored.", job_id)


def end_job(
    store: JobStore,
    models: ModelStore,
    reporter: StoreReporter,
    job_id: str,
    status: JobStatus,
    deadline: float,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    model: ModelEntry | None = None,
    model_id: str | None = None,
) -> bool:
    """Write what the reporter still holds, then move the running job to `status` (registering
    `model` in the same step), tried again while Redis does not answer until `deadline` (one
    deadline for both; the progress clock ticks meanwhile). The outcome is written only once
    every history and gradient entry is: a job never reads finished with epochs missing.

    True when the job ended so, also when an earlier try did it and only its reply was lost.
    The files of a model that was not registered (`model`, or `model_id` on failure) are removed,
    never those of a registered one.
    """

    def attempt() -> bool:
        reporter.flush()  # entries first, by index: a retry writes none twice
        if store.finish(job_id, status, result=result, error=error, model=model):
            return True
        # Refused: no longer running. An earlier try may have moved it, its reply lost.
        current, stored = store.get_raw(job_id, "status", "result")
        if current != status.value:
            return False
        if model is None:
            return True
        return (json.loads(stored) if stored else {}).get("model_id") == model.id

    try:
        ended = until_redis_answers(
            attempt, deadline, f"record how job {job_id} ended", reporter.clock
        )
    except RedisError:
        logger.error(
            "Job %s ended (%s) but Redis did not answer within REDIS_OUTAGE_SECONDS; its "
            "outcome and its last progress and history entries are lost, and it will be failed "
            "as lost.",
            job_id, status.value,
        )  # fmt: skip
        if model is None:  # else unknown: an earlier try may have registered it
            _discard(models, model_id)
        raise
    if not (ended and model is not None):
        _discard(models, model.id if model is not None else model_id)
    return ended


def _kind(record: JobRecord) -> JobKind:
    """The record's kind; a `ValueError` saying so for a kind this worker does not know (a job
    queued by a newer API, say)."""
    try:
        return JOB_KINDS[record.kind]
    except KeyError:
        raise ValueError(
            f"This worker knows no job kind {record.kind!r} (it knows: "
            f"{', '.join(sorted(JOB_KINDS))}); upgrade the workers and submit the job again."
        ) from None


def _how_it_ended(
    job_id: str, error: Exception, settings: Settings
) -> tuple[JobStatus, str | None]:
    """The status and error of a job its training function left with `error` (logged)."""
    if isinstance(error, TrainingCancelled):
        logger.info("Job %s cancelled.", job_id)
        return JobStatus.CANCELLED, None
    if isinstance(error, SoftTimeLimitExceeded) or soft_limit_reached():
        logger.warning("Job %s ran past its time limit; stopped (%r).", job_id, error)
        return JobStatus.FAILED, time_limit_error(settings.job_time_limit_seconds)
    logger.exception("Job %s failed.", job_id)
    return JobStatus.FAILED, f"{type(error).__name__}: {error}"


def _arguments(
    kind: JobKind,
    record: JobRecord,
    settings: Settings,
    models: ModelStore,
    model_id: str | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The training function's keyword arguments: params (a stored model's reference replaced
    by its file), the resources it needs, model_dir, tensorboard_dir (Keras kinds); and the ids
    of the stored models that the references named (`{param}_id`), for the result."""
    available = {"mnist_path": settings.mnist_path, "svhn_dir": settings.svhn_dir}
    arguments = {**record.params, **{name: available[name] for name in kind.resources}}
    started_from = {}
    for param, argument in kind.model_references:
        reference = arguments.pop(param, None)  # absent from jobs queued before it existed
        arguments[argument] = None
        if reference:
            stored = models.digit_model(reference)
            arguments[argument] = models.file_path(stored, "keras")
            started_from[f"{param}_id"] = stored.id
    if model_id is not None:
        arguments["model_dir"] = models.model_dir(model_id)
    if kind.uses_tensorflow:
        arguments["tensorboard_dir"] = tensorboard.log_dir(models.artifacts, record.id)
    return arguments, started_from


def _describe_run(log_dir: Path | None, record: JobRecord) -> None:
    """Name the job's TensorBoard run: its kind, id and params (TensorFlow is loaded by now)."""
    if log_dir is not None:
        from training.tensorboard_logs import describe_run

        describe_run(log_dir, f"{record.kind} job {record.id}", record.params)


def _store_logs(artifacts: ArtifactStore, job_id: str) -> None:
    """Upload the job's TensorBoard logs to an object store, however training ended, and drop
    the local copy; a store that refuses costs the logs, never the job (logged)."""
    if not artifacts.remote:
        return
    key = tensorboard.logs_key(job_id)
    if not artifacts.local_path(key).is_dir():
        return
    try:
        artifacts.upload(key)
    except ArtifactStoreUnavailable as error:
        logger.warning("Job %s's TensorBoard logs were not stored: %s", job_id, error)
        return
    shutil.rmtree(artifacts.local_path(key), ignore_errors=True)


def _discard(models: ModelStore, model_id: str | None) -> None:
    if model_id is not None:
        models.discard_files(model_id)


def _entry_point(kind: JobKind) -> Callable[..., Any]:
    """Import the kind's training function, setting up GPUs first for TensorFlow kinds."""
    if kind.uses_tensorflow:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info chatter out of logs
        from training.devices import configure_gpus

        configure_gpus()
    module_name, function_name = kind.entry_point.split(":")
    return getattr(importlib.import_module(module_name), function_name)
