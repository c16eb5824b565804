"""Several API processes and several workers against one Redis: jobs and status reads per
second, what they cost Redis (operations, CPU, latency) and the HTTP latency of the reads.

APIs: `--apis` separate uvicorn processes (`service.main:app`), each on its own port, as
separate machines would run them. Workers: Celery workers started as `make run` starts one
(`service.launcher.worker_command`: concurrency 1, one job per child), each with its own name.
All share the benches' Redis DB, HEARTBEAT_SECONDS 5 as in docker-compose.yml, no bootstrap jobs.

Load: `clients` asyncio clients, each submitting a `backprop` job (the hand-built compute graph,
no TensorFlow), reading its status every POLL_SECONDS until it has ended, then submitting the
next; every request goes to the next API in turn. Each level (`--levels WORKERS:CLIENTS ...`)
runs WARM_UP_SECONDS, then is measured for `--seconds`; then the clients stop, their jobs are
cancelled and the queue drains before the next level. An idle phase (no clients, the first
level's workers) comes first.

Per phase, from Redis' INFO before and after (the whole server: run it with nothing else using
this Redis; clients connected to other DBs are counted and recorded): operations (`INFO
commandstats`, this bench's own INFO and LATENCY calls and latency PINGs left out), Redis CPU
seconds (`INFO cpu`, user + sys), and the server's latency per command from `LATENCY HISTOGRAM`
(Redis 7; its buckets are powers of 2, so a percentile reads "at most N us"). `INFO
latencystats` is not used: it counts since the server started and resetting it (CONFIG
RESETSTAT) would disturb other users of the server. Latency as clients see it: a PING every
PING_INTERVAL seconds from this process, as `redis-cli --latency` does.

Derived (an extrapolation from the measured ratios, not a measurement): the operations per
second one Redis core would carry at this phase's CPU per operation, and how many busy workers
(running such jobs back to back) or polling clients that is.

    .venv/bin/python bench/scale_out.py [--seconds 60] [--apis 3] [--levels 1:8 3:32]

With the defaults, about 3.5 minutes. Uses Redis DB 11 at BENCH_REDIS_URL (default
redis://127.0.0.1:6379/11) and flushes it. Figures go to bench/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from redis import Redis

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.predict_load import scratch_redis  # noqa: E402
from bench.redis_ops import command_counts  # noqa: E402
from bench.results import write_results  # noqa: E402
from service.launcher import worker_command  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.stack import ManagedProcess, free_port, wait_for  # noqa: E402

JOB = {"activation": "tanh", "learning_rate": 0.01, "steps": 5000}
POLL_SECONDS = 0.2
WARM_UP_SECONDS = 5
IDLE_SECONDS = 10
PING_INTERVAL = 0.02
DRAIN_SECONDS = 90
ENDED = {"succeeded", "failed", "cancelled"}
PINGER = """
import json, sys, time
from redis import Redis
redis = Redis.from_url(sys.argv[1])
redis.ping()
print("ready", flush=True)
sys.stdin.readline()
until = time.monotonic() + float(sys.argv[2])
samples = []
while time.monotonic() < until:
    started = time.monotonic()
    redis.ping()
    samples.append(time.monotonic() - started)
    time.sleep(float(sys.argv[3]))
print(json.dumps(samples))
"""
# The commands one snapshot sends, counted in the next snapshot's commandstats.
SNAPSHOT_CALLS = Counter({"info": 2, "latency|histogram": 1})


@dataclass
class Stack:
    """The API processes and workers of a run, their environment and log folder."""

    env: dict[str, str]
    log_dir: Path
    settings: Settings
    apis: list[tuple[str, ManagedProcess]] = field(default_factory=list)  # (base URL, process)
    workers: list[tuple[str, ManagedProcess]] = field(default_factory=list)  # (name, process)


@dataclass
class ClientLog:
    """What the clients saw: (time, seconds) of each status read, each ended job's record with
    the time it was seen, the ids of jobs still open at the end, failed requests."""

    reads: list[tuple[float, float]] = field(default_factory=list)
    ended: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    open_jobs: list[tuple[str, str]] = field(default_factory=list)  # (API URL, job id)
    submits: int = 0
    errors: Counter = field(default_factory=Counter)


@dataclass
class Snapshot:
    """Redis' counters at one moment."""

    at: float
    calls: Counter
    cpu_seconds: float
    histograms: dict[str, dict[int, int]]


