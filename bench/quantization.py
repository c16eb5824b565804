"""What SERVE_QUANTIZED changes: the default cnn as the API runs it (`compiled_predict`, LiteRT
with one thread) with float weights and with 8-bit weights, on MNIST's 10,000 test digits
prepared as uploads are: the digits read, how far the probabilities move, and the time of a
model call on a batch of 64 and on one image (rounds alternating the two, medians). Then
through the HTTP API: the same model stored and served by an API with SERVE_QUANTIZED off and
one with it on, each sent the 10,000 test digits as PNG files on POST /predict/digit; each
API's probabilities are compared with its runtime's in this process.

The cnn is trained here with the preset's defaults (`train_cnn`, seed 0, about 6 minutes on a
2-core CPU) unless --model names a stored model.keras.

    MNIST_PATH=../shared/data/mnist.npz .venv/bin/python bench/quantization.py [--model PATH]

The APIs use Redis DB 11 at BENCH_REDIS_URL (default redis://127.0.0.1:6379/11), which must be
empty; it is emptied again at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.accuracy import read_digits
from bench.results import write_results
from service.models.store import ModelStore
from service.predict.models import read_stored_model
from service.predict.runtime import compiled_predict
from tests.stack import ServiceStack
from training.data.mnist import load_mnist
from training.data.prepared import load_prepared_mnist

SEED = 0
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
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


def served_probabilities(model_path: Path, quantized: bool) -> np.ndarray:
    """The probabilities an API (SERVE_QUANTIZED as given) answers for MNIST's test digits
    uploaded as PNG files, the model stored as a worker stores one."""
    base, db = BENCH_REDIS_URL.rsplit("/", 1)
    with tempfile.TemporaryDirectory() as scratch:
        stack = ServiceStack(int(db), Path(scratch), redis_base=base, LOG_LEVEL="WARNING",
                             SERVE_QUANTIZED=str(quantized).lower())  # fmt: skip
        stack.start(worker=False)
        try:
            store = ModelStore(stack.redis, Path(scratch) / "artifacts")
            model_id = uuid.uuid4().hex
            store.model_dir(model_id).mkdir(parents=True)
            shutil.copy(model_path, store.model_dir(model_id) / "model.keras")
            store.register(model_id, "cnn", "bench", {}, {}, {"keras": "model.keras"})
            _, test = load_mnist(mnist_path())
            readings = read_digits(stack, list(test.images), model=model_id)
        finally:
            stack.stop()
    return np.array([reading["probabilities"] for reading in readings])


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
    if Redis.from_url(BENCH_REDIS_URL).dbsize():
        sys.exit(f"Redis DB {BENCH_REDIS_URL} is not empty; this bench empties it.")
    with tempfile.TemporaryDirectory() as scratch:
        path = args.model or trained_model(Path(scratch))
        model = read_stored_model(path)
        runtimes = {"float": compiled_predict(model), "8-bit": compiled_predict(model, True)}
        served = {name: served_probabilities(path, name == "8-bit") for name in runtimes}
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
    served_read = {name: output.argmax(axis=1) for name, output in served.items()}
    figures["http"] = {
        "accuracy": {name: float(np.mean(r == test.labels)) for name, r in served_read.items()},
        "wrong": {name: int(np.sum(r != test.labels)) for name, r in served_read.items()},
        "digits_changed": int(np.sum(served_read["8-bit"] != served_read["float"])),
        "probability_moved": float(np.abs(served["8-bit"] - served["float"]).max()),
        # Each API against its runtime in this process on the same digits: float noise only.
        "float_api_vs_float_model": float(np.abs(served["float"] - outputs["float"]).max()),
        "8_bit_api_vs_8_bit_model": float(np.abs(served["8-bit"] - outputs["8-bit"]).max()),
    }
    print("| weights | test accuracy | wrong | ms for 64 | ms for 1 |")
    print("|---|---|---|---|---|")
    for name in runtimes:
        ms = figures["ms_per_call"][name]
        print(f"| {name} | {figures['accuracy'][name]:.2%} | {figures['wrong'][name]} | "
              f"{ms['64']:.2f} | {ms['1']:.3f} |")  # fmt: skip
    print(f"digits changed: {figures['digits_changed']}; probabilities moved by at most "
          f"{moved.max():.3f} (mean {moved.mean():.5f}); 8-bit is {speedup['64']:.1f}x faster "
          f"for 64, {speedup['1']:.1f}x for 1")  # fmt: skip
    http = figures["http"]
    print(
        f"through POST /predict/digit: float {http['accuracy']['float']:.2%}, 8-bit "
        f"{http['accuracy']['8-bit']:.2%}, {http['digits_changed']} digits changed; the float "
        f"API differs from the float model by at most {http['float_api_vs_float_model']:.2g}, "
        f"the 8-bit API from the 8-bit model by {http['8_bit_api_vs_8_bit_model']:.2g}"
    )
    print(f"written to {write_results('quantization', figures, seed=SEED)}")


if __name__ == "__main__":
    main()
