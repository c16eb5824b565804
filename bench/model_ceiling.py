"""The model-only ceiling of bench/predict_load.py's batch figures: what the API's processes
could answer if serving cost nothing.

`processes` spawned processes (API_WORKERS, as many as the API runs), each loading the model as
an API process does (`read_stored_model`, which sets TensorFlow's threads as the API sets them,
then `compiled_predict`, the runtime the API serves), call its predict function on the same
batch, back to back, for the same seconds, started together; their images/s are summed.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from pathlib import Path

import numpy as np

START_TIMEOUT = 300.0


def measure(
    model_path: Path, batch: np.ndarray, processes: int, seconds: float, log: Path
) -> float:
    """Images/s of `processes` processes predicting `batch` over and over, summed; their
    output goes to `log`."""
    context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_predict_for, args=(model_path, batch, seconds, barrier, results, log)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        return float(sum(_results(workers, results, START_TIMEOUT + seconds)))
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()


def _results(workers: list, results, timeout: float) -> list[float]:
    """One rate from each worker; an error as soon as one ends without giving its rate."""
    rates: list[float] = []
    deadline = time.monotonic() + timeout
    while len(rates) < len(workers):
        try:
            rates.append(results.get(timeout=1))
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                message = f"Model-only processes failed (exit codes {failed}); see the log."
                raise RuntimeError(message) from None
    return rates


def _predict_for(
    model_path: Path, batch: np.ndarray, seconds: float, barrier, results, log: Path
) -> None:
    """One process: load the model, then count the batches it predicts in `seconds`."""
    with log.open("ab") as out:  # TensorFlow's start-up chatter, as the servers' goes there
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from service.predict.models import compiled_predict, read_stored_model
    from service.settings import Settings

    predict = compiled_predict(read_stored_model(model_path), Settings().serve_quantized)
    for _ in range(3):  # warm up
        predict(batch)
    barrier.wait(timeout=START_TIMEOUT)
    started = time.perf_counter()
    batches = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        predict(batch)
        batches += 1
    results.put(batches * len(batch) / elapsed)
