"""What the prepared-image cache saves a job: preparing MNIST training images without it, into
an empty cache, and from a warm one (as a sweep's second cell, or a job run again, does).

    MNIST_PATH=../shared/data/mnist.npz python bench/prepared_cache.py [--images 10000]

Half the images are distorted first, as a default cnn job's are (seed 0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_results
from training.data.mnist import load_mnist
from training.data.prepared import prepare_dataset
from training.data.prepared_cache import PreparedCache

SEED = 0
AUGMENT_FRACTION = 0.5


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000)
    args = parser.parse_args()
    train, _ = load_mnist(os.environ.get("MNIST_PATH"))
    images = train.images[: args.images]
    with tempfile.TemporaryDirectory() as folder:
        cache = PreparedCache(Path(folder))

        def prepare(cache: PreparedCache | None = cache) -> None:
            prepare_dataset(images, AUGMENT_FRACTION, SEED, cache)

        seconds = {
            "no cache": timed(lambda: prepare(None)),
            "empty cache (prepared and written)": timed(prepare),
            "warm cache (read)": timed(prepare),
        }
        cache_bytes = sum(path.stat().st_size for path in Path(folder).glob("*.npy"))
    baseline = seconds["no cache"]
    figures = {
        "images": len(images),
        "augment_fraction": AUGMENT_FRACTION,
        "seconds": seconds,
        "ms_per_image": {name: 1000 * value / len(images) for name, value in seconds.items()},
        "relative_to_no_cache": {name: value / baseline for name, value in seconds.items()},
        "cache_bytes": cache_bytes,
    }
    path = write_results("prepared_cache", figures, SEED)
    print("| preparation | seconds | ms an image | vs no cache |\n| --- | --- | --- | --- |")
    for name, value in seconds.items():
        print(f"| {name} | {value:.2f} | {figures['ms_per_image'][name]:.3f} | "
              f"{figures['relative_to_no_cache'][name]:.3f} |")  # fmt: skip
    print(f"cache: {cache_bytes / 1e6:.1f} MB; written to {path}")


if __name__ == "__main__":
    main()
