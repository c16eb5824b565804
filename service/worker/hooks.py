"""Worker start-up and shutdown, in the worker's parent process.

On start the worker asks a short-lived subprocess which GPUs TensorFlow sees (the parent must
never import TensorFlow: it is not fork-safe and would hold GPU memory) and logs the answer.
While it runs, a thread in the parent keeps the worker's liveness record in Redis (counted by
`GET /health`) and the heartbeats of the jobs its pool is running, and ends and kills jobs that
stall or do not stop when cancelled (service.worker.watchdog). The parent does this rather
than the child running the job because a child can hold Python's GIL for seconds (loading
TensorFlow's libraries does), which would starve a heartbeat thread of its own; and a child
that dies leaves Celery's active requests, so its job's heartbeat stops and the job is failed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown
from celery.worker import state as worker_state
from redis import Redis

from service.jobs.store import JobStore
from service.jobs.task_names import RUN_JOB_TASK
from service.settings import get_settings
from service.worker.registry import IdleHolding, publish_worker, withdraw_worker
from service.worker.watchdog import Watchdog, create_progress_dir, remove_progress_dir

logger = logging.getLogger(__name__)

GPU_PROBE_TIMEOUT_SECONDS = 120


def probe_gpus() -> list[str] | None:
    """GPU names TensorFlow sees, asked in a subprocess; None if the probe itself failed."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "training.devices"],
            capture_output=True,
            text=True,
            timeout=GPU_PROBE_TIMEOUT_SECONDS,
            check=True,
        )
        return json.loads(completed.stdout.strip().splitlines()[-1])["gpus"]
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError):
        logger.exception("Could not find out which GPUs TensorFlow sees.")
        return None


def running_jobs() -> list[tuple[str, Any]]:
    """(job id, Celery request) of the jobs this worker's pool is running now (per Celery's own
    bookkeeping)."""
    return [
        (request.args[0], request)
        for request in list(worker_state.active_requests)
        if request.name == RUN_JOB_TASK and request.args
    ]


def held_job_ids() -> list[str]:
    """Ids of the jobs whose messages this worker has taken and not finished, started or not."""
    return [
        request.args[0]
        for request in list(worker_state.reserved_requests)
        if request.name == RUN_JOB_TASK and request.args
    ]


class WorkerPresence:
    """Keeps `workers:{hostname}` and the heartbeats of this worker's running jobs alive."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        settings = get_settings()
        # Bounded waits: a Redis unreachable over the network must not hold up the watchdog.
        self.redis = Redis.from_url(
            settings.redis_url, decode_responses=True, socket_connect_timeout=5, socket_timeout=5
        )
        self.jobs = JobStore(self.redis, settings.heartbeat_ttl_seconds)
        self.interval = settings.heartbeat_seconds
        self.ttl_ms = int(settings.heartbeat_ttl_seconds * 1000)
        self.watchdog = Watchdog(
            self.jobs, settings.job_stall_seconds, settings.cancel_grace_seconds
        )
        self.info: dict[str, Any] = {
            "hostname": hostname,
            "pid": os.getpid(),
            "queues": queues,
            "started_at": time.time(),
            "gpus": None,  # filled in once the probe answers
        }
        self._idle_holding = IdleHolding()
        self._leaving = threading.Event()
        self._beats = threading.Thread(target=self._beat, name="worker-presence", daemon=True)
        self._probe = threading.Thread(target=self._probe_gpus, name="gpu-probe", daemon=True)

    def start(self) -> None:
        self._beats.start()
        self._probe.start()

    def stop(self) -> None:
        """Withdraw the liveness record. Job heartbeats go on while a job finishes."""
        self._leaving.set()
        try:
            withdraw_worker(self.redis, self.info["hostname"])
        except Exception:
            logger.warning("Could not remove the worker record", exc_info=True)

    def _probe_gpus(self) -> None:
        gpus = probe_gpus()
        if gpus:
            logger.info("Worker sees %d GPU(s): %s; training uses the GPU.", len(gpus), gpus)
        elif gpus == []:
            logger.info("Worker sees no GPU; training runs on the CPU.")
        self.info["gpus"] = gpus

    def _beat(self) -> None:
        while True:
            try:
                if not self._leaving.is_set():
                    # Checked live so /health can show the parent never imported TensorFlow.
                    self.info["tensorflow_in_parent"] = "tensorflow" in sys.modules
                    # Jobs whose messages it holds, started or not (read by the reconciler).
                    self.info["holding"] = held = held_job_ids()
                    # Held while its pool runs nothing: stuck before starting them (reconciler).
                    idle = self._idle_holding.seconds(
                        bool(held), bool(worker_state.active_requests)
                    )
                    self.info["holding_idle_seconds"] = round(idle, 1)
                    publish_worker(self.redis, self.info, self.ttl_ms)
                jobs = running_jobs()
                for job_id, _ in jobs:
                    self.jobs.heartbeat(job_id)
                self.watchdog.check(jobs)
            except Exception:
                logger.warning("Could not publish worker and job heartbeats", exc_info=True)
            time.sleep(self.interval)


_presence: WorkerPresence | None = None


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    # In the parent, before its pool forks: every child inherits the folder's path.
    create_progress_dir()


@worker_ready.connect
def _on_worker_ready(sender: Any, **_: Any) -> None:
    global _presence
    queues = [queue.name for queue in sender.task_consumer.queues]
    _presence = WorkerPresence(sender.hostname, queues)
    _presence.start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _presence is not None:
        _presence.stop()
    remove_progress_dir()
