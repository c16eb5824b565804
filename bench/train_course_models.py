"""Train course models on the full data and compare with a bare `model.fit` of the same model.

For each model: its test metric and seconds per epoch as trained by the job code (with the
service's reporting and gradient-statistics callbacks and TensorBoard logs, as a worker runs
it), then the same model, data, optimizer and epochs trained by a bare `model.fit` with no
callbacks; the ratio is the callbacks' cost.

    MNIST_PATH=../shared/data/mnist.npz python bench/train_course_models.py [--models cnn mlp]
        [--rounds 3] [--train-limit 12000]

With `--rounds`, job and bare fit alternate that many times (the machine's drift falls on
both) and the table gives the median of each; `--train-limit` trains on the first N images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
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
    run_job: Callable[[str | None, RecordingReporter, str], dict[str, Any]]  # + the logs' folder
    bare_fit: Callable[[str | None], float]  # returns seconds per epoch
    metric: str


def mlp_case(epochs: int, train_limit: int | None) -> Case:
    params = dict(
        hidden_units=[512],
        activation="relu",
        dropout_rate=0.2,
        optimizer="sgd",
        learning_rate=0.01,
        batch_size=128,
        epochs=epochs,
        seed=0,
        train_limit=train_limit,
    )  # the course's settings

    def bare(mnist_path: str | None) -> float:
        train, _ = load_prepared_mnist(mnist_path, train_limit=train_limit)
        model = mlp.build_mlp([512], "relu", None, 0.2, 0.0)
        model.compile(
            optimizer=make_optimizer("sgd", 0.01),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return _timed_fit(model, train.images, train.labels, 128, epochs, 0.1)

    return Case(
        "mlp 512 relu (course)",
        lambda path, reporter, logs: mlp.train_mlp(
            **params, mnist_path=path, progress=reporter, tensorboard_dir=logs
        ),
        bare,
        "test_accuracy",
    )


def cnn_case(epochs: int, train_limit: int | None) -> Case:
    distorted_fraction, shift = cnn.augmentation_for(epochs, augment=True)

    def bare(mnist_path: str | None) -> float:
        train, _ = load_prepared_mnist(
            mnist_path, train_limit=train_limit, augment_fraction=distorted_fraction, seed=0
        )  # the same images as the job's
        batch_size, steps = cnn.batches_for(None, epochs, len(train.labels), 0.1)
        model = cnn.build_mnist_cnn(augment=shift > 0, shift=shift)
        schedule = keras.optimizers.schedules.CosineDecay(0.002, decay_steps=steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return _timed_fit(model, train.images, train.labels, batch_size, epochs, 0.1)

    return Case(
        "cnn (defaults)",
        lambda path, reporter, logs: cnn.train_cnn(
            epochs=epochs,
            seed=0,
            train_limit=train_limit,
            mnist_path=path,
            progress=reporter,
            tensorboard_dir=logs,
        ),
        bare,
        "test_accuracy",
    )


def calculator_case(epochs: int, digit_labels: bool) -> Case:
    def bare(mnist_path: str | None) -> float:
        import numpy as np

        train, _ = load_prepared_mnist(mnist_path, seed=0)  # the job's (no distortions)
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
        lambda path, reporter, logs: calculator.train_calculator(
            digit_labels=digit_labels,
            epochs=epochs,
            seed=0,
            mnist_path=path,
            progress=reporter,
            tensorboard_dir=logs,
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
    parser.add_argument("--rounds", type=int, default=1, help="job and bare fit alternated")
    parser.add_argument("--train-limit", type=int, default=None, help="cnn and mlp only")
    args = parser.parse_args()
    mnist_path = os.environ.get("MNIST_PATH")
    cases = []
    if "cnn" in args.models:
        cases.append(cnn_case(args.epochs or 8, args.train_limit))
    if "mlp" in args.models:
        cases.append(mlp_case(args.epochs or 10, args.train_limit))
    if "calculator" in args.models:
        cases.append(calculator_case(args.epochs or 10, digit_labels=False))
        cases.append(calculator_case(args.epochs or 10, digit_labels=True))

    figures = {}
    for case in cases:
        job_seconds, bare_seconds, ratios = [], [], []
        for _ in range(args.rounds):
            reporter = RecordingReporter()
            with tempfile.TemporaryDirectory() as logs:
                result = case.run_job(mnist_path, reporter, logs)
            epochs = len(reporter.history)
            job_seconds.append(sum(entry["seconds"] for entry in reporter.history) / epochs)
            bare_seconds.append(case.bare_fit(mnist_path))
            ratios.append(job_seconds[-1] / bare_seconds[-1])
        figures[case.name] = {
            case.metric: result[case.metric],
            "epochs": epochs,
            "train_limit": args.train_limit,
            "job_seconds_per_epoch": statistics.median(job_seconds),
            "bare_fit_seconds_per_epoch": statistics.median(bare_seconds),
            "job_over_bare": statistics.median(ratios),
            "job_over_bare_by_round": ratios,
        }
        print(f"done: {case.name}", flush=True)

    write_results("train_course_models", figures, seed=0)
    print()
    print("| model | metric | value | epochs | s/epoch (job) | s/epoch (bare fit) | job / bare |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, row in figures.items():
        metric = next(iter(row))
        print(
            f"| {name} | {metric} | {row[metric]:.4f} | {row['epochs']} | "
            f"{row['job_seconds_per_epoch']:.1f} | {row['bare_fit_seconds_per_epoch']:.1f} | "
            f"{row['job_over_bare']:.2f} (rounds: "
            f"{', '.join(f'{r:.2f}' for r in row['job_over_bare_by_round'])}) |"
        )


if __name__ == "__main__":
    main()
