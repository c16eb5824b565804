"""Real processes for tests: a Celery worker and the API (uvicorn) on a Redis DB of their own,
and Redis servers of the tests' own.

Every wait here is bounded; a failure to start shows the tail of the process's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from service.redis_server import find_server, server_command, wait_until_answers

REPO_ROOT = Path(__file__).resolve().parent.parent
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
HEARTBEAT_SECONDS = 0.5  # fast, so lost workers are detected within seconds in tests


def redis_url(db: int, base: str = REDIS_BASE_URL) -> str:
    return f"{base.rstrip('/')}/{db}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], Any], timeout: float, message: str, interval: float = 0.1
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `message` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout}s: {message}")
        time.sleep(interval)


def assert_some_busy(answers: list[httpx.Response], setting: str) -> None:
    """Concurrent requests past a gate of `setting` slots: each answered 200 or 503, some of
    each, the 503s in the API's error shape with `Retry-After` and the setting named."""
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}, [answer.text for answer in answers]
    assert 200 in statuses and 503 in statuses, statuses
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.headers["retry-after"] == "1" and busy.json()["code"] == "busy"
    assert setting in busy.json()["detail"]


class ManagedProcess:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, env=self.env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the whole group; SIGKILL whatever is left after `timeout` seconds."""
        if self.process is None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        _signal_group(self.process.pid, signal.SIGKILL)  # e.g. a pool child still busy
        self.process.wait(timeout=5)
        self.process = None

    def kill_group(self) -> None:
        """SIGKILL the process and all its children at once, as a crash would."""
        assert self.process is not None
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


class OwnRedis:
    """A server on a port of its own (a free one by default), append-only, its files and log in
    `folder`: redis-server if installed, else the embedded valkey-server (`REDIS_SERVER` picks).
    Stopped and started at will, as a service manager would."""

    def __init__(self, folder: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.host = host
        self.port = port or free_port()
        self.url = f"redis://{host}:{self.port}"
        self.binary = find_server()
        self.name = Path(self.binary).name
        self.process: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        log_path = self.folder / f"{self.name}.log"
        with log_path.open("ab") as log:
            command = server_command(self.binary, self.host, self.port, self.folder)
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until_answers(self.process, self.url):
            self.stop()
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not answer on {self.url}:\n{tail}")
        return self

    def stop(self) -> None:
        """SIGTERM: the server syncs its append-only file and exits."""
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None


class ServiceStack:
    """An API and a worker sharing one Redis DB, started and stopped like real deployments."""

    def __init__(
        self,
        db: int,
        log_dir: Path,
        redis_base: str = REDIS_BASE_URL,
        worker_settings: dict[str, str] | None = None,
        **settings: str,
    ) -> None:
        self.db = db
        self.redis_url = redis_url(db, redis_base)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.worker_name = f"test-{uuid.uuid4().hex[:8]}@%h"
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis_url,
            "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "ARTIFACTS_DIR": str(log_dir / "artifacts"),
            "PYTHONUNBUFFERED": "1",
            "BOOTSTRAP_MODELS": "false",  # tests that want bootstrap jobs ask for them
            "SERVE_QUANTIZED": "false",  # answers are the models' own, whatever .env says
            **settings,
        }
        self.worker_env = {**self.env, **(worker_settings or {})}  # the worker's own, if any
        self.log_dir = log_dir
        self.api = ManagedProcess(
            "api",
            [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(self.port)],
            self.env,
            log_dir,
        )
        self.worker = self._new_worker()
        self.redis = Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)
        self.client = httpx.Client(base_url=self.base_url, timeout=10)

    def _new_worker(self) -> ManagedProcess:
        command = [
            sys.executable, "-m", "celery", "-A", "service.worker.celery_app", "worker",
            "--hostname", self.worker_name, "--loglevel", "INFO", "--without-mingle",
            "--without-gossip",
        ]  # fmt: skip
        return ManagedProcess("worker", command, self.worker_env, self.log_dir)

    def start(self, worker: bool = True) -> ServiceStack:
        self.redis.flushdb()
        self.start_api()
        if worker:
            self.start_worker()
        return self

    def start_api(self) -> None:
        self.api.start()
        self._wait_ready(self.api, lambda health: True)

    def start_worker(self) -> None:
        self.worker = self._new_worker()
        self.worker.start()
        self._wait_ready(self.worker, lambda health: self.worker_record(health) is not None)

    def worker_record(self, health: dict[str, Any] | None = None) -> dict[str, Any] | None:
        health = health or self.client.get("/health").json()
        host = self.worker_name.split("@")[0]
        for record in health["workers"]["details"]:
            if record["hostname"].startswith(host + "@"):
                return record
        return None

    def _wait_ready(self, process: ManagedProcess, ready: Callable[[dict], bool]) -> None:
        def check() -> bool:
            assert process.process is not None
            if process.process.poll() is not None:
                raise RuntimeError(f"The {process.name} exited:\n{process.log_tail()}")
            try:
                response = self.client.get("/health")
            except httpx.TransportError:
                return False
            return response.status_code == 200 and ready(response.json())

        try:
            wait_for(check, timeout=60, message=f"the {process.name} to be ready", interval=0.2)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{process.log_tail()}") from None

    def stop(self) -> None:
        self.client.close()
        self.api.stop()
        self.worker.stop()
        self.redis.flushdb()
        self.redis.close()

    # Job helpers

    def submit(self, kind: str = "backprop", **params: Any) -> dict[str, Any]:
        response = self.client.post("/jobs", json={"kind": kind, "params": params})
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_job(
        self, job_id: str, condition: Callable[[dict], bool], timeout: float = 60, what: str = ""
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            last.update(self.job(job_id))
            return dict(last) if condition(last) else None

        try:
            return wait_for(check, timeout, f"job {job_id} {what or 'condition'}", interval=0.05)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; last seen: {last}\n{self.worker.log_tail()}") from None

    def wait_until_finished(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait_for_job(
            job_id,
            lambda job: job["status"] in {"succeeded", "failed", "cancelled"},
            timeout,
            "to finish",
        )

    def wait_until_running(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the job runs and has reported progress at least once."""
        return self.wait_for_job(
            job_id,
            lambda job: job["status"] == "running" and job["progress"] is not None,
            timeout,
            "to be running with progress",
        )
