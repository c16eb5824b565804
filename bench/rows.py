"""How well the row splitter cuts rows of 10 MNIST test digits side by side (offline).

The rows are bench/accuracy.py's (`row_of_digits` over its ROW_SHAPES x ROW_GAPS cells, drawn
from the same seed in the same order, so with 10 rows per cell they are that bench's rows);
no service and no model: only `split_row`. A row is split right when it gives 10 boxes whose
centres fall in the 10 digits' true ink spans, in order. Reports the share split right per gap,
per cell and overall, and the splitter's time per row (mean, and the slowest shape's mean).
Results go to bench/results/rows.json (figures, command, commit, seed, machine).

    MNIST_PATH=../shared/data/mnist.npz python bench/rows.py [--rows-per-cell 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.accuracy import ROW_GAPS, ROW_SHAPES, SEED, row_of_digits  # noqa: E402
from bench.results import write_results  # noqa: E402
from training.data.mnist import load_mnist  # noqa: E402
from training.digit_images import NoDigitFound, WrongDigitCount, split_row  # noqa: E402


def split_right(image: np.ndarray, spans: list[tuple[int, int]]) -> tuple[bool, float]:
    """Whether the row is split right, and the seconds `split_row` took."""
    started = time.perf_counter()
    try:
        boxes = [digit.box for digit in split_row(image, 10)]
    except (NoDigitFound, WrongDigitCount):
        return False, time.perf_counter() - started
    seconds = time.perf_counter() - started
    right = all(lo <= x + w / 2 < hi for (x, _, w, _), (lo, hi) in zip(boxes, spans, strict=True))
    return right, seconds


def measure(x_test: np.ndarray, per_cell: int) -> dict:
    rng = np.random.default_rng(SEED)
    by_cell, seconds_by_shape, failures = {}, {}, []
    for height, upscale in ROW_SHAPES:
        shape = f"h{height}x{upscale}"
        seconds_by_shape[shape] = []
        for gap in ROW_GAPS:
            right = 0
            for _ in range(per_cell):
                start = int(rng.integers(0, len(x_test) - 10))
                image, spans = row_of_digits(x_test[start : start + 10], height, gap, rng, upscale)
                ok, seconds = split_right(image, spans)
                right += ok
                seconds_by_shape[shape].append(seconds)
                if not ok:
                    failures.append({"shape": shape, "gap": gap, "start": start})
            by_cell[f"{shape} gap{gap}"] = right / per_cell
    by_gap = {
        str(gap): float(np.mean([v for k, v in by_cell.items() if k.endswith(f" gap{gap}")]))
        for gap in ROW_GAPS
    }
    all_seconds = [s for shape in seconds_by_shape.values() for s in shape]
    return {
        "rows": per_cell * len(by_cell),
        "rows_per_cell": per_cell,
        "split_right": float(np.mean(list(by_cell.values()))),
        "split_right_gaps_0_and_more": float(
            np.mean([v for k, v in by_cell.items() if not k.endswith(" gap-1")])
        ),
        "split_right_by_gap": by_gap,
        "split_right_by_cell": by_cell,
        "ms_per_row_mean": 1000 * float(np.mean(all_seconds)),
        "ms_per_row_by_shape": {
            shape: {
                "mean": 1000 * float(np.mean(seconds)),
                "max": 1000 * float(np.max(seconds)),
            }
            for shape, seconds in seconds_by_shape.items()
        },
        "failures": len(failures),
        "first_failures": failures[:50],
    }


def print_table(figures: dict) -> None:
    shapes = [f"h{height}x{upscale}" for height, upscale in ROW_SHAPES]
    print("\n| gap (px) | " + " | ".join(shapes) + " | all |")
    print("| --- " * (len(shapes) + 2) + "|")
    for gap in ROW_GAPS:
        cells = [figures["split_right_by_cell"][f"{shape} gap{gap}"] for shape in shapes]
        all_cells = figures["split_right_by_gap"][str(gap)]
        print(f"| {gap} | " + " | ".join(f"{c:.0%}" for c in cells) + f" | {all_cells:.1%} |")
    print(
        f"\nsplit right: {figures['split_right']:.1%} of {figures['rows']} rows "
        f"({figures['split_right_gaps_0_and_more']:.1%} at gaps >= 0)"
    )
    times = ", ".join(
        f"{shape} {t['mean']:.2f} (max {t['max']:.1f})"
        for shape, t in figures["ms_per_row_by_shape"].items()
    )
    print(f"split_row ms per row: mean {figures['ms_per_row_mean']:.2f}; {times}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows-per-cell", type=int, default=100)
    parser.add_argument("--name", default="rows", help="bench/results/NAME.json")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    _, test = load_mnist(mnist)
    figures = measure(test.images, args.rows_per_cell)
    print_table(figures)
    if not args.no_write:
        path = write_results(args.name, figures, SEED)
        print(f"written to {path}")
    else:
        print(json.dumps(figures["first_failures"]))


if __name__ == "__main__":
    main()
