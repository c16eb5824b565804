"""Throughput and latency of POST /predict/digit: the service against a naive server.

Both serve the same stored model (the default `cnn` architecture) with the same decoding and
preprocessing; the naive server calls `model.predict` once per request (bench/naive_server.py).
The service starts as `make run` starts it (service.api_server, API_WORKERS processes, default
2), and once more with one process. Each gets the same PNG digits (MNIST test images) at each
concurrency for a fixed time; the table shows requests/s, p50 and p99, and the ratio of the
service's throughput to the naive server's.

    MNIST_PATH=../shared/data/mnist.npz python bench/predict_load.py [--seconds 10]

Uses Redis DB 11 at BENCH_REDIS_URL (default redis://127.0.0.1:6379/11) and flushes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load_generator import LoadResult, multipart_request, run_load
from service.launcher import api_command
from service.models.store import ModelStore
from service.settings import Settings

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


def scratch_redis() -> tuple[str, Redis]:
    """The benches' Redis DB (BENCH_REDIS_URL, default DB 11), emptied."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    redis = Redis.from_url(url, decode_responses=True)
    redis.flushdb()
    return url, redis


def store_model(redis: Redis, artifacts: Path) -> Path:
    """Save the default CNN architecture and register it as the service stores a model."""
    from training.cnn import build_mnist_cnn

    store = ModelStore(redis, artifacts)
    model_id = uuid.uuid4().hex
    path = store.model_dir(model_id) / "model.keras"
    path.parent.mkdir(parents=True)
    build_mnist_cnn().save(path)
    store.register(model_id, "cnn", "bench", {}, {}, {"keras": path.name})
    return path


def png_digits(count: int) -> list[bytes]:
    from PIL import Image

    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    with np.load(mnist) as data:
        images = data["x_test"][:count]
    encoded = []
    for image in images:
        from io import BytesIO

        buffer = BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def start_server(command: list[str], port: int, env: dict[str, str], log: Path):
    """Start a server and wait until it answers (and, for the service, until every process
    has loaded the model)."""
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=out)
    workers = int(env.get("API_WORKERS", "0"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if workers == 0 and httpx.get(f"http://{HOST}:{port}/docs").status_code == 200:
                return process
            metrics = httpx.get(f"http://{HOST}:{port}/metrics").text
            if f"digit_service_models_loaded {workers:.1f}" in metrics:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"{command} did not start; see {log}")


def measure(
    name: str, command: list[str], env: dict[str, str], images: list[bytes], args, log: Path
) -> list[LoadResult]:
    port = int(env["PORT"])
    process = start_server(command, port, env, log)
    try:
        requests = [
            multipart_request(HOST, port, "/predict/digit", f"{i}.png", data)
            for i, data in enumerate(images)
        ]
        asyncio.run(run_load(HOST, port, requests, concurrency=4, total=40))  # warm up
        results = []
        for concurrency in args.concurrency:
            result = asyncio.run(run_load(HOST, port, requests, concurrency, seconds=args.seconds))
            print(
                f"  {name:18} c={concurrency:<3} {result.throughput:8.1f} req/s  "
                f"p50 {result.percentile_ms(50):7.1f} ms  p99 {result.percentile_ms(99):7.1f} ms  "
                f"errors {result.errors}",
                flush=True,
            )
            results.append(result)
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--only-service", action="store_true", help="skip the naive server")
    args = parser.parse_args()

    redis_url, redis = scratch_redis()
    with tempfile.TemporaryDirectory() as scratch:
        artifacts = Path(scratch) / "artifacts"
        model_path = store_model(redis, artifacts)
        images = png_digits(200)
        env = {
            **os.environ,
            "HOST": HOST,
            "PORT": str(8700 + os.getpid() % 200),
            "REDIS_URL": redis_url,
            "ARTIFACTS_DIR": str(artifacts),
            "BOOTSTRAP_MODELS": "false",
            "LOG_LEVEL": "WARNING",
            "MODEL_PATH": str(model_path),
            "PYTHONPATH": str(REPO_ROOT),
        }
        log = Path(scratch) / "servers.log"
        workers = Settings().api_workers
        print(f"{args.seconds:g} s per level; {os.cpu_count()} CPUs", flush=True)
        service = [(f"service, {workers} proc", api_command(), {"API_WORKERS": str(workers)})]
        if workers != 1:
            service.append(("service, 1 proc", api_command(), {"API_WORKERS": "1"}))
        naive_command = [sys.executable, "-m", "uvicorn", "bench.naive_server:app",
                         "--host", HOST, "--port", env["PORT"]]  # fmt: skip
        servers = [*service, ("naive", naive_command, {})]
        if args.only_service:
            servers = service
        results = {
            name: measure(name, command, env | extra, images, args, log)
            for name, command, extra in servers
        }
    redis.flushdb()
    print_table(results)


def print_table(results: dict[str, list[LoadResult]]) -> None:
    baseline = results.get("naive")
    print()
    print("| server | concurrency | requests/s | p50 ms | p99 ms | errors | vs naive |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for index, row in enumerate(rows):
            ratio = f"{row.throughput / baseline[index].throughput:.1f}x" if baseline else "-"
            print(
                f"| {name} | {row.concurrency} | {row.throughput:.1f} | "
                f"{row.percentile_ms(50):.1f} | {row.percentile_ms(99):.1f} | {row.errors} | "
                f"{ratio} |"
            )


if __name__ == "__main__":
    main()
