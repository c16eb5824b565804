"""Redis operations per prediction, per job status read, per training job, epoch and step, and
while idle; and how many operations per second this machine's Redis answers (the bound on
everything that shares it).

An API and a worker start as in the tests (one API process, one worker, HEARTBEAT_SECONDS 5 as
in docker-compose.yml) on the benches' Redis DB. Counts come from Redis' own `INFO
commandstats` (the whole server: run it with nothing else using this Redis), taken before and
after each phase; the idle rate measured first is subtracted from every later phase, and the
job status reads made while a job trains are subtracted from the job's count.

    MNIST_PATH=../shared/data/mnist.npz python bench/redis_ops.py

Uses Redis DB 11 at BENCH_REDIS_URL (default redis://127.0.0.1:6379/11) and flushes it.
Figures go to bench/results/redis_ops.json.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from redis import Redis

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.predict_load import png_digits  # noqa: E402
from bench.results import write_results  # noqa: E402
from tests.stack import ServiceStack  # noqa: E402

BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"
IDLE_SECONDS = 30
PREDICTIONS = 2000
STATUS_READS = 1000
TRAINING = {"hidden_units": [64], "epochs": 3, "train_limit": 6000, "batch_size": 128,
            "test_limit": 1000, "seed": 0}  # fmt: skip


def command_counts(redis: Redis) -> Counter:
    """Calls per command since the server started (or its last CONFIG RESETSTAT)."""
    return Counter(
        {name.removeprefix("cmdstat_"): stats["calls"]
         for name, stats in redis.info("commandstats").items()}
    )  # fmt: skip


def measure(redis: Redis, action: Callable[[], object]) -> tuple[Counter, float, object]:
    """Commands the server ran while `action` ran (INFO itself excluded), its seconds, and its
    value."""
    before = command_counts(redis)
    started = time.monotonic()
    value = action()
    seconds = time.monotonic() - started
    calls = command_counts(redis) - before
    calls["info"] -= 1  # the `INFO` of `before`
    return +calls, seconds, value


def minus_idle(calls: Counter, seconds: float, idle: dict[str, float]) -> dict[str, float]:
    return {
        name: calls.get(name, 0) - idle.get(name, 0.0) * seconds for name in set(calls) | set(idle)
    }


def per_each(calls: dict[str, float], count: int) -> dict[str, float]:
    """Per-command calls per unit, rounded, dropping the ones that round to 0."""
    rounded = {name: round(value / count, 3) for name, value in sorted(calls.items())}
    return {name: value for name, value in rounded.items() if value > 0}


def redis_capacity(url: str) -> dict[str, float]:
    """Requests per second `redis-benchmark` gets from this Redis, one client at a time and
    with 50 (its default), for the commands the service uses most."""
    host = url.split("//")[1].split(":")[0]
    port = url.rsplit(":", 1)[1].split("/")[0]
    db = url.rsplit("/", 1)[1]
    capacity = {}
    for clients in (1, 50):
        output = subprocess.run(
            ["redis-benchmark", "-h", host, "-p", port, "--dbnum", db, "-n", "50000", "-c",
             str(clients), "-t", "get,set,hset,lpush,rpop", "--csv"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for line in output.splitlines()[1:]:
            fields = [field.strip('"') for field in line.split(",")]
            capacity[f"{fields[0]} c{clients}"] = float(fields[1])
    return capacity


def main() -> None:
    url = os.environ.get("BENCH_REDIS_URL", BENCH_REDIS_URL)
    base, db = url.rsplit("/", 1)
    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    digits = png_digits(200)
    redis = Redis.from_url(url, decode_responses=True)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as scratch:
        stack = ServiceStack(int(db), Path(scratch), redis_base=base, MNIST_PATH=mnist,
                             HEARTBEAT_SECONDS="5", LOG_LEVEL="WARNING")  # fmt: skip
        stack.start()
        try:
            model = stack.wait_until_finished(
                stack.submit("cnn", conv_filters=[8], dense_units=16, epochs=1,
                             train_limit=2000, test_limit=500)["id"], timeout=300,
            )["result"]["model_id"]  # fmt: skip
            post = stack.client.post
            post("/predict/digit", params={"model": model}, files={"file": digits[0]})
            time.sleep(5)  # the job's process has ended, the model is loaded

            calls, seconds, _ = measure(redis, lambda: time.sleep(IDLE_SECONDS))
            idle = {name: value / seconds for name, value in calls.items()}
            figures["idle_per_second"] = {k: round(v, 3) for k, v in sorted(idle.items())}

            def predict() -> None:
                for index in range(PREDICTIONS):
                    answer = post("/predict/digit", params={"model": model},
                                  files={"file": digits[index % len(digits)]})  # fmt: skip
                    answer.raise_for_status()

            calls, seconds, _ = measure(redis, predict)
            prediction = minus_idle(calls, seconds, idle)
            figures["per_prediction"] = per_each(prediction, PREDICTIONS)

            job_id = stack.submit("backprop")["id"]
            stack.wait_until_finished(job_id)

            def read_status() -> None:
                for _ in range(STATUS_READS):
                    stack.job(job_id)

            calls, seconds, _ = measure(redis, read_status)
            status_read = minus_idle(calls, seconds, idle)
            figures["per_job_status_read"] = per_each(status_read, STATUS_READS)

            def train() -> tuple[dict, int]:
                submitted = stack.submit("mlp", **TRAINING)["id"]
                reads = 0
                while True:
                    reads += 1
                    job = stack.job(submitted)
                    if job["status"] not in ("queued", "running"):
                        return job, reads
                    time.sleep(1)

            calls, seconds, (job, reads) = measure(redis, train)
            if job["status"] != "succeeded":
                raise RuntimeError(f"the training job did not succeed: {job['error']}")
            reads_cost = {name: value * reads / STATUS_READS for name, value in status_read.items()}
            training = {
                name: value - reads_cost.get(name, 0.0)
                for name, value in minus_idle(calls, seconds, idle).items()
            }
            steps = TRAINING["epochs"] * math.ceil(TRAINING["train_limit"] / TRAINING["batch_size"])
            figures["training_job"] = {
                "params": TRAINING, "seconds": round(seconds, 1), "steps": steps,
                "per_job": per_each(training, 1),
                "total_per_job": round(sum(training.values())),
                "per_epoch": round(sum(training.values()) / TRAINING["epochs"], 1),
                "per_step": round(sum(training.values()) / steps, 2),
            }  # fmt: skip
        finally:
            stack.stop()
            redis.flushdb()
    figures["redis_requests_per_second"] = redis_capacity(url)
    redis.flushdb()
    figures["totals"] = {
        "idle_per_second": round(sum(figures["idle_per_second"].values()), 2),
        "per_prediction": round(sum(figures["per_prediction"].values()), 3),
        "per_job_status_read": round(sum(figures["per_job_status_read"].values()), 2),
    }
    for section in ("totals", "training_job", "redis_requests_per_second"):
        print(section, figures[section])
    print(f"Written to {write_results('redis_ops', figures, seed=None)}")


if __name__ == "__main__":
    main()
