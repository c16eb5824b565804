"""What every Keras job shares: seeding, optimizers, fit() with the reporting callbacks,
test metrics with a confusion matrix, and saving in both formats."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training.batch_sizes import fit_examples
from training.callbacks import GradientStatsCallback, ReportingCallback
from training.data.sequences import SEQUENCE_LENGTH, sum_metrics
from training.progress import ProgressReporter, SilentReporter
from training.tensorboard_logs import TensorBoardLogs

OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adadelta": keras.optimizers.Adadelta,
    "rmsprop": keras.optimizers.RMSprop,
}
PROBE_SIZE = 256  # the fixed probe batch for gradient statistics: the first training examples
MODEL_FILES = {"keras": "model.keras", "h5": "model.h5"}


def seed_everything(seed: int | None) -> None:
    """With a seed, make a CPU run repeatable: same initial weights, shuffles and dropout."""
    if seed is None:
        return
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def prepare_run(seed: int | None, mixed_precision: bool) -> dict[str, Any]:
    """Seed and set the precision policy; return facts about the run for its result."""
    seed_everything(seed)
    return {"mixed_precision_used": use_mixed_precision(mixed_precision)}


def finish_run(
    model: keras.Model,
    result: dict[str, Any],
    run_facts: dict[str, Any],
    model_dir: Path | str | None,
) -> dict[str, Any]:
    """Add the run's facts and the model's size to the result; save the model if asked."""
    result.update(run_facts, parameters=model.count_params())
    if model_dir is not None:
        result["files"] = save_model(model, model_dir)
    return result


def make_optimizer(
    name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
) -> keras.optimizers.Optimizer:
    try:
        return OPTIMIZERS[name](learning_rate=learning_rate)
    except KeyError:
        raise ValueError(
            f"Unknown optimizer {name!r}. Expected one of: {', '.join(OPTIMIZERS)}."
        ) from None


def use_mixed_precision(enabled: bool) -> bool:
    """float16 compute with float32 weights when asked and a GPU is present; float32 otherwise
    (on the CPU float16 is slower, not faster). Returns whether mixed precision is on."""
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    keras.mixed_precision.set_global_policy("mixed_float16" if enabled and on_gpu else "float32")
    return enabled and on_gpu


def fit_with_reporting(
    model: keras.Model,
    inputs: np.ndarray,
    targets: Any,
    *,
    batch_size: int,
    epochs: int,
    probe_loss: Callable[[Any, Any], tf.Tensor],
    validation_split: float = 0.0,
    validation_data: tuple[np.ndarray, Any] | None = None,
    progress: ProgressReporter | None = None,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    probe_size: int = PROBE_SIZE,
    tensorboard_dir: Path | str | None = None,
) -> keras.callbacks.History:
    """`model.fit` on a compiled model, reporting batches, epochs and gradient statistics;
    with `tensorboard_dir`, also writing TensorBoard logs there (`TensorBoardLogs`).

    Gradient statistics use the first `probe_size` training examples and `probe_loss(targets,
    predictions)`, which must return per-example or mean losses.
    """
    progress = progress or SilentReporter()
    training_count = fit_examples(len(inputs), validation_split)
    probe_targets = _head(targets, probe_size)
    gradients = GradientStatsCallback(progress, inputs[:probe_size], probe_targets, probe_loss)
    logs = () if tensorboard_dir is None else (TensorBoardLogs(tensorboard_dir, gradients),)
    callbacks = [
        # Gradient statistics and logs first, so each epoch's recorded seconds include their
        # cost; the logs after the statistics, whose gradients they write.
        gradients,
        *logs,
        ReportingCallback(progress, epochs, math.ceil(training_count / batch_size)),
        *extra_callbacks,
    ]
    history = model.fit(
        inputs,
        targets,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=validation_split,
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=0,
    )
    calibrate_batch_norm(model, inputs[:training_count], batch_size=probe_size)
    return history


def calibrate_batch_norm(
    model: keras.Model, inputs: np.ndarray, batches: int = 20, batch_size: int = 256
) -> None:
    """Give every trainable batch-normalization layer the mean and variance of its inputs
    under the final weights, averaged over up to `batches` batches of training inputs (as many
    as the gradient probe's: 20 x 256 images, 20 x 25 calculator sequences).

    Inference uses moving averages that lag behind the weights (momentum 0.99: each batch
    moves them 1%). In a short run they still hold much of their initial values (after 36
    steps, 70%), and a model that trained well answered garbage at inference; in a long run
    they trail the last steps' weights.
    """
    layers = [layer for layer in _all_layers(model) if _is_trainable_batch_norm(layer)]
    if not layers:
        return
    momentums = [layer.momentum for layer in layers]
    try:
        for index, start in enumerate(range(0, min(len(inputs), batches * batch_size), batch_size)):
            for layer in layers:  # a running mean: batch k weighs 1/k
                layer.momentum = index / (index + 1)
            model(inputs[start : start + batch_size], training=True)  # eager: reads momentum
    finally:
        for layer, momentum in zip(layers, momentums, strict=True):
            layer.momentum = momentum


def _all_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layer and every layer inside it (nested models, wrapped layers)."""
    inner = list(getattr(layer, "layers", []))
    if hasattr(layer, "layer"):  # TimeDistributed and other wrappers
        inner.append(layer.layer)
    return [layer] + [nested for child in inner for nested in _all_layers(child)]


def _is_trainable_batch_norm(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization) and layer.trainable


def _head(targets: Any, count: int) -> Any:
    if isinstance(targets, dict):
        return {name: values[:count] for name, values in targets.items()}
    return targets[:count]


def fit_classifier(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    optimizer: keras.optimizers.Optimizer,
    batch_size: int,
    epochs: int,
    validation_split: float = 0.0,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    progress: ProgressReporter | None = None,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    num_classes: int = 10,
    digit_sums: bool = False,
    tensorboard_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train a softmax classifier with integer labels and measure it on the test set.

    Validation data is either the last `validation_split` of `train` or `validation_data`.
    With `tensorboard_dir`, TensorBoard logs of the training are written there.
    Returns the test loss, accuracy and confusion matrix (rows: true class, columns: predicted);
    with `digit_sums`, also how well it sums the test set in consecutive groups of ten, as the
    service's `POST /predict/sum` with a digit model does (`sum_metrics`).
    """
    train_x, train_y = train
    test_x, test_y = test
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = fit_with_reporting(
        model,
        train_x,
        train_y,
        batch_size=batch_size,
        epochs=epochs,
        probe_loss=keras.losses.sparse_categorical_crossentropy,
        validation_split=validation_split,
        validation_data=validation_data,
        progress=progress,
        extra_callbacks=extra_callbacks,
        tensorboard_dir=tensorboard_dir,
    )
    test_loss, test_accuracy = model.evaluate(test_x, test_y, batch_size=1024, verbose=0)
    probabilities = model.predict(test_x, batch_size=1024, verbose=0)
    predicted = np.argmax(probabilities, axis=1)
    result = {
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "confusion_matrix": confusion_matrix(test_y, predicted, num_classes).tolist(),
        "epochs_run": len(history.epoch),
    }
    sequences = len(test_y) // SEQUENCE_LENGTH * SEQUENCE_LENGTH
    if digit_sums and sequences:
        shape = (-1, SEQUENCE_LENGTH)
        metrics = sum_metrics(
            probabilities[:sequences].reshape(*shape, num_classes),
            test_y[:sequences].reshape(shape),
        )
        del metrics["test_digit_accuracy"]  # test_accuracy says it, over every test image
        result.update(metrics)
    return result


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def save_model(model: keras.Model, model_dir: Path | str) -> dict[str, str]:
    """Save in Keras' native format and as .h5 (which the course requires); return file names."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    for file_name in MODEL_FILES.values():
        model.save(model_dir / file_name)
    return dict(MODEL_FILES)
