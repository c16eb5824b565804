"""`python -m service.api_server`: the API under uvicorn with API_WORKERS processes.

Each process holds its own copy of the models and its own micro-batcher: one Python process
spends most of a core parsing requests and preparing images, so on the 2-core machine two
processes served about 1.7x the requests of one (bench/predict_load.py, docs/serving.md).

Each process listens on its own socket bound with SO_REUSEPORT, so the kernel spreads new
connections evenly over them. (uvicorn's own `--workers` share one socket, from which whichever
process is idle at that moment accepts: keep-alive connections opened together, as a load
balancer's or a benchmark's are, could all land on one process and stay there; measured, the
same load then gave anywhere from 510 to 1000 requests/s.) A process that dies is restarted;
when processes keep dying as they start (the port is taken, say), the server gives up and
exits with status 1, so `make run` stops and shows why.

With several processes, Prometheus metrics go through files in a folder they share
(prometheus-client's multiprocess mode), emptied here before the processes start.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from prometheus_client import multiprocess

from service.api.exposure import UnsafeExposure, check_exposure
from service.metrics import METRICS_DIR_VARIABLE
from service.settings import Settings, get_settings

logger = logging.getLogger("api_server")

APP = "service.main:app"
SHUTDOWN_GRACE_SECONDS = 10
RESTART_DELAY_SECONDS = 1.0
QUICK_EXIT_SECONDS = 10.0  # a process that exits sooner than this failed to start
MAX_QUICK_EXITS = 3


def prepare_metrics_dir(settings: Settings) -> None:
    """With several processes, point prometheus-client at an empty folder they share."""
    if settings.api_workers == 1:
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        return
    metrics_dir = (settings.local_artifacts_dir / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counts of earlier runs
    metrics_dir.mkdir(parents=True)
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket on host:port that other processes may bind too (SO_REUSEPORT)."""
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_one() -> None:
    """One API process: its own socket, uvicorn, the app."""
    settings = get_settings()
    sock = listening_socket(settings.host, settings.port)
    config = uvicorn.Config(
        APP, access_log=settings.access_log, log_level=settings.log_level.lower()
    )
    uvicorn.Server(config).run(sockets=[sock])


def supervise(workers: int) -> int:
    """Run `workers` API processes until SIGTERM or SIGINT, restarting any that dies."""
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    stopping: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    started_at: dict[int, float] = {}

    def start(index: int) -> BaseProcess:
        process = context.Process(target=serve_one, name=f"api-{index}")
        process.start()
        started_at[index] = time.monotonic()
        return process

    processes = [start(index) for index in range(workers)]
    quick_exits = 0  # in a row: a process that cannot even start (port taken, bad settings)
    while not stopping and quick_exits < MAX_QUICK_EXITS:
        time.sleep(0.2)
        for index, process in enumerate(processes):
            if process.is_alive() or stopping:
                continue
            lived = time.monotonic() - started_at[index]
            quick_exits = quick_exits + 1 if lived < QUICK_EXIT_SECONDS else 0
            logger.error("API process %s exited (%s) after %.0f s; restarting it.",
                         process.pid, process.exitcode, lived)  # fmt: skip
            if METRICS_DIR_VARIABLE in os.environ and process.pid is not None:
                multiprocess.mark_process_dead(process.pid)  # its live gauges end with it
            if quick_exits >= MAX_QUICK_EXITS:
                logger.error("API processes keep exiting as they start; giving up (see above).")
                break
            time.sleep(RESTART_DELAY_SECONDS)
            processes[index] = start(index)
    for process in processes:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    return 1 if quick_exits >= MAX_QUICK_EXITS else 0


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    try:
        check_exposure(settings)
    except UnsafeExposure as error:
        logger.error("Not starting the API: %s", error)
        raise SystemExit(2) from None
    prepare_metrics_dir(settings)
    if settings.api_workers == 1:
        uvicorn.run(
            APP, host=settings.host, port=settings.port, access_log=settings.access_log,
            log_level=settings.log_level.lower(),
        )  # fmt: skip
        return
    logger.info("API on %s:%s in %d processes.", settings.host, settings.port,
                settings.api_workers)  # fmt: skip
    raise SystemExit(supervise(settings.api_workers))


if __name__ == "__main__":
    main()
