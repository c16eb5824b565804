"""The Celery application shared by the API (to queue by task name) and the worker.

Importing this module must stay cheap and must never import TensorFlow: the API imports it on its
queueing path, and the worker's parent process imports it before forking children. The worker's
start-up hooks (`service.worker.hooks`) come with its tasks (`include`), never with this app.
"""

from celery import Celery

from service.jobs.task_names import RUN_JOB_TASK
from service.settings import Settings, get_settings
from service.worker.time_limits import time_limits

__all__ = ["RUN_JOB_TASK", "celery_app", "create_celery_app"]


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("digit_service", broker=settings.redis_url, include=["service.worker.tasks"])
    soft_limit, hard_limit = time_limits(settings.job_time_limit_seconds)
    app.conf.update(
        task_default_queue=settings.job_queue,
        task_ignore_result=True,  # the job store holds every result
        # Pinned: the reconciler reads the queue's messages (JSON, uncompressed) to find lost
        # ones (service.jobs.reconciler).
        task_serializer="json",
        accept_content=["json"],
        task_compression=None,
        # One job per process, one process per GPU: each job gets a fresh child, so TensorFlow's
        # GPU memory is returned when the job ends.
        worker_concurrency=1,
        worker_pool="prefork",
        worker_max_tasks_per_child=1,
        worker_prefetch_multiplier=1,
        # Ack after the run so an idle worker, not a busy one, takes the next job. A message
        # redelivered after a crash is harmless: the runner only starts jobs that are queued.
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        broker_transport_options={"visibility_timeout": 12 * 3600},
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        # Enforced by the worker, from its own JOB_TIME_LIMIT_SECONDS (service.worker.time_limits).
        task_soft_time_limit=soft_limit,
        task_time_limit=hard_limit,
    )
    return app


celery_app = create_celery_app(get_settings())
