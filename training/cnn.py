"""The convolutional handwritten-digit classifier for MNIST."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from keras import layers

from training.batch_sizes import default_batch_size, fit_examples
from training.data.prepared import load_prepared_mnist
from training.keras_training import (
    finish_run,
    fit_classifier,
    prepare_run,
)
from training.progress import ProgressReporter

DEFAULT_CONV_FILTERS = (32, 64, 128)
AUGMENT_FRACTION = 0.5  # of the training images distorted before preparation (at most)
MAX_SHIFT = 0.08  # of the image's size: up to 2 pixels


def augmentation_strength(epochs: int) -> float:
    """How much of the augmentation a run of `epochs` gets: (epochs - 1) / epochs.

    Augmentation keeps a model from learning its training images by heart, which takes
    repeated passes; in a single pass every image is new, and distortions and shifts only make
    learning harder (docs/training.md, short runs).
    """
    return (epochs - 1) / epochs


def augmentation_for(epochs: int, augment: bool) -> tuple[float, float]:
    """(share of training images distorted, largest shift as a share of the image's size)."""
    strength = augmentation_strength(epochs) if augment else 0.0
    return AUGMENT_FRACTION * strength, MAX_SHIFT * strength


def batches_for(
    batch_size: int | None, epochs: int, train_count: int, validation_split: float
) -> tuple[int, int]:
    """(batch size, optimizer steps of the whole run): `batch_size`, or the default for the
    examples fit trains on."""
    examples = fit_examples(train_count, validation_split)
    batch_size = batch_size or default_batch_size(examples)
    return batch_size, epochs * math.ceil(examples / batch_size)


def build_mnist_cnn(
    conv_filters: Sequence[int] = DEFAULT_CONV_FILTERS,
    dense_units: int = 128,
    dropout_rate: float = 0.2,
    augment: bool = True,
    shift: float = MAX_SHIFT,
) -> keras.Model:
    """Prepared 28x28 images (0..255) -> 10 softmax outputs.

    Each block is a 3x3 convolution, batch normalization, ReLU and 2x2 max pooling; then
    dropout, a dense layer, dropout and the softmax. With `augment`, training images are shifted
    by up to `shift` of their size (inactive at inference).
    """
    if not conv_filters:
        raise ValueError("The CNN needs at least one convolutional block, e.g. [32, 64].")
    inputs = keras.Input(shape=(28, 28), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = layers.Reshape((28, 28, 1), name="add_channel")(x)
    if augment:
        x = layers.RandomTranslation(shift, shift, fill_mode="constant", name="shift")(x)
    for index, filters in enumerate(conv_filters, start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv_{index}")(x)
        x = layers.BatchNormalization(name=f"batch_norm_{index}")(x)
        x = layers.Activation("relu", name=f"relu_{index}")(x)
        x = layers.MaxPooling2D(name=f"pool_{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout_rate, name="dropout_1")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout_rate, name="dropout_2")(x)
    # float32 softmax even under mixed precision, for numerically stable probabilities.
    outputs = layers.Dense(10, activation="softmax", dtype="float32", name="digit")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def train_cnn(
    *,
    conv_filters: Sequence[int] = DEFAULT_CONV_FILTERS,
    dense_units: int = 128,
    dropout_rate: float = 0.2,
    augment: bool = True,
    learning_rate: float = 0.002,
    batch_size: int | None = None,
    epochs: int = 12,
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
    """Train the CNN with Adam and a cosine-decaying learning rate; save it to `model_dir`.

    Images are prepared as uploads are (`training.data.prepared`); with `augment`, up to half
    the training images are distorted first (`training.augmentation`) and shifted, in
    proportion to `augmentation_strength(epochs)`: none in a 1-epoch run. Without `batch_size`,
    128 or less on small training sets (`default_batch_size`). The result says what was used.
    With `tensorboard_dir`, TensorBoard logs of the training are written there.
    """
    run_facts = prepare_run(seed, mixed_precision)
    distorted_fraction, shift = augmentation_for(epochs, augment)
    train, test = load_prepared_mnist(
        mnist_path,
        train_limit=train_limit,
        test_limit=test_limit,
        augment_fraction=distorted_fraction,
        seed=seed,
    )
    batch_size, total_steps = batches_for(batch_size, epochs, len(train.labels), validation_split)
    model = build_mnist_cnn(conv_filters, dense_units, dropout_rate, augment=shift > 0, shift=shift)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    result = fit_classifier(
        model,
        (train.images, train.labels),
        (test.images, test.labels),
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        batch_size=batch_size,
        epochs=epochs,
        validation_split=validation_split,
        progress=progress,
        tensorboard_dir=tensorboard_dir,
        digit_sums=True,
    )
    result.update(
        batch_size_used=batch_size,
        distorted_fraction=distorted_fraction,
        max_shift_pixels=shift * 28,
    )
    return finish_run(model, result, run_facts, model_dir)
