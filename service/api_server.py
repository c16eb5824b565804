"""`python -m service.api_server`: the API under uvicorn with API_WORKERS processes.

Each process holds its own copy of the models and its own micro-batcher: one Python process
spends most of a core parsing requests and preparing images, so on the 2-core machine two
processes served 1.8x the requests of one (bench/predict_load.py). With several processes,
Prometheus metrics go through files in a folder they share (prometheus-client's multiprocess
mode), emptied here before the processes start.
"""

from __future__ import annotations

import os
import shutil

import uvicorn

from service.metrics import METRICS_DIR_VARIABLE
from service.settings import Settings, get_settings


def prepare_metrics_dir(settings: Settings) -> None:
    """With several processes, point prometheus-client at an empty folder they share."""
    if settings.api_workers == 1:
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        return
    metrics_dir = (settings.artifacts_dir / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counts of earlier runs
    metrics_dir.mkdir(parents=True)
    os.environ[METRICS_DIR_VARIABLE] = str(metrics_dir)


def main() -> None:
    settings = get_settings()
    prepare_metrics_dir(settings)
    uvicorn.run(
        "service.main:app", host=settings.host, port=settings.port, workers=settings.api_workers
    )


if __name__ == "__main__":
    main()
