"""Celery tasks. Thin: they receive an id and hand it to the runner."""

from celery import Task

from service.jobs.task_names import RUN_JOB_TASK
from service.worker import hooks  # noqa: F401  (the worker's start-up and shutdown hooks)
from service.worker.celery_app import celery_app
from service.worker.runner import run_job
from service.worker.time_limits import JobRequest


@celery_app.task(name=RUN_JOB_TASK, bind=True, Request=JobRequest)
def run_job_task(self: Task, job_id: str) -> None:
    """Run the stored job `job_id` in this (fresh) worker child process."""
    run_job(job_id, worker_hostname=self.request.hostname)