def bench_env(url: str, scratch: Path) -> dict[str, str]:
    """The processes' environment: the benches' Redis DB, compose's heartbeat, no bootstrap."""
    return {
        **os.environ,
        "REDIS_URL": url,
        "HEARTBEAT_SECONDS": "5",
        "BOOTSTRAP_MODELS": "false",
        "ARTIFACTS_DIR": str(scratch / "artifacts"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def start_apis(stack: Stack, count: int) -> None:
    """Start `count` uvicorn processes on ports of their own and wait until each is healthy."""
    for index in range(count):
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(port)]
        process = ManagedProcess(f"api{index}", command, stack.env, stack.log_dir)
        process.start()
        stack.apis.append((f"http://127.0.0.1:{port}", process))
    for url, process in stack.apis:
        wait_healthy(url, process, lambda health: True)


def health(url: str) -> dict[str, Any] | None:
    try:
        answer = httpx.get(f"{url}/health", timeout=5)
    except httpx.TransportError:
        return None
    return answer.json() if answer.status_code == 200 else None


def wait_healthy(
    url: str, process: ManagedProcess, ready: Callable[[dict[str, Any]], bool], timeout: float = 90
) -> None:
    """Wait until `url`'s /health answers 200 and `ready(health)`; fail with the process's log
    if it exits or the wait times out."""

    def check() -> bool:
        assert process.process is not None
        if process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        answer = health(url)
        return answer is not None and ready(answer)

    try:
        wait_for(check, timeout, f"{process.name} to be ready", interval=0.5)
    except TimeoutError as error:
        raise TimeoutError(f"{error}\n{process.log_tail()}") from None


def live_workers(answer: dict[str, Any]) -> set[str]:
    return {record["hostname"].split("@")[0] for record in answer["workers"]["details"]}


def set_workers(stack: Stack, count: int) -> None:
    """Start or stop workers until `count` run, and wait until /health lists them."""
    while len(stack.workers) > count:
        stack.workers.pop()[1].stop()
    while len(stack.workers) < count:
        name = f"scale-out-{len(stack.workers)}"
        command = [*worker_command(stack.settings), "--hostname", f"{name}@%h",
                   "--without-mingle", "--without-gossip"]  # fmt: skip
        process = ManagedProcess(name, command, stack.env, stack.log_dir)
        process.start()
        stack.workers.append((name, process))
    names = {name for name, _ in stack.workers}
    url, process = stack.apis[0]
    wait_healthy(url, process, lambda answer: live_workers(answer) >= names)


def stop_all(stack: Stack) -> None:
    """Stop every API process and worker at once (each: SIGTERM, SIGKILL after 15 s)."""
    processes = [process for _, process in stack.apis + stack.workers]
    with ThreadPoolExecutor(max(1, len(processes))) as pool:
        list(pool.map(lambda process: process.stop(), processes))
    stack.apis.clear()
    stack.workers.clear()


def check_job_kind(url: str) -> dict[str, Any]:
    """The backprop kind's parameter schema from GET /jobs/kinds; fails if JOB does not fit."""
    kinds = {kind["name"]: kind for kind in httpx.get(f"{url}/jobs/kinds", timeout=10).json()}
    schema = kinds["backprop"]["params_schema"]["properties"]
    if JOB["steps"] > schema["steps"]["maximum"]:
        raise ValueError(f"steps {JOB['steps']} is over the kind's maximum: {schema['steps']}")
    return {name: schema[name].get("default") for name in schema}


async def send(
    http: httpx.AsyncClient, log: ClientLog, method: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    """The answer, or None (counted in `log.errors`) when the request failed on the way."""
    try:
        return await http.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        log.errors[type(error).__name__] += 1
        return None


async def one_client(
    index: int, apis: list[str], http: httpx.AsyncClient, log: ClientLog, until: float
) -> None:
    """Submit a job, read its status every POLL_SECONDS until it has ended, again, until `until`;
    each request to the next API in turn."""
    turn = itertools.count(index)
    while time.monotonic() < until:
        url = apis[next(turn) % len(apis)]
        job = {"kind": "backprop", "params": JOB}
        answer = await send(http, log, "POST", f"{url}/jobs", json=job)
        if answer is None or answer.status_code != 202:
            if answer is not None:
                log.errors[f"submit {answer.status_code}"] += 1
            await asyncio.sleep(POLL_SECONDS)
            continue
        log.submits += 1
        job_id = answer.json()["id"]
        while True:
            await asyncio.sleep(POLL_SECONDS)
            if time.monotonic() >= until:
                log.open_jobs.append((url, job_id))
                return
            url = apis[next(turn) % len(apis)]
            started = time.monotonic()
            answer = await send(http, log, "GET", f"{url}/jobs/{job_id}")
            now = time.monotonic()
            if answer is None or answer.status_code != 200:
                if answer is not None:
                    log.errors[f"status {answer.status_code}"] += 1
                continue
            log.reads.append((now, now - started))
            record = answer.json()
            if record["status"] in ENDED:
                log.ended.append((now, record))
                break


async def run_clients(apis: list[str], clients: int, log: ClientLog, until: float) -> None:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=clients * len(apis))
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(one_client(i, apis, http, log, until) for i in range(clients)))


