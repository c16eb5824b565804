"""How well the row splitter cuts rows of 10 handwritten digits side by side (offline).

Two sets of rows, each its own table and its own figures:

- MNIST: bench/accuracy.py's rows of 10 MNIST test digits (`row_of_digits` over its ROW_SHAPES
  x ROW_GAPS cells, drawn from the same seed in the same order, so with 10 rows per cell they
  are that bench's rows).
- scikit-learn's `load_digits`: 1,797 real 8x8 digits (0..16, light on dark) by 43 other
  writers than MNIST's, each scaled to 0..255 and enlarged (x2 and x4 bilinear, x3 nearest
  for a blocky scan), cropped to its ink, 10 consecutive ones placed side by side at each of
  ROW_GAPS with the same ups and downs as MNIST's rows (their own generator, same seed).

No service and no model: only `split_row`. A row is split right when it gives 10 boxes whose
centres fall in the 10 digits' true ink spans, in order. Reports the share split right per
gap, per cell and overall, and the splitter's time per row (mean, and the slowest shape's
mean). Results go to bench/results/rows.json (figures, command, commit, seed, machine): the
MNIST rows' figures at the top level, the scikit-learn rows' under "sklearn_rows".

    MNIST_PATH=../shared/data/mnist.npz python bench/rows.py [--rows-per-cell 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.accuracy import ROW_GAPS, ROW_SHAPES, SEED, row_of_digits  # noqa: E402
from bench.results import write_results  # noqa: E402
from training.data.mnist import load_mnist  # noqa: E402
from training.digit_images import NoDigitFound  # noqa: E402
from training.digit_rows import WrongDigitCount, split_row  # noqa: E402

# load_digits' 8x8 digits enlarged: name, times, interpolation.
SKLEARN_SHAPES = [
    ("x2lin", 2, cv2.INTER_LINEAR),
    ("x3near", 3, cv2.INTER_NEAREST),
    ("x4lin", 4, cv2.INTER_LINEAR),
]

# A cell's rows: given the generator, an image, its digits' ink spans and where they came from.
RowMaker = Callable[[np.random.Generator], tuple[np.ndarray, list[tuple[int, int]], int]]


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


def mnist_cells(x_test: np.ndarray) -> list[tuple[str, int, RowMaker]]:
    def maker(height: int, upscale: int, gap: int) -> RowMaker:
        def make(rng: np.random.Generator):
            start = int(rng.integers(0, len(x_test) - 10))
            image, spans = row_of_digits(x_test[start : start + 10], height, gap, rng, upscale)
            return image, spans, start

        return make

    return [
        (f"h{height}x{upscale}", gap, maker(height, upscale, gap))
        for height, upscale in ROW_SHAPES
        for gap in ROW_GAPS
    ]


def sklearn_row(
    digits: np.ndarray, upscale: int, interpolation: int, gap: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """load_digits' digits (N, 8, 8), 0..16, as one row light on dark: each scaled to 0..255,
    enlarged `upscale` times, cropped to its ink, `gap` pixels between neighbours' ink (0:
    boxes meet; -1: they overlap), each a little up or down, a digit's height of margin."""
    crops = []
    for digit in digits:
        image = np.round(digit * 255 / 16).astype(np.uint8)
        size = 8 * upscale
        image = cv2.resize(image, (size, size), interpolation=interpolation)
        rows, columns = np.nonzero(image)
        crops.append(image[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1])
    digit_height = max(crop.shape[0] for crop in crops)
    margin = digit_height
    width = 2 * margin + sum(crop.shape[1] for crop in crops) + gap * (len(crops) - 1)
    row = np.zeros((2 * margin + digit_height, width), np.uint8)
    spans, left = [], margin
    for crop in crops:
        top = margin + int(rng.integers(-digit_height // 8, digit_height // 8 + 1))
        region = row[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.maximum(region, crop, out=region)
        spans.append((left, left + crop.shape[1]))
        left += crop.shape[1] + gap
    return row, spans


def sklearn_cells(images: np.ndarray) -> list[tuple[str, int, RowMaker]]:
    def maker(upscale: int, interpolation: int, gap: int) -> RowMaker:
        def make(rng: np.random.Generator):
            start = int(rng.integers(0, len(images) - 10))
            digits = images[start : start + 10]
            image, spans = sklearn_row(digits, upscale, interpolation, gap, rng)
            return image, spans, start

        return make

    return [
        (name, gap, maker(upscale, interpolation, gap))
        for name, upscale, interpolation in SKLEARN_SHAPES
        for gap in ROW_GAPS
    ]


def measure(cells: list[tuple[str, int, RowMaker]], per_cell: int) -> dict:
    rng = np.random.default_rng(SEED)
    by_cell, seconds_by_shape, failures = {}, {}, []
    for shape, gap, make_row in cells:
        seconds_by_shape.setdefault(shape, [])
        right = 0
        for _ in range(per_cell):
            image, spans, start = make_row(rng)
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


def wrong_counts(x_test: np.ndarray, per_cell: int) -> dict:
    """Rows of 9 and 11 MNIST digits (gap 3 px) split as rows of 10: each should be refused
    (WrongDigitCount), never answered with 10 digits."""
    rng = np.random.default_rng(SEED)
    outcomes: dict[str, dict[str, int]] = {}
    for count in (9, 11):
        for height, upscale in ROW_SHAPES:
            tally = outcomes.setdefault(f"{count} digits h{height}x{upscale}", {})
            for _ in range(per_cell):
                start = int(rng.integers(0, len(x_test) - count))
                image, _ = row_of_digits(x_test[start : start + count], height, 3, rng, upscale)
                try:
                    split_row(image, 10)
                    outcome = "answered"
                except (NoDigitFound, WrongDigitCount):
                    outcome = "refused"
                tally[outcome] = tally.get(outcome, 0) + 1
    refused = {
        count: float(np.mean([t.get("refused", 0) / per_cell for k, t in outcomes.items()
                              if k.startswith(f"{count} ")]))
        for count in (9, 11)
    }  # fmt: skip
    return {"rows_per_cell": per_cell, "refused_9": refused[9], "refused_11": refused[11],
            "by_cell": outcomes}  # fmt: skip


def print_table(title: str, figures: dict) -> None:
    shapes = list(figures["ms_per_row_by_shape"])
    print(f"\n{title}\n\n| gap (px) | " + " | ".join(shapes) + " | all |")
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
    from sklearn.datasets import load_digits  # the dev extras; no download

    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    _, test = load_mnist(mnist)
    figures = measure(mnist_cells(test.images), args.rows_per_cell)
    print_table("MNIST test digits (shape: digit height in px, x upscale)", figures)
    figures["wrong_counts"] = wrong_counts(test.images, args.rows_per_cell)
    print(
        f"\nrows of 9 / 11 digits split as rows of 10, refused: "
        f"{figures['wrong_counts']['refused_9']:.1%} / {figures['wrong_counts']['refused_11']:.1%}"
    )
    figures["sklearn_rows"] = measure(sklearn_cells(load_digits().images), args.rows_per_cell)
    print_table(
        "scikit-learn load_digits (8x8 enlarged: x2, x4 bilinear, x3 nearest)",
        figures["sklearn_rows"],
    )
    if not args.no_write:
        path = write_results(args.name, figures, SEED)
        print(f"written to {path}")
    else:
        print(json.dumps(figures["first_failures"]))
        print(json.dumps(figures["sklearn_rows"]["first_failures"]))


if __name__ == "__main__":
    main()
