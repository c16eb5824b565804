"""Accuracy as a client gets it through the HTTP API, beside what the jobs measured.

Starts an API and a worker (a Redis DB of its own, BENCH_REDIS_URL, default DB 11) with
bootstrap on, as `make run` starts: the default models train as ordinary jobs (timed). Then,
through the API:
- the MNIST test digits uploaded as 28x28 PNGs to POST /predict/digit, against the model's
  own test accuracy (the job's result);
- the course's 1,000 test sequences (consecutive groups of ten test digits) as 10 PNGs to
  POST /predict/sum, with each method: exact sums, MAE, sequences whose 10 running sums are all
  right, and the precision and recall of the answer's `uncertain` flag for wrong sums;
- scikit-learn's `load_digits` (1,797 digits by 43 writers, 8x8, upscaled x4, light on dark);
- rows of 10 MNIST test digits side by side in one image (several heights and gaps, touching
  included), through POST /predict/sum, and how the row splitter cuts them (library);
- short runs: a cnn of 1 epoch on 5,000 images, an mlp of 1 epoch on 2,000, through the API;
- the calculator trained on sums only (the course's setting) at its default epochs.
Results go to bench/results/accuracy.json (figures, command, commit, seed, machine).

    MNIST_PATH=../shared/data/mnist.npz python bench/accuracy.py [--skip sums-only ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from redis import Redis

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.results import write_results  # noqa: E402
from tests.photo_like import row_of_digits  # noqa: E402
from tests.stack import ServiceStack  # noqa: E402
from training.data.sequences import DOUBTFUL_BELOW  # noqa: E402
from training.digit_images import NoDigitFound  # noqa: E402
from training.digit_rows import WrongDigitCount, split_row  # noqa: E402

BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"  # BENCH_REDIS_URL overrides it
SEED = 0
ROW_SHAPES = [(12, 4), (16, 3), (20, 1), (28, 1), (56, 1), (112, 1)]  # digit height, upscale
ROW_GAPS = [-1, 0, 1, 2, 4, 8]  # pixels between neighbours' ink; 0 and -1: touching
PARTS = ("digits", "sums", "sklearn", "rows", "short-runs", "sums-only")


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def read_digits(stack: ServiceStack, images: list[np.ndarray], **params: str) -> list[dict]:
    """Each image uploaded to POST /predict/digit (50 files a request, within the default
    MAX_IMAGES_PER_REQUEST; 2 requests at once)."""

    def batch(start: int) -> list[dict]:
        files = [("file", (f"{i}.png", png(im))) for i, im in enumerate(images[start : start + 50])]
        response = stack.client.post("/predict/digit", files=files, params=params, timeout=120)
        response.raise_for_status()
        body = response.json()
        return body.get("predictions", [body])

    with ThreadPoolExecutor(2) as pool:
        return [p for part in pool.map(batch, range(0, len(images), 50)) for p in part]


def post_sums(stack: ServiceStack, requests: list[list[tuple]], **params: str) -> list[dict]:
    def one(files: list[tuple]) -> dict:
        while True:  # large rows wait for a PREPARE_SLOTS slot, as a client told 503 would
            response = stack.client.post("/predict/sum", files=files, params=params, timeout=120)
            if response.status_code != 503 or "Retry-After" not in response.headers:
                return response.json() | {"status": response.status_code}
            time.sleep(float(response.headers["Retry-After"]))

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, requests))


def train(stack: ServiceStack, kind: str, timeout: float = 3600, **params) -> dict:
    job = stack.submit(kind, **params)
    finished = stack.wait_until_finished(job["id"], timeout=timeout)
    if finished["status"] != "succeeded":
        raise RuntimeError(f"{kind} job {job['id']} {finished['status']}: {finished['error']}")
    return finished


def bootstrap(stack: ServiceStack) -> dict:
    """Wait for the default models `make run` trains on a fresh start; their jobs and times."""
    started, jobs = time.monotonic(), {}
    while len(jobs) < 2 or any(job["status"] in ("queued", "running") for job in jobs.values()):
        for job in stack.client.get("/jobs").json()["items"]:
            jobs[job["kind"]] = job
        if any(job["status"] in ("failed", "cancelled") for job in jobs.values()):
            raise RuntimeError(f"a bootstrap job did not succeed: {jobs}")
        if time.monotonic() - started > 3600:
            raise TimeoutError("bootstrap took over an hour")
        time.sleep(2)
    return {"jobs": jobs, "minutes": (time.monotonic() - started) / 60}


def uploaded_digits(stack, x_test, y_test, model: dict) -> dict:
    readings = read_digits(stack, list(x_test), model=model["id"])
    accuracy = float(np.mean([p["digit"] for p in readings] == y_test))
    return {
        "model_id": model["id"],
        "job_test_accuracy": model["metrics"]["test_accuracy"],
        "api_accuracy": accuracy,
        "images": len(y_test),
    }


def sums(stack, x_test, y_test) -> dict:
    sequences = x_test.reshape(-1, 10, 28, 28)
    truth = y_test.reshape(-1, 10)
    requests = [[("files", (f"{i}.png", png(im))) for i, im in enumerate(s)] for s in sequences]
    figures = {}
    for method in ("auto", "calculator", "digit-model"):
        answers = post_sums(stack, requests, method=method)
        statuses = {answer["status"] for answer in answers}
        if statuses != {200}:
            figures[method] = {"statuses": sorted(statuses)}
            continue
        got = np.array([answer["sum"] for answer in answers])
        running = np.array([answer["cumulative"] for answer in answers])
        wrong = got != truth.sum(axis=1)
        flagged = np.array([answer["uncertain"] for answer in answers])
        figures[method] = {
            "method_used": sorted({answer["method"] for answer in answers}),
            "model_ids": sorted({answer["model"]["id"] for answer in answers}),
            "exact": float(np.mean(~wrong)),
            "mae": float(np.mean(np.abs(got - truth.sum(axis=1)))),
            "all_running_sums_exact": float(np.mean((running == truth.cumsum(axis=1)).all(1))),
            "consistent_answers": bool(
                all(a["sum"] == sum(a["digits"]) for a in answers)
                and (running == np.cumsum([a["digits"] for a in answers], axis=1)).all()
            ),
            "uncertain_threshold": DOUBTFUL_BELOW,
            "flagged": float(np.mean(flagged)),
            "flag_precision": float(np.mean(wrong[flagged])) if flagged.any() else None,
            "flag_recall": float(np.mean(flagged[wrong])) if wrong.any() else None,
            "sequences": len(answers),
        }
    return figures


def sklearn_digits(stack, model: dict) -> dict:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [
        cv2.resize((image * 255 / 16).astype(np.uint8), (32, 32), interpolation=cv2.INTER_LINEAR)
        for image in digits.images
    ]
    readings = read_digits(stack, images, model=model["id"])
    accuracy = float(np.mean([p["digit"] for p in readings] == digits.target))
    return {"model_id": model["id"], "api_accuracy": accuracy, "images": len(images),
            "upscale": "x4 bilinear, light on dark"}  # fmt: skip


def rows(stack, x_test, y_test, per_cell: int) -> dict:
    rng = np.random.default_rng(SEED)
    cells, requests, truths, one_by_one = [], [], [], []
    split_right = {}
    for height, upscale in ROW_SHAPES:
        for gap in ROW_GAPS:
            right = 0
            for _ in range(per_cell):
                start = int(rng.integers(0, len(y_test) - 10))
                image, spans = row_of_digits(x_test[start : start + 10], height, gap, rng, upscale)
                try:
                    boxes = [digit.box for digit in split_row(image, 10)]
                    right += all(lo <= x + w / 2 < hi for (x, _, w, _), (lo, hi) in
                                 zip(boxes, spans, strict=True))  # fmt: skip
                except (NoDigitFound, WrongDigitCount):
                    pass
                requests.append([("file", ("row.png", png(image)))])
                truths.append(y_test[start : start + 10])
                one_by_one.append(x_test[start : start + 10])
                cells.append((height, upscale, gap))
            split_right[f"h{height}x{upscale} gap{gap}"] = right / per_cell
    answers = post_sums(stack, requests)
    read_right = [a["status"] == 200 and a["digits"] == list(t) for a, t in
                  zip(answers, truths, strict=True)]  # fmt: skip
    singles = read_digits(stack, [im for row in one_by_one for im in row])
    single_digits = np.array([p["digit"] for p in singles]).reshape(-1, 10)
    singles_right = (single_digits == np.array(truths)).all(axis=1)
    by_gap = {}
    for gap in ROW_GAPS:
        chosen = [i for i, cell in enumerate(cells) if cell[2] == gap]
        by_gap[str(gap)] = {
            "split_right": float(
                np.mean([v for k, v in split_right.items() if k.endswith(f"gap{gap}")])
            ),
            "api_all_10_right": float(np.mean([read_right[i] for i in chosen])),
            "same_digits_one_by_one_all_10_right": float(np.mean(singles_right[chosen])),
        }
    return {
        "rows": len(requests),
        "split_right": float(np.mean(list(split_right.values()))),
        "split_right_gaps_1_and_more": float(
            np.mean([v for k, v in split_right.items() if not k.endswith(("gap0", "gap-1"))])
        ),
        "api_all_10_right": float(np.mean(read_right)),
        "same_digits_one_by_one_all_10_right": float(np.mean(singles_right)),
        "api_statuses": sorted({a["status"] for a in answers}),
        "by_gap": by_gap,
        "split_right_by_cell": split_right,
    }


def short_runs(stack, x_test, y_test) -> dict:
    figures = {}
    for kind, params in (
        ("cnn", {"epochs": 1, "train_limit": 5000, "seed": SEED}),
        ("mlp", {"epochs": 1, "train_limit": 2000, "seed": SEED}),
    ):
        job = train(stack, kind, **params)
        model = stack.client.get(f"/models/{job['result']['model_id']}").json()
        figures[kind] = {"params": params, **uploaded_digits(stack, x_test, y_test, model)}
    return figures


def sums_only(stack, x_test, y_test) -> dict:
    started = time.monotonic()
    job = train(stack, "calculator", seed=SEED)
    minutes = (time.monotonic() - started) / 60
    model_id = job["result"]["model_id"]
    sequences = x_test.reshape(-1, 10, 28, 28)
    truth = y_test.reshape(-1, 10).sum(axis=1)
    requests = [[("files", (f"{i}.png", png(im))) for i, im in enumerate(s)] for s in sequences]
    answers = post_sums(stack, requests, method="calculator", model=model_id)
    got = np.array([answer["sum"] for answer in answers])
    return {
        "params": job["params"],
        "job": {name: value for name, value in job["result"].items() if name.startswith("test_")},
        "api_mae": float(np.mean(np.abs(got - truth))),
        "api_exact": float(np.mean(got == truth)),
        "minutes": minutes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--rows-per-cell", type=int, default=10)
    parser.add_argument("--name", default="accuracy", help="bench/results/NAME.json")
    args = parser.parse_args()
    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    with np.load(mnist) as data:
        x_test, y_test = data["x_test"], data["y_test"]

    figures: dict = {}
    base, db = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL).rsplit("/", 1)
    if Redis.from_url(f"{base}/{db}").dbsize():
        sys.exit(f"Redis DB {base}/{db} is not empty; this bench empties it. Point "
                 f"BENCH_REDIS_URL at an empty DB (or flush that one yourself).")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        stack = ServiceStack(int(db), Path(scratch), redis_base=base, MNIST_PATH=mnist,
                             BOOTSTRAP_MODELS="true", LOG_LEVEL="WARNING")  # fmt: skip
        stack.start()
        try:
            started = bootstrap(stack)
            figures["bootstrap_minutes"] = started["minutes"]
            default = {
                kind: stack.client.get(f"/models/{job['result']['model_id']}").json()
                for kind, job in started["jobs"].items()
            }
            figures["default_models"] = {
                kind: {"id": m["id"], "params": m["params"], "metrics": m["metrics"]}
                for kind, m in default.items()
            }
            if "digits" not in args.skip:
                figures["uploaded_mnist_test_digits"] = uploaded_digits(
                    stack, x_test, y_test, default["cnn"]
                )
            if "sums" not in args.skip:
                figures["course_test_sequences"] = sums(stack, x_test, y_test)
            if "sklearn" not in args.skip:
                figures["sklearn_load_digits"] = sklearn_digits(stack, default["cnn"])
            if "rows" not in args.skip:
                figures["rows"] = rows(stack, x_test, y_test, args.rows_per_cell)
            if "short-runs" not in args.skip:
                figures["short_runs"] = short_runs(stack, x_test, y_test)
            if "sums-only" not in args.skip:
                figures["sums_only_calculator"] = sums_only(stack, x_test, y_test)
        finally:
            stack.stop()
            stack.redis.flushdb()

    path = write_results(args.name, figures, SEED)
    print(json.dumps(figures, indent=2))
    print_table(figures)
    print(f"written to {path}")


def print_table(figures: dict) -> None:
    """The headline figures as a Markdown table, for the docs."""
    rows = []
    if "uploaded_mnist_test_digits" in figures:
        digits = figures["uploaded_mnist_test_digits"]
        rows.append(("default cnn, its job's test accuracy", f"{digits['job_test_accuracy']:.2%}"))
        rows.append(
            ("MNIST test digits uploaded as PNGs, read right", f"{digits['api_accuracy']:.2%}")
        )
    for method, sums in figures.get("course_test_sequences", {}).items():
        if "exact" in sums:
            rows.append(
                (
                    f"course test sequences, method={method} ({', '.join(sums['method_used'])}): "
                    "exact / MAE / all running sums exact",
                    f"{sums['exact']:.1%} / {sums['mae']:.3f} / "
                    f"{sums['all_running_sums_exact']:.1%}",
                )
            )
            rows.append(
                (
                    f"  uncertain flag (confidence < {sums['uncertain_threshold']}): flagged / "
                    "precision / recall for wrong sums",
                    f"{sums['flagged']:.1%} / {sums['flag_precision']} / {sums['flag_recall']}",
                )
            )
    if "sklearn_load_digits" in figures:
        rows.append(
            (
                "scikit-learn load_digits (x4, light on dark)",
                f"{figures['sklearn_load_digits']['api_accuracy']:.2%}",
            )
        )
    if "rows" in figures:
        row = figures["rows"]
        rows.append(
            (
                "rows: split right (all gaps / gaps >= 1 px)",
                f"{row['split_right']:.1%} / {row['split_right_gaps_1_and_more']:.1%}",
            )
        )
        rows.append(
            (
                "rows via API: all 10 digits right (same digits one by one)",
                f"{row['api_all_10_right']:.1%} ({row['same_digits_one_by_one_all_10_right']:.1%})",
            )
        )
    for kind, run in figures.get("short_runs", {}).items():
        rows.append(
            (
                f"short run: {kind} {run['params']}: job / API",
                f"{run['job_test_accuracy']:.2%} / {run['api_accuracy']:.2%}",
            )
        )
    if "sums_only_calculator" in figures:
        only = figures["sums_only_calculator"]
        rows.append(
            (
                "calculator from sums only, default epochs: job MAE / API MAE",
                f"{only['job']['test_sum_mae']:.3f} / {only['api_mae']:.3f}",
            )
        )
    if "bootstrap_minutes" in figures:
        rows.append(
            (
                "bootstrap (make run's default models), minutes",
                f"{figures['bootstrap_minutes']:.1f}",
            )
        )
    print("\n| what | measured |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
