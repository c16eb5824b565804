"""A job's process imports TensorFlow as soon as it starts, while it waits for its job.

Each job runs in a fresh child process (one job per child, so that TensorFlow's GPU memory is
freed when the job ends), and importing TensorFlow and Keras takes about 4 s of CPU. Celery
starts the next child as soon as the last job ends, so the import now happens while the worker
is idle instead of at the start of the next job. Only the child imports TensorFlow: the
worker's parent process never does (it is not fork-safe).
"""

from __future__ import annotations

import importlib
import logging
import threading

from celery.signals import worker_process_init

logger = logging.getLogger(__name__)

EARLY_IMPORTS = ("tensorflow", "keras")
_importing: threading.Thread | None = None


@worker_process_init.connect
def import_tensorflow_early(**_: object) -> None:
    """Start importing TensorFlow in a thread (Celery waits only a few seconds for a new child
    to say it is up)."""
    global _importing
    _importing = threading.Thread(target=_import, name="import-tensorflow", daemon=True)
    _importing.start()


def wait_for_early_imports() -> None:
    """Return once the early imports are done: a job then imports nothing concurrently with
    them (two threads importing the same packages can see them half-initialised)."""
    if _importing is not None:
        _importing.join()


def _import() -> None:
    try:
        for name in EARLY_IMPORTS:
            importlib.import_module(name)
    except Exception:  # the job's own import fails again, with the reason, where it matters
        logger.exception("Could not import TensorFlow ahead of the next job.")
