"""Micro-batching: concurrent requests for one model share a single model call.

Requests that arrive while the model is busy queue up and go into the next call together, so a
busy server makes a few large calls instead of many small ones. A request that finds the model
idle runs at once, unless other requests are known to be on their way (they announced
themselves with `arriving()` and are still decoding their images); then the batch waits for
them, at most `max_wait` seconds. A lone request therefore never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

Outputs = np.ndarray | dict[str, np.ndarray]


class MicroBatcher:
    """Runs `predict` on rows gathered from concurrent `submit` calls, in a thread of its own."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], Outputs],
        max_batch: int = 64,
        max_wait: float = 0.002,
        on_batch: Callable[[int], None] | None = None,
        name: str = "model",
    ) -> None:
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be at least 1 and max_wait at least 0.")
        self._predict = predict
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._pending: list[tuple[np.ndarray, Future]] = []
        self._arriving = 0
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a request that will `submit` shortly, so a forming batch waits for it."""
        with self._condition:
            self._arriving += 1
        try:
            yield
        finally:
            with self._condition:
                self._arriving -= 1
                self._condition.notify()

    def submit(self, rows: np.ndarray) -> Future:
        """Queue `rows` (a batch of one or more inputs); the future holds their outputs."""
        future: Future = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("The batcher is closed.")
            self._pending.append((rows, future))
            self._condition.notify()
        return future

    def run(self, rows: np.ndarray, timeout: float | None = 60.0) -> Outputs:
        """`submit` and wait for the outputs (from a thread)."""
        return self.submit(rows).result(timeout)

    async def outputs(self, rows: np.ndarray) -> Outputs:
        """`submit` and await the outputs (from the event loop)."""
        return await asyncio.wrap_future(self.submit(rows))

    def close(self, wait: bool = True) -> None:
        """Stop after the requests already queued are answered (`wait`: until then)."""
        with self._condition:
            self._closed = True
            self._condition.notify()
        if wait:
            self._thread.join(timeout=5)

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run_batch(batch)

    def _next_batch(self) -> list[tuple[np.ndarray, Future]] | None:
        with self._condition:
            while not self._pending and not self._closed:
                self._condition.wait()
            if not self._pending:
                return None
            deadline = time.monotonic() + self._max_wait
            while self._arriving and self._queued_rows() < self._max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch, rows = [], 0
            while self._pending and (
                not batch or rows + len(self._pending[0][0]) <= self._max_batch
            ):
                item = self._pending.pop(0)
                batch.append(item)
                rows += len(item[0])
            return batch

    def _queued_rows(self) -> int:
        return sum(len(rows) for rows, _ in self._pending)

    def _run_batch(self, batch: list[tuple[np.ndarray, Future]]) -> None:
        batch = [(rows, future) for rows, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            outputs = self._predict(np.concatenate([rows for rows, _ in batch]))
        except Exception as error:  # every waiting request learns why its batch failed
            logger.exception("A batch of %d requests failed.", len(batch))
            for _, future in batch:
                future.set_exception(error)
            return
        if self._on_batch is not None:
            self._on_batch(sum(len(rows) for rows, _ in batch))
        start = 0
        for rows, future in batch:
            future.set_result(_slice(outputs, start, start + len(rows)))
            start += len(rows)


def _slice(outputs: Outputs, start: int, stop: int) -> Any:
    if isinstance(outputs, dict):
        return {name: value[start:stop] for name, value in outputs.items()}
    return outputs[start:stop]
