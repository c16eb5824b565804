"""What SERVE_QUANTIZED changes: the default cnn as the API runs it (`compiled_predict`, LiteRT
with one thread) with float weights and with 8-bit weights, on MNIST's 10,000 test digits
prepared as uploads are: the digits read, how far the probabilities move, and the time of a
model call on a batch of 64 and on one image (rounds alternating the two, medians).

The cnn is trained here with the preset's defaults (`train_cnn`, seed 0, about 6 minutes on a
2-core CPU) unless --model names a stored model.keras.

    MNIST_PATH=../shared/data/mnist.npz .venv/bin/python bench/quantization.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_results
from service.predict.models import read_stored_model
from service.predict.runtime import compiled_predict
from training.data.prepared import load_prepared_mnist

SEED = 0
BATCH = 64
ROUNDS = 5
CALLS = 30  # per round and runtime


def mnist_path() -> str:
    return os.environ.get(
        "MNIST_PATH", str(Path(__file__).resolve().parents[2] / "shared/data/mnist.npz")
    )


def trained_model(folder: Path) -> Path:
    from training.cnn import train_cnn

    started = time.monotonic()
    result = train_cnn(seed=SEED, mnist_path=mnist_path(), model_dir=folder)
    print(f"trained the default cnn in {time.monotonic() - started:.0f} s: "
          f"test accuracy {result['test_accuracy']:.4f}", flush=True)  # fmt: skip
    return folder / "model.keras"


def timed(predict, inputs: np.ndarray) -> float:
    """Milliseconds a call, over CALLS calls."""
    started = time.perf_counter()
    for _ in range(CALLS):
        predict(inputs)
    return (time.perf_counter() - started) / CALLS * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a stored model.keras (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.model or trained_model(Path(scratch))
        model = read_stored_model(path)
        runtimes = {"float": compiled_predict(model), "8-bit": compiled_predict(model, True)}
    for name, predict in runtimes.items():
        if predict.__qualname__.endswith("graph_predict"):
            raise SystemExit(f"The {name} model did not run on LiteRT; nothing to compare.")
    _, test = load_prepared_mnist(mnist_path(), train_limit=1)
    outputs = {
        name: np.concatenate(
            [predict(test.images[i : i + BATCH]) for i in range(0, len(test.labels), BATCH)]
        )
        for name, predict in runtimes.items()
    }
    read = {name: output.argmax(axis=1) for name, output in outputs.items()}
    moved = np.abs(outputs["8-bit"] - outputs["float"])
    times: dict[str, dict[str, list[float]]] = {name: {"64": [], "1": []} for name in runtimes}
    for round_ in range(ROUNDS):
        order = list(runtimes) if round_ % 2 == 0 else list(reversed(runtimes))
        for name in order:
            times[name]["64"].append(timed(runtimes[name], test.images[:BATCH]))
            times[name]["1"].append(timed(runtimes[name], test.images[:1]))
    figures = {
        "model": str(args.model)
        if args.model
        else f"train_cnn(seed={SEED}), the preset's defaults",
        "test_digits": len(test.labels),
        "accuracy": {name: float(np.mean(r == test.labels)) for name, r in read.items()},
        "wrong": {name: int(np.sum(r != test.labels)) for name, r in read.items()},
        "digits_changed": int(np.sum(read["8-bit"] != read["float"])),
        "probability_moved": {"max": float(moved.max()), "mean": float(moved.mean())},
        "ms_per_call": {
            name: {size: statistics.median(values) for size, values in by_size.items()}
            for name, by_size in times.items()
        },
        "rounds": ROUNDS,
        "calls_per_round": CALLS,
    }
    speedup = {
        size: figures["ms_per_call"]["float"][size] / figures["ms_per_call"]["8-bit"][size]
        for size in ("64", "1")
    }
    figures["speedup"] = speedup
    print("| weights | test accuracy | wrong | ms for 64 | ms for 1 |")
    print("|---|---|---|---|---|")
    for name in runtimes:
        ms = figures["ms_per_call"][name]
        print(f"| {name} | {figures['accuracy'][name]:.2%} | {figures['wrong'][name]} | "
              f"{ms['64']:.2f} | {ms['1']:.3f} |")  # fmt: skip
    print(f"digits changed: {figures['digits_changed']}; probabilities moved by at most "
          f"{moved.max():.3f} (mean {moved.mean():.5f}); 8-bit is {speedup['64']:.1f}x faster "
          f"for 64, {speedup['1']:.1f}x for 1")  # fmt: skip
    print(f"written to {write_results('quantization', figures, seed=SEED)}")


if __name__ == "__main__":
    main()
