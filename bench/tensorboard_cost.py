"""What TensorBoard logs cost a job: the same cnn job with and without `tensorboard_dir`.

    MNIST_PATH=../shared/data/mnist.npz python bench/tensorboard_cost.py [--rounds 3]
        [--epochs 2] [--train-limit 12000]

The two alternate, in turns (with first in odd rounds, without first in even ones), so that the
machine's drift falls on both. Each run gives its fit's seconds (the epochs' recorded seconds,
which include the logs written at their ends) and the whole job call's (also the graph traced
and the untrained gradients written before the first epoch); the table gives the median of
each and of the per-round ratios. On a busy machine those ratios are noisy, so the seconds
spent inside the logging callback's hooks are timed too: the cost itself, without the noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.results import write_results
from training import cnn, keras_training
from training.data.prepared import load_prepared_mnist
from training.progress import RecordingReporter
from training.tensorboard_logs import TensorBoardLogs

SEED = 0


class TimedLogs(TensorBoardLogs):
    """The jobs' logging callback, adding up the seconds its hooks take."""

    seconds = 0.0

    def set_model(self, model) -> None:
        self._timed(super().set_model, model)

    def on_train_begin(self, logs=None) -> None:
        self._timed(super().on_train_begin, logs)

    def on_epoch_end(self, epoch, logs=None) -> None:
        self._timed(super().on_epoch_end, epoch, logs)

    def on_test_end(self, logs=None) -> None:  # each epoch's validation
        self._timed(super().on_test_end, logs)

    def on_train_end(self, logs=None) -> None:
        self._timed(super().on_train_end, logs)

    def _timed(self, hook, *arguments) -> None:
        started = time.perf_counter()
        hook(*arguments)
        TimedLogs.seconds += time.perf_counter() - started


def run(epochs: int, train_limit: int, mnist_path: str | None, logs: Path | None) -> dict:
    """One cnn job; its fit's and its call's seconds, and the bytes of logs it wrote."""
    reporter = RecordingReporter()
    TimedLogs.seconds = 0.0
    started = time.perf_counter()
    cnn.train_cnn(
        epochs=epochs,
        train_limit=train_limit,
        seed=SEED,
        mnist_path=mnist_path,
        progress=reporter,
        tensorboard_dir=logs,
    )
    job_seconds = time.perf_counter() - started
    written = sum(path.stat().st_size for path in logs.rglob("*") if path.is_file()) if logs else 0
    return {
        "fit_seconds": sum(entry["seconds"] for entry in reporter.history),
        "job_seconds": job_seconds,
        "log_bytes": written,
        "callback_seconds": TimedLogs.seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=12000)
    args = parser.parse_args()
    mnist_path = os.environ.get("MNIST_PATH")
    keras_training.TensorBoardLogs = TimedLogs  # what fit_with_reporting builds
    # Prepare the images once (the prepared-image cache), as the worker's later jobs find them.
    distorted_fraction, _ = cnn.augmentation_for(args.epochs, augment=True)
    load_prepared_mnist(
        mnist_path, train_limit=args.train_limit, augment_fraction=distorted_fraction, seed=SEED
    )
    runs: dict[str, list[dict]] = {"with logs": [], "without": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(args.rounds):
            order = ["with logs", "without"] if round_index % 2 == 0 else ["without", "with logs"]
            for name in order:
                logs = Path(folder) / f"round-{round_index}" if name == "with logs" else None
                runs[name].append(run(args.epochs, args.train_limit, mnist_path, logs))
            print(f"round {round_index + 1} of {args.rounds} done", flush=True)

    def ratios(measure: str) -> list[float]:
        pairs = zip(runs["with logs"], runs["without"], strict=True)
        return [logged[measure] / bare[measure] for logged, bare in pairs]

    figures = {
        "epochs": args.epochs,
        "train_limit": args.train_limit,
        "runs": runs,
        "fit_ratio_by_round": ratios("fit_seconds"),
        "job_ratio_by_round": ratios("job_seconds"),
        "fit_ratio": statistics.median(ratios("fit_seconds")),
        "job_ratio": statistics.median(ratios("job_seconds")),
        "log_bytes": runs["with logs"][0]["log_bytes"],
        "callback_seconds": statistics.median(run["callback_seconds"] for run in runs["with logs"]),
        "callback_share_of_job": statistics.median(
            run["callback_seconds"] / run["job_seconds"] for run in runs["with logs"]
        ),
    }
    path = write_results("tensorboard_cost", figures, SEED)
    title = f"cnn job, {args.epochs} epochs of {args.train_limit:,} images"
    print(f"| {title} | fit s (median) | job call s (median) |\n| --- | --- | --- |")
    for name, measured in runs.items():
        fit = statistics.median(entry["fit_seconds"] for entry in measured)
        job = statistics.median(entry["job_seconds"] for entry in measured)
        print(f"| {name} | {fit:.1f} | {job:.1f} |")
    cells = [
        f"{figures[f'{measure}_ratio']:.3f} (rounds: "
        + ", ".join(f"{ratio:.3f}" for ratio in figures[f"{measure}_ratio_by_round"])
        + ")"
        for measure in ("fit", "job")
    ]
    print(f"| with / without | {cells[0]} | {cells[1]} |")
    print(
        f"inside the logging callback: {figures['callback_seconds']:.2f} s a job, "
        f"{100 * figures['callback_share_of_job']:.1f}% of the job call (medians)"
    )
    print(f"logs of one job: {figures['log_bytes'] / 1e3:.0f} kB; written to {path}")


if __name__ == "__main__":
    main()
