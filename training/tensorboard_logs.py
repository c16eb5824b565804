"""TensorBoard logs of a Keras run, written at epoch ends only.

A run's folder holds, as Keras' own TensorBoard callback lays it out, `train/`: the epoch's
losses and metrics (`epoch_loss`, `epoch_accuracy`, ...), the learning rate in use
(`epoch_learning_rate`), weight histograms (`conv_1/kernel/histogram`), the probe's gradients
as histograms (`gradients/conv_1/kernel`) and their statistics as scalars
(`gradient_max_abs/conv_1/kernel`, `gradient_mean_abs/...`, `gradient_l2_norm/...`), the op
graph of the forward pass and the conceptual graph (`keras`); and `validation/`: the val_
metrics under the same names. The folder itself gets a description of the run
(`describe_run`). Steps are epochs as the service's history numbers them: 1 after the first
epoch; 0 is the untrained model (gradients only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from training.callbacks import GradientProbe, GradientStatsCallback, ProbeGradient

GRADIENT_STATISTICS = ("max_abs", "mean_abs", "l2_norm")


class TensorBoardLogs(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback once per epoch (metrics, learning rate, weight histograms,
    the model's conceptual graph), plus the probe's per-layer gradients as histograms and
    statistics, and the op graph of the model's forward pass (Keras 3 writes none).

    Place it after `gradients` in the callback list: it logs the probe that callback has just
    measured. Nothing runs per batch: its batch hooks are `Callback`'s no-ops, so Keras keeps
    dispatching batch callbacks asynchronously (a synchronous batch hook slowed the CNN 1.5x).
    """

    on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end
    on_test_batch_begin = keras.callbacks.Callback.on_test_batch_begin
    on_test_batch_end = keras.callbacks.Callback.on_test_batch_end

    def __init__(self, log_dir: Path | str, gradients: GradientStatsCallback | None = None) -> None:
        super().__init__(
            log_dir=str(log_dir),
            histogram_freq=1,
            write_graph=True,  # the conceptual graph (the model's config)
            update_freq="epoch",
            profile_batch=0,
        )
        self.gradients = gradients

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        with self._train_writer.as_default():
            tf.summary.graph(_forward_graph(self.model))
        self._log_gradients()  # the untrained model's (epoch 0)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch + 1, logs)  # step = epoch number (Keras counts from 0)
        self._log_gradients()
        for writer in self._writers.values():  # readable while the job runs
            writer.flush()

    def _log_gradients(self) -> None:
        probe = self.gradients.latest if self.gradients is not None else None
        if probe is not None:
            with self._train_writer.as_default():
                write_gradients(probe)


def write_gradients(probe: GradientProbe) -> None:
    """The probe's gradient of each layer's weights as a histogram (`gradients/...`) and its
    statistics as scalars (`gradient_max_abs/...`), into the default summary writer."""
    for gradient in probe.gradients:
        name, statistics = gradient_name(gradient), gradient.statistics()
        tf.summary.histogram(f"gradients/{name}", gradient.values, step=probe.epoch)
        for statistic in GRADIENT_STATISTICS:
            tf.summary.scalar(
                f"gradient_{statistic}/{name}", statistics[statistic], step=probe.epoch
            )


def gradient_name(gradient: ProbeGradient) -> str:
    """`layer/parameter` as Keras names weights (`conv_1/kernel`); the weight's path under its
    layer's name for a layer that wraps others (`digits/conv_1/kernel`)."""
    if gradient.path.startswith(f"{gradient.layer}/"):
        return gradient.path
    return f"{gradient.layer}/{gradient.path}"


def _forward_graph(model: keras.Model) -> tf.Graph:
    """The graph of the model's forward pass in inference mode, traced once."""
    specs = [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs]

    @tf.function
    def forward(*inputs: tf.Tensor) -> Any:
        return model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)

    return forward.get_concrete_function(*specs).graph


def describe_run(log_dir: Path | str, title: str, params: Mapping[str, Any]) -> None:
    """Write what a run is into its folder, so that runs side by side are recognisable: a text
    summary (`run`: the title and a table of `params`) and the params as TensorBoard HParams
    (its HParams dashboard then lists the runs of a sweep with their params and metrics)."""
    from tensorboard.plugins.hparams import api as hparams  # TensorBoard's own format

    rows = "\n".join(f"| {name} | `{json.dumps(value)}` |" for name, value in params.items())
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        tf.summary.text("run", f"**{title}**\n\n| param | value |\n| --- | --- |\n{rows}", step=0)
        hparams.hparams(_hparam_values(params), trial_id=title)
    writer.close()


def _hparam_values(params: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """HParams take scalars: lists and mappings as JSON; unset (None) params are left out."""
    return {
        name: value if isinstance(value, bool | int | float | str) else json.dumps(value)
        for name, value in params.items()
        if value is not None
    }
