"""Soak: 10,000 predictions at concurrency 32; errors and the API's memory over the run.

The service starts as `make run` starts it (service.api_server, API_WORKERS processes) with a
stored model of the default `cnn` architecture. Resident memory (RSS, summed over the API's
processes) is read after the first 1,000 requests and at the end; the goal is 0 errors and the
end within 10% of the reading after 1,000.

    MNIST_PATH=../shared/data/mnist.npz python bench/soak.py [--requests 10000]

Figures go to bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load_generator import LoadResult, multipart_request, run_load
from bench.predict_load import HOST, png_digits, scratch_redis, start_server, store_model
from bench.results import write_results
from service.launcher import api_command
from service.settings import Settings


def resident_bytes(root_pid: int) -> int:
    """RSS of a process and all its descendants."""
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # exited meanwhile
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()

    redis_url, redis = scratch_redis()
    with tempfile.TemporaryDirectory() as scratch:
        artifacts = Path(scratch) / "artifacts"
        store_model(redis, artifacts)
        workers = Settings().api_workers
        port = 8700 + os.getpid() % 200
        env = {**os.environ, "HOST": HOST, "PORT": str(port), "REDIS_URL": redis_url,
               "ARTIFACTS_DIR": str(artifacts), "BOOTSTRAP_MODELS": "false",
               "LOG_LEVEL": "WARNING", "API_WORKERS": str(workers)}  # fmt: skip
        server = start_server(api_command(), port, env, Path(scratch) / "api.log")
        try:
            requests = [multipart_request(HOST, port, "/predict/digit", f"{i}.png", data)
                        for i, data in enumerate(png_digits(200))]  # fmt: skip
            phases: list[tuple[str, LoadResult, int]] = []
            for name, count in (("first", args.warmup), ("rest", args.requests - args.warmup)):
                result = asyncio.run(run_load(HOST, port, requests, args.concurrency, total=count))
                phases.append((name, result, resident_bytes(server.pid)))
        finally:
            server.terminate()
            server.wait(timeout=30)
    redis.flushdb()

    (_, first, after_first), (_, rest, at_end) = phases
    errors = first.errors + rest.errors
    growth = at_end / after_first - 1
    print(f"{args.requests:,} requests at concurrency {args.concurrency}, {workers} API "
          f"processes, {os.cpu_count()} CPUs\n")  # fmt: skip
    print("| phase | requests | requests/s | p50 ms | p99 ms | errors | API RSS after |")
    print("|---|---|---|---|---|---|---|")
    for name, result, rss in phases:
        print(f"| {name} | {result.requests:,} | {result.throughput:.0f} | "
              f"{result.percentile_ms(50):.1f} | {result.percentile_ms(99):.1f} | "
              f"{result.errors} | {rss / 2**20:.0f} MiB |")  # fmt: skip
    verdict = "PASS" if errors == 0 and abs(growth) <= 0.10 else "FAIL"
    print(f"\nerrors: {errors}; memory at the end vs after the first {args.warmup:,}: "
          f"{growth:+.1%} (goal: 0 errors, within 10%): {verdict}")  # fmt: skip
    figures = {
        "requests": args.requests, "concurrency": args.concurrency, "api_processes": workers,
        "phases": [
            {"phase": name, "requests": result.requests,
             "requests_per_second": round(result.throughput, 1),
             "p50_ms": round(result.percentile_ms(50), 2),
             "p99_ms": round(result.percentile_ms(99), 2), "errors": result.errors,
             "api_rss_mib_after": round(rss / 2**20, 1)}
            for name, result, rss in phases
        ],
        "errors": errors, "memory_growth": round(growth, 4), "verdict": verdict,
    }  # fmt: skip
    print(f"Written to {write_results('soak', figures, seed=None)}")
    raise SystemExit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
