"""The MNIST calculator: a sequence of 10 digit images -> their sum and the running sums.

Each image is read by a digit classifier (the CNN of `training.cnn`, time-distributed, or a
stored digit model it starts from) into a probability for each digit 0..9. Everything after
that is exact arithmetic on those probabilities, so a calculator is right whenever its digits
are:
- `cumulative`: the course's recurrent layer, one linear unit initialised as an integrator of
  each image's expected digit (input weights 0..9, recurrent weight 1): the running sums;
- `sum`: the last running sum;
- `sum_distribution`: the exact distribution of the sum, 0..90 (the distribution of a sum of
  independent digits is the convolution of theirs).

The arithmetic is fixed; only the digit classifier learns, in one of two ways:
- sums only, as the course did: the likelihood of each observed sum under `sum_distribution`
  teaches the classifier which images are worth what. (Regressing the sum with squared
  error, this project's earlier design, reached a test MAE of 2.3-3.0.)
- with digit labels: each image's digit.
A stored digit model (`digit_model_path`) can be the classifier: kept as it is (nothing to
train) or trained further (`fine_tune`).

What the service answers (`read_sequences`) are the most likely digits and their running sums,
so a sum always equals the digits shown; the job's test metrics measure exactly that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from training.batch_sizes import fit_examples
from training.cnn import (
    AUGMENT_FRACTION,
    DEFAULT_CONV_FILTERS,
    build_mnist_cnn,
)
from training.data.prepared import load_prepared_mnist
from training.data.sequences import (
    SEQUENCE_LENGTH,
    Sequences,
    consecutive_sequences,
    random_sequences,
    sum_metrics,
)
from training.keras_training import (
    PROBE_SIZE,
    finish_run,
    fit_with_reporting,
    make_optimizer,
    prepare_run,
)
from training.progress import ProgressReporter


@keras.saving.register_keras_serializable(package="digits")
def exact_sum_accuracy(y_true, y_pred):
    """The fraction of sums that are right once rounded to the nearest integer."""
    rounded = keras.ops.round(keras.ops.reshape(y_pred, keras.ops.shape(y_true)))
    return keras.ops.mean(keras.ops.cast(keras.ops.equal(rounded, y_true), "float32"))


@keras.saving.register_keras_serializable(package="digits")
class LastStep(layers.Layer):
    """The last position of a (batch, steps) tensor, as (batch, 1)."""

    def call(self, inputs):
        return inputs[:, -1:]


@keras.saving.register_keras_serializable(package="digits")
class StopGradient(layers.Layer):
    """Passes its input on; no gradient flows back through it. (Calculators stored before the
    exact-arithmetic design use it.)"""

    def call(self, inputs):
        return keras.ops.stop_gradient(inputs)


@keras.saving.register_keras_serializable(package="digits")
class SumDistribution(layers.Layer):
    """(batch, steps, 10) digit probabilities -> (batch, 9 * steps + 1): the probability of
    each total, by convolving the digits' distributions one position after another."""

    def call(self, digits):
        total = digits[:, 0, :]
        for position in range(1, digits.shape[1]):
            total = sum(
                keras.ops.pad(total, [[0, 0], [value, 9 - value]])
                * digits[:, position, value : value + 1]
                for value in range(10)
            )
        return total


def build_calculator(
    digit_model: keras.Model | None = None,
    conv_filters: Sequence[int] = DEFAULT_CONV_FILTERS,
    dense_units: int = 128,
    dropout_rate: float = 0.4,
    augment: bool = False,
) -> keras.Model:
    """Outputs: `digits` (N, 10, 10), `cumulative` (N, 10), `sum` (N, 1) and
    `sum_distribution` (N, 91). The digit classifier is `digit_model` when given (a model from
    28x28 images to 10 probabilities), else a new CNN. The arithmetic is fixed, never trained."""
    images = keras.Input(shape=(SEQUENCE_LENGTH, 28, 28), name="images")
    if digit_model is None:
        digit_model = build_mnist_cnn(conv_filters, dense_units, dropout_rate, augment)
    digits = layers.TimeDistributed(digit_model, name="digits")(images)
    integrator = layers.SimpleRNN(
        1,
        activation="linear",
        use_bias=False,
        return_sequences=True,
        dtype="float32",
        name="accumulate",
    )
    running = integrator(digits)
    integrator.set_weights([np.arange(10, dtype="float32")[:, None], np.ones((1, 1), "float32")])
    integrator.trainable = False
    cumulative = layers.Reshape((SEQUENCE_LENGTH,), name="cumulative")(running)
    return keras.Model(
        images,
        {
            "digits": digits,
            "cumulative": cumulative,
            "sum": LastStep(name="sum")(cumulative),
            "sum_distribution": SumDistribution(dtype="float32", name="sum_distribution")(digits),
        },
        name="calculator",
    )


