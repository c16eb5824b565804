"""`make run`: make sure Redis answers, then run a Celery worker and the API in the foreground.

Ctrl-C (SIGINT) or SIGTERM stops everything this started, the API first, and leaves no stray
process: each child runs in its own process group, which is terminated as a whole (a Celery
worker's pool children included), and killed if it has not exited after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import RedisError

from service.settings import Settings, get_settings

logger = logging.getLogger("launcher")

SHUTDOWN_GRACE_SECONDS = 10
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """Something `make run` needs is missing; the message says how to get it."""


def redis_answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (RedisError, OSError):
        return False


def start_redis_if_needed(settings: Settings) -> subprocess.Popen | None:
    """Return None if Redis answers; else start a local redis-server for this session."""
    if redis_answers(settings.redis_url):
        return None
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    server = shutil.which("redis-server")
    if host not in LOCAL_HOSTS or server is None:
        how = (
            "install it (Debian/Ubuntu: `sudo apt-get install redis-server`) and run `make run` "
            "again"
            if server is None
            else "start it, or point REDIS_URL at a Redis that runs"
        )
        raise LaunchError(f"No Redis answers at {_redacted(settings.redis_url)}: {how}.")
    data_dir = (settings.artifacts_dir / "redis").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logger.info("No Redis at %s:%s; starting redis-server (data in %s).", host, port, data_dir)
    command = [server, "--bind", host, "--port", str(port), "--dir", str(data_dir),
               "--appendonly", "yes", "--save", ""]  # fmt: skip
    process = _spawn(command)
    deadline = time.monotonic() + 10
    while not redis_answers(settings.redis_url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process, "redis-server")
            raise LaunchError(f"redis-server did not start on {host}:{port}; see its log above.")
        time.sleep(0.1)
    return process


def worker_command(settings: Settings) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "service.worker.celery_app", "worker",
        "--queues", settings.job_queue, "--concurrency", "1", "--pool", "prefork",
        "--max-tasks-per-child", "1", "--prefetch-multiplier", "1",
        "--loglevel", settings.log_level,
    ]  # fmt: skip


def api_command() -> list[str]:
    return [sys.executable, "-m", "service.api_server"]


def run(settings: Settings) -> int:
    """Start everything, wait for a signal or for a child to die, stop everything."""
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop_requested.append(signum)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    _die_with_parent()

    children: list[tuple[str, subprocess.Popen]] = []
    exit_code = 0
    try:
        redis_server = start_redis_if_needed(settings)
        if redis_server is not None:
            children.append(("redis-server", redis_server))
        children.append(("worker", _spawn(worker_command(settings))))
        children.append(("api", _spawn(api_command())))
        logger.info(
            "API on http://%s:%s (docs at /docs); Ctrl-C stops everything.",
            settings.host,
            settings.port,
        )
        while not stop_requested:
            for name, process in children:
                if process.poll() is not None:
                    logger.error("The %s exited with code %s; stopping.", name, process.returncode)
                    exit_code = 1
                    stop_requested.append(0)
                    break
            time.sleep(0.2)
    except LaunchError as error:
        print(error, file=sys.stderr)
        exit_code = 1
    finally:
        for name, process in reversed(children):
            _stop(process, name)
    return exit_code


def _spawn(command: list[str]) -> subprocess.Popen:
    # A session of its own: the terminal's Ctrl-C reaches only the launcher, which then stops
    # the children in order; and a whole group can be signalled at once. Each child also gets
    # SIGTERM should the launcher itself be killed outright.
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)


def _stop(process: subprocess.Popen, name: str) -> None:
    """Terminate the process's whole group; kill it if still there after the grace period."""
    if process.poll() is None:
        logger.info("Stopping the %s.", name)
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        logger.warning("The %s did not stop in %ss; killing it.", name, SHUTDOWN_GRACE_SECONDS)
    # Kill whatever is left in the group, e.g. a pool child busy with a job.
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _die_with_parent() -> None:
    """Get SIGTERM when the parent process dies (for the launcher: `make`, so that even
    `kill <make's pid>` stops everything)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port or 6379}"
        return parts._replace(netloc=netloc).geturl()
    return url


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s")
    settings = get_settings()
    Path(settings.artifacts_dir).mkdir(parents=True, exist_ok=True)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
