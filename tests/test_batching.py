"""MicroBatcher: rows from concurrent callers share model calls and come back to their owner."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.predict.batching import MicroBatcher


class RecordingModel:
    """Doubles its input and records the size of every call; can be held busy."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        self.started.set()
        self.release.wait(10)
        self.calls.append(len(inputs))
        return inputs * 2


def test_requests_queued_while_the_model_is_busy_share_the_next_call():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=64, max_wait=0)
    try:
        model.release.clear()
        first = batcher.submit(np.zeros((1, 3)))
        assert model.started.wait(5)  # the model is busy with the first request
        waiting = [batcher.submit(np.full((1, 3), i)) for i in range(1, 6)]
        model.release.set()
        assert first.result(5).tolist() == [[0, 0, 0]]
        for i, future in enumerate(waiting, start=1):
            assert future.result(5).tolist() == [[2 * i] * 3]
        assert model.calls[0] == 1 and model.calls[1] == 5
    finally:
        batcher.close()


def test_each_caller_gets_its_own_rows_back_under_concurrency():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=16, max_wait=0.001)
    try:

        def call(index: int) -> np.ndarray:
            rows = np.arange(index % 3 + 1, dtype=float)[:, None] + 100 * index
            return batcher.run(rows) - 2 * rows

        with ThreadPoolExecutor(max_workers=24) as pool:
            residuals = list(pool.map(call, range(200)))
        assert all(not residual.any() for residual in residuals)
        assert max(model.calls) <= 16
        assert sum(model.calls) == sum(index % 3 + 1 for index in range(200))
    finally:
        batcher.close()


def test_dict_outputs_are_split_per_caller():
    batcher = MicroBatcher(lambda x: {"sum": x.sum(axis=1), "same": x}, max_wait=0)
    try:
        outputs = batcher.run(np.ones((2, 4)))
        assert outputs["sum"].tolist() == [4, 4]
        assert outputs["same"].shape == (2, 4)
    finally:
        batcher.close()


def test_a_failing_call_fails_every_request_in_it_and_the_batcher_goes_on():
    def model(inputs: np.ndarray) -> np.ndarray:
        if (inputs < 0).any():
            raise ValueError("negative input")
        return inputs

    batcher = MicroBatcher(model, max_wait=0)
    try:
        with pytest.raises(ValueError, match="negative input"):
            batcher.run(-np.ones((1, 2)))
        assert batcher.run(np.ones((1, 2))).tolist() == [[1, 1]]
    finally:
        batcher.close()


def test_a_batch_waits_for_announced_requests():
    model = RecordingModel()
    batcher = MicroBatcher(model, max_batch=8, max_wait=5.0)
    try:
        with batcher.arriving():
            first = batcher.submit(np.zeros((1, 1)))
            # The batch cannot leave while a request is announced and the wait bound is far.
            assert not first.done()
            second = batcher.submit(np.ones((1, 1)))
        first.result(5), second.result(5)
        assert model.calls == [2]
    finally:
        batcher.close()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda x: x, max_batch=0)
