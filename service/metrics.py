"""Prometheus metrics of the API (GET /metrics).

One API process keeps them in a registry of its own. Several (API_WORKERS > 1, started by
service.api_server) write them to files in PROMETHEUS_MULTIPROC_DIR, and a scrape of any of
them adds up all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from service.jobs.schemas import JobStatus
from service.redis_keys import jobs_by_status

logger = logging.getLogger(__name__)

METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    def __init__(self) -> None:
        self.multiprocess = METRICS_DIR_VARIABLE in os.environ
        # In multiprocess mode the metrics live in files; registering them too would count
        # this process twice.
        self._own = CollectorRegistry()
        registry = None if self.multiprocess else self._own
        self._job_collector: JobCollector | None = None
        self.requests = Counter(
            "digit_service_requests",
            "HTTP requests answered, by method, endpoint (route template), model and status.",
            ["method", "endpoint", "model", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "digit_service_request_seconds",
            "Time from request to response, by method, endpoint and model.",
            ["method", "endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "digit_service_predict_batch_rows",
            "Images per model call, as micro-batching formed them.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.models_loaded = Gauge(
            "digit_service_models_loaded",
            "Models held in memory for predictions (summed over the API's processes).",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def attach_job_store(self, redis: Redis, job_queue: str) -> None:
        """Report jobs by status and the queue's length, read from Redis at each scrape."""
        self._job_collector = JobCollector(redis, job_queue)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format."""
        registry = CollectorRegistry() if self.multiprocess else self._own
        if self.multiprocess:
            multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
        if self._job_collector is not None:
            jobs = CollectorRegistry()
            jobs.register(self._job_collector)
            text += generate_latest(jobs)
        return text

    def process_exiting(self) -> None:
        """Drop this process's live gauges (multiprocess mode)."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())


class JobCollector(Collector):
    """Jobs by status and the queue's length, read from Redis when scraped."""

    def __init__(self, redis: Redis, job_queue: str) -> None:
        self.redis = redis
        self.job_queue = job_queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for status in JobStatus:
                pipe.zcard(jobs_by_status(status))
            pipe.llen(self.job_queue)
            *counts, queued_messages = pipe.execute()
        except RedisError as error:
            logger.warning("Job metrics skipped: Redis is unreachable (%s).", error)
            return
        jobs = GaugeMetricFamily(
            "digit_service_jobs", "Jobs in the job store, by status.", labels=["status"]
        )
        for status, count in zip(JobStatus, counts, strict=True):
            jobs.add_metric([status.value], count)
        yield jobs
        yield GaugeMetricFamily(
            "digit_service_queue_length",
            "Training messages waiting in the Celery queue for a worker.",
            value=queued_messages,
        )
