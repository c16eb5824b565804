"""Worker start-up and shutdown, in the worker's parent process.

On start the worker asks a short-lived subprocess which GPUs TensorFlow sees (the parent must
never import TensorFlow: it is not fork-safe and would hold GPU memory), logs the answer, and
keeps a liveness record in Redis that `GET /health` counts.
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

from celery.signals import worker_ready, worker_shutdown
from redis import Redis

from service.settings import get_settings
from service.worker.registry import worker_key

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


class WorkerPresence:
    """Keeps `workers:{hostname}` alive in Redis while the worker runs."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        settings = get_settings()
        self.redis = Redis.from_url(settings.redis_url, decode_responses=True)
        self.key = worker_key(hostname)
        self.interval = settings.heartbeat_seconds
        self.ttl_ms = int(settings.heartbeat_ttl_seconds * 1000)
        self.info: dict[str, Any] = {
            "hostname": hostname,
            "pid": os.getpid(),
            "queues": queues,
            "started_at": time.time(),
            "gpus": None,  # filled in once the probe answers
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-presence", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.redis.delete(self.key)
        except Exception:
            logger.warning("Could not remove the worker record %s", self.key, exc_info=True)

    def _run(self) -> None:
        self._publish()
        gpus = probe_gpus()
        if gpus:
            logger.info("Worker sees %d GPU(s): %s; training uses the GPU.", len(gpus), gpus)
        elif gpus == []:
            logger.info("Worker sees no GPU; training runs on the CPU.")
        self.info["gpus"] = gpus
        while not self._stop.is_set():
            self._publish()
            self._stop.wait(self.interval)

    def _publish(self) -> None:
        # Checked live so /health can prove the parent never imported TensorFlow.
        self.info["tensorflow_in_parent"] = "tensorflow" in sys.modules
        try:
            self.redis.set(self.key, json.dumps(self.info), px=self.ttl_ms)
        except Exception:
            logger.warning("Could not publish the worker record %s", self.key, exc_info=True)


_presence: WorkerPresence | None = None


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
