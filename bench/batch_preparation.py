"""Preparing a batch client's 64 raw 28x28 arrays: `to_mnist` image by image
(`prepare_images`) against `prepare_batch`, on the same batches in the same run; and the
request decoding of TF Serving's `:predict` and KServe v2 infer bodies, before and after.

    MNIST_PATH=../shared/data/mnist.npz python bench/batch_preparation.py [--batches 20]

Each batch is 64 MNIST test digits drawn at random (seeded); each round times every batch both
ways, the order alternating between rounds. Figures are medians over batches and rounds, in
milliseconds a batch of 64. Both preparations are checked to give the same arrays.

The preparation is timed twice: in this process, with the allocator as the environment leaves
it, and in a child process with glibc's mmap and trim thresholds raised (MALLOC_TUNING), where
arrays of over 128 kB are not mapped afresh (and faulted in page by page) at every allocation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.results import write_results
from service.api.json_body import loads_json
from service.predict.tensors import Tensor, tensor_instances
from training.batch_preparation import prepare_batch
from training.data.mnist import load_mnist
from training.data.prepared import prepare_images

SEED = 0
BATCH = 64
PER_IMAGE = "to_mnist per image (prepare_images)"
BATCHED = "prepare_batch"
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "134217728"}


def timed(run: Callable[[], Any]) -> float:
    """Milliseconds `run` takes."""
    started = time.perf_counter()
    run()
    return 1000 * (time.perf_counter() - started)


def page_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def preparation(batches: list[np.ndarray], rounds: int) -> dict[str, Any]:
    """Both preparations on every batch, `rounds` times, alternating which goes first."""
    for batch in batches:
        np.testing.assert_array_equal(prepare_batch(batch), prepare_images(batch))
    ways = {PER_IMAGE: prepare_images, BATCHED: prepare_batch}
    times: dict[str, list[float]] = {name: [] for name in ways}
    faults = dict.fromkeys(ways, 0)
    ratios = []
    for round_index in range(rounds):
        order = list(ways) if round_index % 2 == 0 else list(reversed(ways))
        for batch in batches:
            taken = {}
            for name in order:
                before = page_faults()
                taken[name] = timed(lambda name=name, batch=batch: ways[name](batch))
                faults[name] += page_faults() - before
            for name, value in taken.items():
                times[name].append(value)
            ratios.append(taken[PER_IMAGE] / taken[BATCHED])
    return {
        "malloc_env": {name: os.environ.get(name) for name in MALLOC_TUNING},
        "page_faults_per_batch": {
            name: value / (rounds * len(batches)) for name, value in faults.items()
        },
        "ms_per_batch": {name: statistics.median(values) for name, values in times.items()},
        "ms_per_batch_range": {name: [min(v), max(v)] for name, v in times.items()},
        "us_per_image": {
            name: 1000 * statistics.median(values) / BATCH for name, values in times.items()
        },
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "equal": True,  # checked above, batch by batch
    }


def decoding(batches: list[np.ndarray], repeats: int) -> dict[str, dict[str, float]]:
    """Reading the bodies of one batch: JSON, then the arrays as the routes read them."""
    batch = batches[0]
    v1 = json.dumps({"instances": batch.tolist()}).encode()
    data = batch.ravel().tolist()
    v2 = json.dumps({"inputs": [{"name": "image", "shape": list(batch.shape),
                                 "datatype": "UINT8", "data": data}]}).encode()  # fmt: skip
    instances = json.loads(v1)["instances"]
    tensor = Tensor("image", "UINT8", batch.shape, data)
    steps = {
        "TF Serving body, json.loads": lambda: json.loads(v1),
        "TF Serving body, loads_json": lambda: loads_json(v1),
        "v2 body, json.loads": lambda: json.loads(v2),
        "v2 body, loads_json": lambda: loads_json(v2),
        "instances, np.asarray each": lambda: [np.asarray(i, np.float32) for i in instances],
        "instances, one np.asarray": lambda: np.asarray(instances, np.float32),
        "v2 tensor -> instances": lambda: tensor_instances(tensor),
    }
    return {
        name: {"ms": statistics.median(timed(step) for _ in range(repeats))}
        for name, step in steps.items()
    }


def tuned_preparation(args: argparse.Namespace) -> dict[str, Any]:
    """`preparation` in a child process with MALLOC_TUNING, on the same batches."""
    command = [sys.executable, __file__, "--child", "--batches", str(args.batches),
               "--rounds", str(args.rounds)]  # fmt: skip
    child = subprocess.run(
        command, env={**os.environ, **MALLOC_TUNING}, capture_output=True, text=True, check=True
    )
    return json.loads(child.stdout)


def print_preparation(title: str, prepared: dict[str, Any]) -> None:
    print(f"\n{title}\n| preparation of {BATCH} arrays | ms a batch (median) | range | "
          "us an image | page faults a batch |\n| --- | --- | --- | --- | --- |")  # fmt: skip
    for name, value in prepared["ms_per_batch"].items():
        low, high = prepared["ms_per_batch_range"][name]
        print(f"| {name} | {value:.2f} | {low:.2f} to {high:.2f} | "
              f"{prepared['us_per_image'][name]:.1f} | "
              f"{prepared['page_faults_per_batch'][name]:.0f} |")  # fmt: skip
    low, high = prepared["ratio_range"]
    print(f"ratio (same batch, same round): {prepared['ratio']:.1f}x ({low:.1f}x to {high:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    _, test = load_mnist(os.environ.get("MNIST_PATH"))
    rng = np.random.default_rng(SEED)
    batches = [test.images[rng.choice(len(test.images), BATCH, replace=False)]
               for _ in range(args.batches)]  # fmt: skip
    if args.child:
        print(json.dumps(preparation(batches, args.rounds)))
        return
    figures = {
        "images_per_batch": BATCH,
        "batches": args.batches,
        "rounds": args.rounds,
        "preparation": preparation(batches, args.rounds),
        "preparation_malloc_tuned": tuned_preparation(args),
        "decoding": decoding(batches, repeats=20),
    }
    path = write_results("batch_preparation", figures, SEED)
    print_preparation("Allocator as the environment leaves it:", figures["preparation"])
    print_preparation(
        f"With {' '.join(f'{k}={v}' for k, v in MALLOC_TUNING.items())}:",
        figures["preparation_malloc_tuned"],
    )
    print("\n| reading one batch's body | ms |\n| --- | --- |")
    for name, row in figures["decoding"].items():
        print(f"| {name} | {row['ms']:.2f} |")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
