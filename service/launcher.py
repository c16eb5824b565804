"""`make run`: make sure Redis answers, then run a Celery worker and the API in the foreground.

Where no Redis answers at `REDIS_URL` (on this machine), one is started for the session,
append-only with its data in `ARTIFACTS_DIR/redis` (`service/redis_server.py` picks it).

Ctrl-C (SIGINT) or SIGTERM stops everything this started, the API first, and leaves no stray
process: each child runs in its own process group, which is terminated as a whole (a Celery
worker's pool children included), and killed if it has not exited after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from service.redis_server import (
    ServerNotFound,
    find_server,
    is_local,
    redis_answers,
    server_command,
    wait_until_answers,
)
from service.settings import Settings, get_settings

logger = logging.getLogger("launcher")

SHUTDOWN_GRACE_SECONDS = 10
_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """Something `make run` needs is missing; the message says how to get it."""


def start_redis_if_needed(settings: Settings) -> tuple[str, subprocess.Popen] | None:
    """Return None if Redis answers; else start a local server for this session (redis-server
    if installed, else the embedded valkey-server) and return its name and process."""
    if redis_answers(settings.redis_url):
        return None
    url = _redacted(settings.redis_url)
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not is_local(host):
        raise LaunchError(
            f"No Redis answers at {url}: start it, or point REDIS_URL at one that runs."
        )
    try:
        server = find_server()
    except ServerNotFound as error:
        raise LaunchError(f"No Redis answers at {url}, and {error}.") from None
    name = Path(server).name
    data_dir = (settings.local_artifacts_dir / "redis").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logger.info("No Redis at %s:%s; starting %s (data in %s).", host, port, name, data_dir)
    process = _spawn(server_command(server, host, port, data_dir))
    if not wait_until_answers(process, settings.redis_url):
        _stop(process, name)
        raise LaunchError(f"{name} did not start on {host}:{port}; see its log above.")
    return name, process


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
            children.append(redis_server)
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
    settings.local_artifacts_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(run(settings))


if __name__ == "__main__":
    main()