def train_calculator(
    *,
    digit_labels: bool = False,
    digit_model_path: Path | str | None = None,
    fine_tune: bool = False,
    train_sequences: int | None = None,
    conv_filters: Sequence[int] = DEFAULT_CONV_FILTERS,
    dense_units: int = 128,
    dropout_rate: float = 0.4,
    augment: bool = False,
    optimizer: str = "adam",
    learning_rate: float = 0.003,
    batch_size: int = 32,
    epochs: int = 10,
    validation_split: float = 0.1,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int | None = None,
    mixed_precision: bool = False,
    mnist_path: Path | str | None = None,
    model_dir: Path | str | None = None,
    tensorboard_dir: Path | str | None = None,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Train the digit classifier on sequences drawn from the training images (by default as
    many as the images make, each used once per pass), from the sums only or, with
    `digit_labels`, from each image's digit; test on the test images in consecutive groups of
    ten. All images are prepared as uploads are (`training.data.prepared`); with `augment`,
    half the training images are distorted first (it slows learning from sums).

    `digit_model_path` reads digits with a stored digit model: kept as it is, nothing is
    trained (no epoch runs; the calculator is built and tested), or trained further with
    `fine_tune`. Returns the test metrics of what the service answers (`sum_metrics`). With
    `tensorboard_dir`, TensorBoard logs of the training (if any) are written there.
    """
    run_facts = prepare_run(seed, mixed_precision)
    trains = digit_model_path is None or fine_tune
    train_images, test_images = load_prepared_mnist(
        mnist_path,
        train_limit=train_limit if trains else 0,
        test_limit=test_limit,
        augment_fraction=AUGMENT_FRACTION if augment else 0.0,
        seed=seed,
    )
    if len(test_images.labels) < SEQUENCE_LENGTH:
        raise ValueError(f"test_limit must leave at least {SEQUENCE_LENGTH} test images.")
    test = consecutive_sequences(test_images)
    digit_model = None
    if digit_model_path is not None:
        # The stored model may use the course's activations (an mlp with LeCun's tanh).
        from training import activations  # noqa: F401  registers custom objects

        digit_model = keras.saving.load_model(digit_model_path, safe_mode=True)
        digit_model.trainable = fine_tune
    model = build_calculator(digit_model, conv_filters, dense_units, dropout_rate, augment)
    result: dict[str, Any] = {"epochs_run": 0, "train_sequences": 0}
    if trains:
        count = train_sequences or max(1, len(train_images.labels) // SEQUENCE_LENGTH)
        train = random_sequences(train_images, count, np.random.default_rng(seed))
        history = _fit(
            model, train, digit_labels, optimizer, learning_rate, batch_size, epochs,
            validation_split, progress, tensorboard_dir,
        )  # fmt: skip
        result = {"epochs_run": len(history.epoch), "train_sequences": count}
    result |= evaluate_calculator(model, test)
    return finish_run(model, result, run_facts, model_dir)


def _fit(
    model: keras.Model,
    train: Sequences,
    digit_labels: bool,
    optimizer: str,
    learning_rate: float,
    batch_size: int,
    epochs: int,
    validation_split: float,
    progress: ProgressReporter | None,
    tensorboard_dir: Path | str | None,
) -> keras.callbacks.History:
    """Train the digit classifier: on each image's digit, or on the likelihood of each
    observed sum under `sum_distribution` (the course's setting: sums only)."""
    # The one trained output; the others are monitored. Loss and metric objects, not strings:
    # strings do not survive a save and reload.
    trained = "digits" if digit_labels else "sum_distribution"
    losses = {
        name: keras.losses.SparseCategoricalCrossentropy()
        if name in ("digits", "sum_distribution")
        else keras.losses.MeanSquaredError()
        for name in ("digits", "cumulative", "sum", "sum_distribution")
    }
    count = len(train.digits)
    steps = epochs * math.ceil(fit_examples(count, validation_split) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(
        optimizer=make_optimizer(optimizer, schedule),
        loss=losses,
        loss_weights={name: float(name == trained) for name in losses},
        metrics={
            "sum": [keras.metrics.MeanAbsoluteError(name="mae"), exact_sum_accuracy],
            "cumulative": [keras.metrics.MeanAbsoluteError(name="mae")],
        },
    )

    def probe_loss(probe_targets: dict, predictions: dict) -> Any:
        loss = keras.losses.sparse_categorical_crossentropy(
            probe_targets[trained], predictions[trained]
        )
        return keras.ops.mean(loss, axis=1) if trained == "digits" else loss  # per sequence

    return fit_with_reporting(
        model,
        train.images,
        _targets(train),
        batch_size=batch_size,
        epochs=epochs,
        probe_loss=probe_loss,
        validation_split=validation_split,
        progress=progress,
        # As many images as the classifiers' probe: 256 sequences (2,560 images) made the
        # job 1.6x slower than a bare fit.
        probe_size=PROBE_SIZE // SEQUENCE_LENGTH,
        tensorboard_dir=tensorboard_dir,
    )


def evaluate_calculator(model: keras.Model, test: Sequences) -> dict[str, float]:
    """What the service would answer for each test sequence, measured (`sum_metrics`), and
    the MAE of the model's own `sum` output."""
    predictions = model.predict(test.images, batch_size=64, verbose=0)
    raw_sums = predictions["sum"].reshape(-1)
    return sum_metrics(predictions["digits"], test.digits) | {
        "test_raw_sum_mae": float(np.mean(np.abs(raw_sums - test.sums))),
    }


def _targets(sequences: Sequences) -> dict[str, np.ndarray]:
    """A target for every output (Keras expects one per output; unweighted ones cost nothing)."""
    return {
        "digits": sequences.digits,
        "cumulative": sequences.cumulative,
        "sum": sequences.sums.reshape(-1, 1),
        "sum_distribution": sequences.sums.astype("int32"),
    }
