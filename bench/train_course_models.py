"""Train course models on the full data and compare with a bare `model.fit` of the same model.

For each model: its test metric and seconds per epoch as trained by the job code (with the
service's reporting and gradient-statistics callbacks), then the same model, data, optimizer
and epochs trained by a bare `model.fit` with no callbacks; the ratio is the callbacks' cost.

    MNIST_PATH=../shared/data/mnist.npz python bench/train_course_models.py [--models cnn mlp]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from bench.results import write_results
from training import calculator, cnn, mlp
from training.data.prepared import load_prepared_mnist
from training.keras_training import make_optimizer
from training.progress import RecordingReporter


@dataclass
class Case:
    name: str
    run_job: Callable[[str | None, RecordingReporter], dict[str, Any]]
    bare_fit: Callable[[str | None], float]  # returns seconds per epoch
    metric: str


def mlp_case(epochs: int) -> Case:
    params = dict(
        hidden_units=[512],
        activation="relu",
        dropout_rate=0.2,
        optimizer="sgd",
        learning_rate=0.01,
        batch_size=128,
        epochs=epochs,
        seed=0,
    )  # the course's settings

    def bare(mnist_path: str | None) -> float:
        train, _ = load_prepared_mnist(mnist_path)
        model = mlp.build_mlp([512], "relu", None, 0.2, 0.0)
        model.compile(
            optimizer=make_optimizer("sgd", 0.01),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return _timed_fit(model, train.images, train.labels, 128, epochs, 0.1)

    return Case(
        "mlp 512 relu (course)",
        lambda path, reporter: mlp.train_mlp(**params, mnist_path=path, progress=reporter),
        bare,
        "test_accuracy",
    )


def cnn_case(epochs: int) -> Case:
    def bare(mnist_path: str | None) -> float:
        train, _ = load_prepared_mnist(
            mnist_path, augment_fraction=cnn.AUGMENT_FRACTION, seed=0
        )  # the same images as the job's
        steps = epochs * math.ceil(len(train.labels) * 0.9 / 128)
        model = cnn.build_mnist_cnn()
        schedule = keras.optimizers.schedules.CosineDecay(0.002, decay_steps=steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return _timed_fit(model, train.images, train.labels, 128, epochs, 0.1)

    return Case(
        "cnn (defaults)",
        lambda path, reporter: cnn.train_cnn(
            epochs=epochs, seed=0, mnist_path=path, progress=reporter
        ),
        bare,
        "test_accuracy",
    )


def calculator_case(epochs: int, digit_labels: bool) -> Case:
    def bare(mnist_path: str | None) -> float:
        import numpy as np

        train, _ = load_prepared_mnist(
            mnist_path, augment_fraction=cnn.AUGMENT_FRACTION, seed=0
        )  # the same images as the job's
        sequences = calculator.random_sequences(train, 6000, np.random.default_rng(0))
        model = calculator.build_calculator()
        losses = {
            "digits": "sparse_categorical_crossentropy",
            "cumulative": "mse",
            "sum": "mse",
            "sum_distribution": "sparse_categorical_crossentropy",
        }
        if digit_labels:
            weights = {"digits": 1.0, "cumulative": 0.01, "sum": 0.0, "sum_distribution": 0.0}
        else:
            weights = {"digits": 0.0, "cumulative": 0.0, "sum": 0.0, "sum_distribution": 1.0}
        targets = {
            "digits": sequences.digits,
            "cumulative": sequences.cumulative,
            "sum": sequences.sums[:, None],
            "sum_distribution": sequences.sums.astype("int32"),
        }
        model.compile(optimizer=make_optimizer("adam", 0.001), loss=losses, loss_weights=weights)
        return _timed_fit(model, sequences.images, targets, 32, epochs, 0.1)

    label = "digit labels" if digit_labels else "sum labels only"
    return Case(
        f"calculator ({label})",
        lambda path, reporter: calculator.train_calculator(
            digit_labels=digit_labels, epochs=epochs, seed=0, mnist_path=path, progress=reporter
        ),
        bare,
        "test_sum_mae",
    )


def _timed_fit(model, inputs, targets, batch_size, epochs, validation_split) -> float:
    started = time.perf_counter()
    model.fit(
        inputs,
        targets,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=validation_split,
        verbose=0,
    )
    return (time.perf_counter() - started) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["cnn", "mlp", "calculator"],
        choices=["cnn", "mlp", "calculator"],
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for every model (default: each model's own)",
    )
    args = parser.parse_args()
    mnist_path = os.environ.get("MNIST_PATH")
    cases = []
    if "cnn" in args.models:
        cases.append(cnn_case(args.epochs or 8))
    if "mlp" in args.models:
        cases.append(mlp_case(args.epochs or 10))
    if "calculator" in args.models:
        cases.append(calculator_case(args.epochs or 10, digit_labels=False))
        cases.append(calculator_case(args.epochs or 10, digit_labels=True))

    rows = []
    for case in cases:
        reporter = RecordingReporter()
        result = case.run_job(mnist_path, reporter)
        job_seconds = sum(entry["seconds"] for entry in reporter.history) / len(reporter.history)
        bare_seconds = case.bare_fit(mnist_path)
        rows.append(
            (
                case.name,
                case.metric,
                result[case.metric],
                len(reporter.history),
                job_seconds,
                bare_seconds,
            )
        )
        print(f"done: {case.name}", flush=True)

    write_results(
        "train_course_models",
        {
            name: {
                metric: value,
                "epochs": epochs,
                "job_seconds_per_epoch": job_seconds,
                "bare_fit_seconds_per_epoch": bare_seconds,
            }
            for name, metric, value, epochs, job_seconds, bare_seconds in rows
        },
        seed=0,
    )
    print()
    print("| model | metric | value | epochs | s/epoch (job) | s/epoch (bare fit) | job / bare |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, metric, value, epochs, job_seconds, bare_seconds in rows:
        print(
            f"| {name} | {metric} | {value:.4f} | {epochs} | {job_seconds:.1f} | "
            f"{bare_seconds:.1f} | {job_seconds / bare_seconds:.2f} |"
        )


if __name__ == "__main__":
    main()
