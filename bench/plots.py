"""Rendering the feature-maps plot of the default `cnn`, before and after issue 12, and what a
cached plot costs.

- before: the code at BEFORE (the commit preceding the change), loaded from git so the two run
  side by side: a feature extractor built for every request
  (`training/feature_maps.py`'s `convolution_outputs`) and one matplotlib axes per filter (224
  for the default cnn);
- after, first: the extractor built once (per model, `service.plots.features`), one mosaic per
  layer; after, warm: what every later render of a new image costs;
- cache hit: a GET of a plot already drawn (ETag digest and lookup);
- the training-history figure of a 20-epoch job, rendered and from the cache.

The model is the default cnn architecture (weights do not change the cost), stored and loaded
as the service loads it; the image is an MNIST test digit (MNIST_PATH) or a drawn stroke,
uploaded as a PNG and prepared as predictions prepare it. Every step runs in this process,
one thread (as one request would); times are medians of --repeats runs, wall clock and this
process's CPU time (the latter barely moves when other work shares the machine).

    MNIST_PATH=../shared/data/mnist.npz python bench/plots.py [--repeats 7]

Writes bench/results/plots.json.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.results import write_results  # noqa: E402
from service.plots import figures  # noqa: E402
from service.plots.cache import PngCache, plot_etag  # noqa: E402
from service.plots.png import to_png  # noqa: E402
from service.predict.reading import Upload, prepare_digit  # noqa: E402
from service.settings import Settings  # noqa: E402

BEFORE = "bdc699e26c37f74d695860be5578caefe3f50b1c"


def module_before(path: str) -> types.ModuleType:
    """The module at `path` as it was at BEFORE (whatever became of it since)."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:{path}"], capture_output=True, text=True, check=True,
        cwd=REPO_ROOT,
    ).stdout  # fmt: skip
    module = types.ModuleType(f"before_{Path(path).stem}")
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def digit_png() -> bytes:
    """An MNIST test digit (MNIST_PATH), else a drawn 7, as PNG bytes."""
    mnist = os.environ.get("MNIST_PATH")
    if mnist and Path(mnist).is_file():
        with np.load(mnist) as data:
            image = data["x_test"][3000]
    else:
        image = np.zeros((28, 28), np.uint8)
        image[6:9, 7:21] = 255
        for row in range(9, 23):
            image[row, 20 - (row - 9) // 2 : 23 - (row - 9) // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def median_seconds(step: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of `step`."""
    walls, cpus = [], []
    for _ in range(repeats):
        gc.collect()  # figures are reference cycles: collect the last one's outside the timing
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def history(epochs: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(0)
    return [
        {"epoch": epoch, "loss": 1 / epoch + rng.uniform(0, 0.05),
         "val_loss": 1.1 / epoch + rng.uniform(0, 0.05), "accuracy": 1 - 0.5 / epoch,
         "val_accuracy": 1 - 0.55 / epoch, "seconds": 3.0}
        for epoch in range(1, epochs + 1)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from service.plots.features import feature_extractor
    from service.predict.models import load_stored_model
    from training.cnn import build_mnist_cnn

    # The code before passes the model a bare tensor: Keras warns on every call.
    warnings.filterwarnings("ignore", message="The structure of `inputs`")
    before = module_before("service/plots/figures.py")
    convolution_outputs = module_before("training/feature_maps.py").convolution_outputs
    settings = Settings(_env_file=None)
    upload = Upload("digit.png", digit_png())
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.keras"
        build_mnist_cnn().save(path)
        model = load_stored_model(path)  # loaded once per process by the service too
        image = prepare_digit(upload, settings)

        def render_before() -> bytes:
            image = prepare_digit(upload, settings)
            return to_png(before.feature_maps("bench", convolution_outputs(model, image), image))

        def render_after() -> bytes:
            image = prepare_digit(upload, settings)
            maps = feature_extractor(path)(image)
            return to_png(figures.feature_maps("bench", maps, image))

        render_before()  # first-call costs (fonts, TF kernels) outside the measurements
        after_first = median_seconds(render_after, 1)  # builds the extractor: once per model
        before_s = median_seconds(render_before, args.repeats)
        after_s = median_seconds(render_after, args.repeats)
        before_png, after_png = render_before(), render_after()
        layers = feature_extractor(path)(image)

    cache = PngCache()
    etag = plot_etag("feature_maps", "model-id", hashlib.sha256(upload.data).hexdigest())
    cache.put(etag, after_png)

    def hit() -> bytes | None:
        key = plot_etag("feature_maps", "model-id", hashlib.sha256(upload.data).hexdigest())
        return cache.get(key)

    hit_s, _ = median_seconds(hit, args.repeats * 100)
    entries = history(20)
    history_render_s = median_seconds(
        lambda: to_png(figures.job_history("bench", "cnn", entries)), args.repeats
    )
    cache.put(plot_etag("job_history", "succeeded", "bench", "cnn", entries), b"png")
    history_hit_s, _ = median_seconds(
        lambda: cache.get(plot_etag("job_history", "succeeded", "bench", "cnn", entries)),
        args.repeats * 100,
    )

    results = {
        "model": "default cnn (conv_filters 32, 64, 128: "
        + ", ".join(f"{name} {maps.shape[-1]} filters" for name, maps in layers)
        + ")",
        "filters": sum(maps.shape[-1] for _, maps in layers),
        "repeats": args.repeats,
        "feature_maps_before_s": round(before_s[0], 4),
        "feature_maps_after_s": round(after_s[0], 4),
        "feature_maps_after_first_s": round(after_first[0], 4),
        "feature_maps_speedup": round(before_s[0] / after_s[0], 1),
        "feature_maps_before_cpu_s": round(before_s[1], 4),
        "feature_maps_after_cpu_s": round(after_s[1], 4),
        "feature_maps_after_first_cpu_s": round(after_first[1], 4),
        "feature_maps_speedup_cpu": round(before_s[1] / after_s[1], 1),
        "feature_maps_png_bytes_before": len(before_png),
        "feature_maps_png_bytes_after": len(after_png),
        "feature_maps_cache_hit_s": round(hit_s, 6),
        "history_20_epochs_render_s": round(history_render_s[0], 4),
        "history_20_epochs_render_cpu_s": round(history_render_s[1], 4),
        "history_20_epochs_cache_hit_s": round(history_hit_s, 6),
    }
    print_table(results)
    print(f"\nwritten: {write_results('plots', results, seed=None)}")


def print_table(results: dict) -> None:
    print(f"\n{results['model']}; medians of {results['repeats']} runs\n")
    print("| plot | before s (CPU s) | after s (CPU s) | before / after (CPU) |")
    print("|---|---|---|---|")
    feature = "feature_maps"
    for label, after in (("render", "after"), ("first render of a model", "after_first")):
        row = [results[f"{feature}_{which}{cpu}_s"] for which in ("before", after)
               for cpu in ("", "_cpu")]  # fmt: skip
        print(f"| feature maps, {label} | {row[0]:.3f} ({row[1]:.3f}) | {row[2]:.3f} "
              f"({row[3]:.3f}) | {row[0] / row[2]:.1f} ({row[1] / row[3]:.1f}) |")  # fmt: skip
    before, hit = results["feature_maps_before_s"], results["feature_maps_cache_hit_s"]
    print(f"| feature maps, cached | {before:.3f} | {hit * 1000:.3f} ms | {before / hit:.0f} |")
    render, cached = results["history_20_epochs_render_s"], results["history_20_epochs_cache_hit_s"]
    print(f"| history (20 epochs), cached | {render:.3f} | {cached * 1000:.3f} ms | "
          f"{render / cached:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
