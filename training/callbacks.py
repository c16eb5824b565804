"""Keras callbacks that connect `fit()` to a `ProgressReporter`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.progress import ProgressReporter


class ReportingCallback(keras.callbacks.Callback):
    """Reports batch progress, records each epoch's history, and stops the run when cancelled.

    Cancellation is checked after every batch, so a cancelled job stops at the end of its
    current batch; the epochs recorded so far stay recorded.

    `async_safe`: its batch hook reads no logs, so Keras may run it on its callback thread
    instead of waiting for every batch's results (a measured 1.5x slowdown of the CNN
    otherwise). A cancellation raised there surfaces in the training loop at the next batch.
    """

    async_safe = True

    def __init__(self, progress: ProgressReporter, epochs: int, batches_per_epoch: int) -> None:
        super().__init__()
        self.progress = progress
        self.epochs = epochs
        self.batches_per_epoch = batches_per_epoch
        self._epoch = 0
        self._epoch_started = 0.0
        self._lock = threading.Lock()  # Keras' callback thread pool may run batches in parallel

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch + 1
        self._epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._report(batch + 1)
            self.progress.check_cancelled()

    def _report(self, batch: int) -> None:
        self.progress.report(
            epoch=self._epoch, epochs=self.epochs, batch=batch, batches=self.batches_per_epoch
        )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = {"epoch": epoch + 1}
        entry.update({name: float(value) for name, value in (logs or {}).items()})
        entry["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        entry["seconds"] = time.perf_counter() - self._epoch_started
        self.progress.record_epoch(entry)
        # Keras has run every batch callback by now: end the epoch on its true position.
        self._report(self.batches_per_epoch)


@dataclass(frozen=True)
class ProbeGradient:
    """The loss gradient of one trainable weight on the probe batch."""

    layer: str
    depth: int  # 1 for the first layer that has trainable weights
    parameter: str
    path: str  # the weight's path: unique where a layer wraps others with their own weights
    values: np.ndarray

    def statistics(self) -> dict[str, Any]:
        """Max |g|, mean |g| and L2 norm, with the layer, depth and parameter they belong to."""
        magnitudes = np.abs(self.values.astype(np.float64)).ravel()
        return {
            "layer": self.layer,
            "depth": self.depth,
            "parameter": self.parameter,
            "max_abs": float(magnitudes.max()),
            "mean_abs": float(magnitudes.mean()),
            "l2_norm": float(np.sqrt(np.sum(magnitudes * magnitudes))),
        }


@dataclass(frozen=True)
class GradientProbe:
    """One measurement of the probe: its epoch (0 = untrained) and the gradients."""

    epoch: int
    gradients: list[ProbeGradient]


class GradientStatsCallback(keras.callbacks.Callback):
    """Records per-layer gradient statistics on a fixed probe batch: untrained, then per epoch.

    One probe batch per epoch, not every batch, so the cost is one extra forward and backward
    pass per epoch. `latest` keeps the last measurement for callbacks that run after this one
    (TensorBoard's logs).
    """

    def __init__(
        self,
        progress: ProgressReporter,
        probe_inputs: np.ndarray,
        probe_targets: np.ndarray,
        loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    ) -> None:
        super().__init__()
        self.progress = progress
        self.probe_inputs = probe_inputs
        self.probe_targets = probe_targets
        self.loss_fn = loss_fn
        self.latest: GradientProbe | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._record(0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._record(epoch + 1)

    def _record(self, epoch: int) -> None:
        gradients = probe_gradients(self.model, self.probe_inputs, self.probe_targets, self.loss_fn)
        self.latest = GradientProbe(epoch, gradients)
        statistics = [gradient.statistics() for gradient in gradients]
        self.progress.record_gradients({"epoch": epoch, "layers": statistics})


def gradient_statistics(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> list[dict[str, Any]]:
    """Max |g|, mean |g| and L2 norm of the loss gradient for each trainable weight
    (`probe_gradients`)."""
    return [gradient.statistics() for gradient in probe_gradients(model, inputs, targets, loss_fn)]


def probe_gradients(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> list[ProbeGradient]:
    """The loss gradient of each trainable weight, layer by layer.

    The loss is `loss_fn` averaged over the batch plus the model's regularization losses, with
    the model in inference mode (no dropout) so the probe is deterministic. Layers are numbered
    by `depth`, 1 for the first layer that has trainable weights.
    """
    with tf.GradientTape() as tape:
        predictions = model(inputs, training=False)
        loss = tf.reduce_mean(loss_fn(targets, predictions))
        if model.losses:
            loss += tf.add_n(model.losses)
    gradients = tape.gradient(loss, model.trainable_variables)
    by_variable = {id(v): g for v, g in zip(model.trainable_variables, gradients, strict=True)}

    probed = []
    depth = 0
    for layer in model.layers:
        if not layer.trainable_weights:
            continue
        depth += 1
        for weight in layer.trainable_weights:
            gradient = by_variable.get(id(weight))
            if gradient is not None:
                values = np.asarray(gradient)
                probed.append(ProbeGradient(layer.name, depth, weight.name, weight.path, values))
    return probed
