"""What preparing one large drawing costs: a thin line, or a marker stroke, across a 2000x2000
page, whose strokes must be widened or thinned by a pen of tens of pixels to reach MNIST's
width at the crop's scale. The round pen (its cost grows with its area) against the octagonal
pen `to_mnist` uses beyond GREY_PEN_RADIUS (its cost grows with its radius).

    python bench/large_drawings.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import write_results
from training import digit_images

SEED = 0  # the drawings are fixed; nothing is random
PENS = (1, 3, 12, 150)  # pixels: a hairline, a ballpoint, a felt pen, a marker across the page


def drawing(pen: int) -> np.ndarray:
    page = np.full((2000, 2000), 235, np.uint8)
    cv2.polylines(page, [np.array([[60, 60], [1940, 60], [900, 1940]], np.int32)], False, 40, pen)
    cv2.circle(page, (1000, 900), 500, 40, pen)
    return page


def median_seconds(page: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        digit_images.to_mnist(page)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    octagon_radius = digit_images.GREY_PEN_RADIUS
    rows = {}
    for pen in PENS:
        page = drawing(pen)
        digit_images.GREY_PEN_RADIUS = 10**6  # the round pen at any radius
        round_pen = median_seconds(page, args.repeats)
        digit_images.GREY_PEN_RADIUS = octagon_radius
        octagon = median_seconds(page, args.repeats)
        rows[f"{pen} px"] = {
            "round_pen_seconds": round_pen,
            "octagon_seconds": octagon,
            "speedup": round_pen / octagon,
        }
    figures = {"page": "2000x2000", "repeats": args.repeats, "pens": rows}
    path = write_results("large_drawings", figures, SEED)
    print("| pen | round pen s | octagon s | speed-up |\n| --- | --- | --- | --- |")
    for pen, row in rows.items():
        print(f"| {pen} | {row['round_pen_seconds']:.3f} | {row['octagon_seconds']:.3f} | "
              f"{row['speedup']:.1f}x |")  # fmt: skip
    print(f"written to {path}")


if __name__ == "__main__":
    main()
