"""The course's fixed-topology CNN for SVHN's cropped house-number digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from training.data.svhn import load_svhn
from training.keras_training import (
    finish_run,
    fit_classifier,
    make_optimizer,
    prepare_run,
)
from training.progress import ProgressReporter

COURSE_FILTERS = (9, 36, 49)
COURSE_VALIDATION_SIZE = 7326


def build_svhn_cnn() -> keras.Model:
    """Exactly the course's topology: three 3x3 convolutions with 9, 36 and 49 filters, each
    followed by 3x3 max pooling, then flatten and a softmax over the 10 digits."""
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    for index, filters in enumerate(COURSE_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{index}")(x)
        x = layers.MaxPooling2D(pool_size=3, name=f"pool_{index}")(x)  # 32 -> 10 -> 3 -> 1
    x = layers.Flatten(name="flatten")(x)
    # float32 softmax even under mixed precision, for numerically stable probabilities.
    outputs = layers.Dense(10, activation="softmax", dtype="float32", name="digit")(x)
    return keras.Model(inputs, outputs, name="svhn_cnn")


def split_validation(
    images: np.ndarray, labels: np.ndarray, size: int, seed: int | None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Draw `size` examples at random for validation; the rest, in order, are for training."""
    if not 0 < size < len(labels):
        raise ValueError(
            f"validation_size={size} must be between 1 and the training set's size minus one "
            f"({len(labels) - 1}); lower it, or raise train_limit."
        )
    chosen = np.random.default_rng(seed).choice(len(labels), size=size, replace=False)
    is_validation = np.zeros(len(labels), dtype=bool)
    is_validation[chosen] = True
    return (images[~is_validation], labels[~is_validation]), (
        images[is_validation],
        labels[is_validation],
    )


def train_svhn_cnn(
    *,
    validation_size: int = COURSE_VALIDATION_SIZE,
    patience: int = 3,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    batch_size: int = 128,
    epochs: int = 30,
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int | None = None,
    mixed_precision: bool = False,
    svhn_dir: Path | str | None = None,
    model_dir: Path | str | None = None,
    tensorboard_dir: Path | str | None = None,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Train with early stopping on validation loss (best weights restored); save the model;
    TensorBoard logs into `tensorboard_dir` when given."""
    run_facts = prepare_run(seed, mixed_precision)
    train, test = load_svhn(svhn_dir)
    train, test = train.head(train_limit), test.head(test_limit)
    fit_set, validation = split_validation(train.images, train.labels, validation_size, seed)
    model = build_svhn_cnn()
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    result = fit_classifier(
        model,
        fit_set,
        (test.images, test.labels),
        optimizer=make_optimizer(optimizer, learning_rate),
        batch_size=batch_size,
        epochs=epochs,
        validation_data=validation,
        progress=progress,
        tensorboard_dir=tensorboard_dir,
        extra_callbacks=(early_stopping,),
    )
    result["stopped_early"] = result["epochs_run"] < epochs
    return finish_run(model, result, run_facts, model_dir)