def start_clients(
    apis: list[str], clients: int, until: float
) -> tuple[threading.Thread, ClientLog]:
    """The clients on an event loop in a thread of their own, running until `until`."""
    log = ClientLog()
    thread = threading.Thread(
        target=asyncio.run, args=(run_clients(apis, clients, log, until),), daemon=True
    )
    thread.start()
    return thread, log


def snapshot(redis: Redis) -> Snapshot:
    """commandstats first, so the next snapshot counts exactly SNAPSHOT_CALLS of this one."""
    calls = command_counts(redis)
    cpu = redis.info("cpu")
    histograms = {
        name: {int(bucket): count for bucket, count in entry["histogram_usec"].items()}
        for name, entry in redis.execute_command("LATENCY", "HISTOGRAM").items()
    }
    at = time.monotonic()
    return Snapshot(at, calls, cpu["used_cpu_user"] + cpu["used_cpu_sys"], histograms)


def start_pinger(url: str, seconds: float) -> subprocess.Popen:
    """A process of its own (so this one's clients do not delay it) that connects, says so, and
    on a line from us sends a PING every PING_INTERVAL for `seconds`, as redis-cli --latency."""
    pinger = subprocess.Popen(
        [sys.executable, "-c", PINGER, url, str(seconds), str(PING_INTERVAL)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert pinger.stdout is not None
    if pinger.stdout.readline().strip() != "ready":
        raise RuntimeError("the PING sampler did not connect to Redis")
    return pinger


def ping_samples(pinger: subprocess.Popen) -> list[float]:
    """Start the sampler and return its round trips once it ends."""
    output, _ = pinger.communicate("go\n", timeout=600)
    return json.loads(output)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def cumulative_at(histogram: dict[int, int], bucket: int) -> int:
    """A LATENCY HISTOGRAM's cumulative count at `bucket` (it lists non-empty buckets only)."""
    return max((count for edge, count in histogram.items() if edge <= bucket), default=0)


def histogram_percentiles(before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    """Calls between two histograms of one command, and the buckets (us, upper edges) that hold
    their 50th and 99th percentiles."""
    edges = sorted(set(before) | set(after))
    counts = [cumulative_at(after, edge) - cumulative_at(before, edge) for edge in edges]
    calls = counts[-1] if counts else 0
    figures = {"calls": calls}
    for q in (50, 99):
        figures[f"p{q}_us_at_most"] = next(
            (edge for edge, count in zip(edges, counts, strict=True) if count >= q / 100 * calls),
            0,
        )
    return figures


def server_latency(before: Snapshot, after: Snapshot, calls: Counter) -> dict[str, dict]:
    """Per-command server latency for the phase's five most called commands (a blocking one,
    BRPOP, counts only once it returns)."""
    figures = {
        name: histogram_percentiles(before.histograms.get(name, {}), after.histograms[name])
        for name, _ in calls.most_common(5)
        if name in after.histograms
    }
    return {name: entry for name, entry in figures.items() if entry["calls"]}


def other_db_clients(redis: Redis, db: int, seconds: float) -> int:
    """Connections on other DBs than the bench's that sent a command in the last `seconds`
    (others' work skews the figures)."""
    return sum(
        1
        for client in redis.client_list()
        if int(client["db"]) != db and int(client["idle"]) < seconds
    )


def measure_phase(
    redis: Redis, url: str, seconds: float
) -> tuple[Snapshot, Snapshot, dict[str, Any]]:
    """Snapshots around `seconds` of PING sampling, and the Redis figures between them."""
    pinger = start_pinger(url, seconds)
    try:
        before = snapshot(redis)
        pings = ping_samples(pinger)
        after = snapshot(redis)
    finally:
        pinger.kill()
        pinger.wait()
    calls = after.calls - before.calls - SNAPSHOT_CALLS
    calls["ping"] -= len(pings)
    calls = +calls
    wall = after.at - before.at
    operations = sum(calls.values())
    cpu = after.cpu_seconds - before.cpu_seconds
    figures = {
        "seconds": round(wall, 2),
        "redis_operations": operations,
        "redis_operations_per_second": round(operations / wall, 1),
        "redis_operations_per_second_by_command": {
            name: round(count / wall, 1) for name, count in calls.most_common()
        },
        "redis_cpu_seconds_per_second": round(cpu / wall, 4),
        "redis_cpu_ms_per_1000_operations": round(cpu / operations * 1e6, 2)
        if operations
        else None,
        "redis_ping_ms": {
            "samples": len(pings),
            "p50": round(percentile(pings, 50) * 1000, 3),
            "p99": round(percentile(pings, 99) * 1000, 3),
        },
        "redis_server_latency": server_latency(before, after, calls),
        "clients_on_other_dbs": other_db_clients(redis, int(url.rsplit("/", 1)[1]), wall),
    }
    return before, after, figures


def client_figures(log: ClientLog, start: float, end: float) -> dict[str, Any]:
    """Jobs ended and status reads within [start, end], and the reads' HTTP latency."""
    wall = end - start
    reads = [seconds for at, seconds in log.reads if start <= at <= end]
    ended = [record for at, record in log.ended if start <= at <= end]
    done = [record for record in ended if record["status"] == "succeeded"]
    return {
        "jobs_succeeded": len(done),
        "jobs_not_succeeded": len(ended) - len(done),
        "jobs_per_second": round(len(done) / wall, 3),
        "status_reads": len(reads),
        "status_reads_per_second": round(len(reads) / wall, 1),
        "status_read_ms": {
            "p50": round(percentile(reads, 50) * 1000, 2),
            "p99": round(percentile(reads, 99) * 1000, 2),
        },
        "job_run_seconds_mean": _mean_gap(done, "started_at", "finished_at"),
        "job_queued_seconds_mean": _mean_gap(done, "created_at", "started_at"),
        "worker_idle_between_jobs_seconds": idle_between_jobs(done),
        "errors": dict(log.errors),
    }


def _mean_gap(records: list[dict[str, Any]], first: str, last: str) -> float | None:
    gaps = [
        (datetime.fromisoformat(r[last]) - datetime.fromisoformat(r[first])).total_seconds()
        for r in records
    ]
    return round(statistics.mean(gaps), 2) if gaps else None


def idle_between_jobs(records: list[dict[str, Any]]) -> dict[str, float] | None:
    """Median and largest gap between one job's end and the next job's start on the same worker
    (while jobs were queued for it: the worker's own pause between jobs)."""
    by_worker: dict[str, list[tuple[datetime, datetime]]] = {}
    for record in records:
        by_worker.setdefault(record["worker"]["hostname"], []).append(
            (
                datetime.fromisoformat(record["started_at"]),
                datetime.fromisoformat(record["finished_at"]),
            )
        )
    gaps = [
        (following[0] - previous[1]).total_seconds()
        for runs in by_worker.values()
        for previous, following in itertools.pairwise(sorted(runs))
    ]
    if not gaps:
        return None
    return {"median": round(statistics.median(gaps), 2), "max": round(max(gaps), 2)}


def drain(stack: Stack, redis: Redis, log: ClientLog) -> None:
    """Cancel the jobs the clients left open and wait until none is queued or running and the
    broker's queue is empty, so the next level starts clean."""
    for url, job_id in log.open_jobs:
        httpx.post(f"{url}/jobs/{job_id}/cancel", timeout=10)
    url = stack.apis[0][0]

    def drained() -> bool:
        busy = sum(
            httpx.get(f"{url}/jobs", params={"status": status, "limit": 1}, timeout=10).json()[
                "total"
            ]
            for status in ("queued", "running")
        )
        return busy == 0 and redis.llen(stack.settings.job_queue) == 0

    wait_for(drained, DRAIN_SECONDS, "the jobs to drain", interval=0.5)


def run_level(
    stack: Stack, redis: Redis, workers: int, clients: int, seconds: float
) -> dict[str, Any]:
    """One level: its workers, WARM_UP_SECONDS of load, `seconds` measured, then a drain."""
    set_workers(stack, workers)
    apis = [url for url, _ in stack.apis]
    until = time.monotonic() + WARM_UP_SECONDS + seconds + 1
    thread, log = start_clients(apis, clients, until)
    time.sleep(WARM_UP_SECONDS)
    before, after, figures = measure_phase(redis, stack.env["REDIS_URL"], seconds)
    thread.join(timeout=max(0.0, until - time.monotonic()) + 60)
    drain(stack, redis, log)
    return {"workers": workers, "clients": clients, **client_figures(log, before.at, after.at),
            **figures}  # fmt: skip


def idle_phase(stack: Stack, redis: Redis, workers: int) -> dict[str, Any]:
    set_workers(stack, workers)
    time.sleep(2)  # start-up writes settle
    _, _, figures = measure_phase(redis, stack.env["REDIS_URL"], IDLE_SECONDS)
    return {"workers": workers, "clients": 0, **figures}


def extrapolate(phase: dict[str, Any], idle: dict[str, Any]) -> dict[str, Any]:
    """What one Redis core would carry at this phase's CPU per operation above idle (at 100% of
    the core, where latency would already have risen): operations/s, busy workers, polling
    clients."""
    if not phase["redis_operations"] or not phase["jobs_succeeded"]:
        return {}
    extra_operations = phase["redis_operations_per_second"] - idle["redis_operations_per_second"]
    extra_cpu = phase["redis_cpu_seconds_per_second"] - idle["redis_cpu_seconds_per_second"]
    if extra_operations <= 0 or extra_cpu <= 0:
        return {}
    per_core = extra_operations / extra_cpu
    background = idle["redis_operations_per_second"] * phase["seconds"]
    job_operations = phase["redis_operations"] - phase["status_reads"] - background
    per_job = job_operations / phase["jobs_succeeded"]
    per_worker = per_job * phase["jobs_per_second"] / phase["workers"]
    per_client = phase["status_reads_per_second"] / phase["clients"]
    return {
        "from_phase": f"{phase['workers']} workers, {phase['clients']} clients",
        "redis_cpu_ms_per_1000_operations_above_idle": round(extra_cpu / extra_operations * 1e6, 2),
        "operations_per_second_one_redis_core": round(per_core),
        "operations_per_job_besides_status_reads": round(per_job, 1),
        "operations_per_second_per_busy_worker": round(per_worker, 1),
        "busy_workers_one_redis_core": round(per_core / per_worker) if per_worker > 0 else None,
        "status_reads_per_second_per_client": round(per_client, 2),
        "polling_clients_one_redis_core": round(per_core / per_client),
    }


def markdown(phases: list[dict[str, Any]]) -> str:
    """The phases as a markdown table."""
    header = ("| workers | clients | jobs/s | status reads/s | read p50 / p99 ms | Redis ops/s "
              "| Redis CPU s/s | Redis CPU ms per 1,000 ops | PING p50 / p99 ms |")  # fmt: skip
    rows = [header, "|" + "---|" * 9]
    for phase in phases:
        reads = phase.get("status_read_ms", {})
        rows.append(
            f"| {phase['workers']} | {phase['clients']} | {phase.get('jobs_per_second', 0)} "
            f"| {phase.get('status_reads_per_second', 0)} "
            f"| {reads.get('p50', '-')} / {reads.get('p99', '-')} "
            f"| {phase['redis_operations_per_second']} | {phase['redis_cpu_seconds_per_second']} "
            f"| {phase['redis_cpu_ms_per_1000_operations'] if phase['clients'] else '-'} "
            f"| {phase['redis_ping_ms']['p50']} / {phase['redis_ping_ms']['p99']} |"
        )
    return "\n".join(rows)


def parse_levels(levels: list[str]) -> list[tuple[int, int]]:
    pairs = [tuple(int(part) for part in level.split(":")) for level in levels]
    if any(len(pair) != 2 or min(pair) < 1 for pair in pairs):
        raise argparse.ArgumentTypeError(f"levels are WORKERS:CLIENTS, both >= 1: {levels}")
    return pairs  # type: ignore[return-value]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per level")
    parser.add_argument("--apis", type=int, default=3, help="API processes")
    parser.add_argument("--levels", nargs="+", default=["1:8", "3:32"], help="WORKERS:CLIENTS")
    return parser.parse_args()


def stop_on_sigterm() -> None:
    """SIGTERM ends the run as Ctrl-C does, through the clean-up."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main() -> None:
    args = arguments()
    levels = parse_levels(args.levels)
    stop_on_sigterm()
    url, redis = scratch_redis()
    with tempfile.TemporaryDirectory() as scratch:
        env = bench_env(url, Path(scratch))
        stack = Stack(env, Path(scratch), Settings(redis_url=url, log_level="WARNING"))
        print(f"Logs in {scratch} (removed at the end)", flush=True)
        try:
            start_apis(stack, args.apis)
            kind_defaults = check_job_kind(stack.apis[0][0])
            idle = idle_phase(stack, redis, levels[0][0])
            phases = [idle]
            for workers, clients in levels:
                print(f"level: {workers} workers, {clients} clients", flush=True)
                phases.append(run_level(stack, redis, workers, clients, args.seconds))
        finally:
            stop_all(stack)
            redis.flushdb()
    figures = {
        "api_processes": args.apis,
        "job": {"kind": "backprop", "params": JOB, "kind_defaults": kind_defaults},
        "poll_seconds": POLL_SECONDS,
        "warm_up_seconds": WARM_UP_SECONDS,
        "phases": phases,
        "extrapolation": extrapolate(phases[-1], idle),
        "table": markdown(phases),
    }
    print(figures["table"])
    if any(phase["clients_on_other_dbs"] for phase in phases):
        print("Warning: other clients used this Redis (clients_on_other_dbs): its figures include "
              "their operations and CPU; run again with the Redis to itself.")  # fmt: skip
    print("extrapolation:", figures["extrapolation"])
    print(f"Written to {write_results('scale_out', figures, seed=None)}")


if __name__ == "__main__":
    main()
