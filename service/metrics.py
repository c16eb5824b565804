"""Prometheus metrics of one API process, in a registry of its own (GET /metrics)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from service.jobs.schemas import JobStatus

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "digit_service_requests",
            "HTTP requests answered, by method, endpoint (route template), model and status.",
            ["method", "endpoint", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "digit_service_request_seconds",
            "Time from request to response, by method, endpoint and model.",
            ["method", "endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "digit_service_predict_batch_rows",
            "Images per model call, as micro-batching formed them.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "digit_service_models_loaded",
            "Models held in this process's memory for predictions.",
            registry=self.registry,
        )

    def attach_job_store(self, redis: Redis, job_queue: str) -> None:
        """Report jobs by status and the queue's length, read from Redis at each scrape."""
        self.registry.register(JobCollector(redis, job_queue))


class JobCollector(Collector):
    """Jobs by status and the queue's length, read from Redis when scraped."""

    def __init__(self, redis: Redis, job_queue: str) -> None:
        self.redis = redis
        self.job_queue = job_queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for status in JobStatus:
                pipe.zcard(f"jobs:status:{status}")
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
