"""Throughput and latency of predictions: the service against a naive server and BentoML.

Every server serves the same stored model (the default `cnn` architecture) with the same
decoding and preparation:
- `service`: started as `make run` starts it (service.api_server, API_WORKERS processes,
  default 2); `service-1` once more with one process (not run unless named in --servers);
- `bentoml-batching`: BentoML 1.4's recommended layout for adaptive batching, a front service
  that prepares each upload and a batchable model service (bench/peers/bento_digits.py);
- `bentoml-plain`: BentoML with API_WORKERS workers and no batching;
- `naive`: FastAPI calling `model.predict` once per request (bench/naive_server.py).
The BentoML peers run from .venv-peers (`make bench-peers`; PEERS_PYTHON names another
Python); without it they are skipped, saying why.

Uploads: each server gets the same PNG digits (MNIST test images) posted to /predict/digit at
each concurrency for a fixed time, one server after another, every server once per round, in
alternating order (round 2 runs them in reverse), so that slow drifts of the machine's speed
fall on all of them. Ratios compare figures of the same round: to the naive server and to
BentoML's best layout at that concurrency.

Batches: the service gets 64 raw 28x28 MNIST arrays per request, on TF Serving's
`POST /v1/models/cnn:predict` and on KServe v2's `POST /v2/models/cnn/infer` (UINT8 [64, 28,
28]), at concurrency 4; in the same round, the model-only ceiling (bench/model_ceiling.py):
API_WORKERS processes calling the served model's predict function on batches of 64.

Load comes from wrk with one thread (`make bench-tools` installs Debian's), through a Lua
script generated at run time that cycles through request bodies built up front; where wrk is
not installed, from bench/load_generator.py (Python), as the output says. Figures per server,
round and concurrency go to bench/results/predict_load.json, with markdown tables; the servers'
output to a log file in the temporary folder, named at the start.

    make bench-tools bench-peers  # wrk (apt-get), .venv-peers with BentoML
    MNIST_PATH=../shared/data/mnist.npz .venv/bin/python bench/predict_load.py \
        [--seconds 15] [--rounds 3] [--concurrency 1 32]

With the defaults, about 15 minutes. Uses Redis DB 11 at BENCH_REDIS_URL (default
redis://127.0.0.1:6379/11) and flushes it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx
import numpy as np
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import model_ceiling, wrk
from bench.load_generator import Load, multipart_body, post_request, run_load
from bench.results import write_results
from service.launcher import api_command
from service.models.store import ModelStore
from service.settings import Settings

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = Path(os.environ.get("PEERS_PYTHON", REPO_ROOT / ".venv-peers/bin/python"))
BATCH_IMAGES = 64
BATCH_CONCURRENCY = 4
BATCH_BODIES = 4  # different digits in each
WARM_UP_SECONDS = 2
START_SECONDS = 180
STOP_SECONDS = 30
NAIVE = "naive"
PORT_SLOT = "{port}"  # in a server's command: the free port of each start
BENTOML_PREFIX = "BentoML"


@dataclass(frozen=True)
class Posts:
    """POSTs to one path, cycling through request bodies."""

    path: str
    content_type: str
    bodies: list[bytes]


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str | None = None  # answers 200 once it serves (else: see start_server)


@dataclass
class Runs:
    """Everything measured, as it is recorded."""

    uploads: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    ceilings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Bench:
    """How every measurement of a run is made."""

    seconds: int  # per measurement
    env: dict[str, str]  # the servers' environment
    generator: Generator
    workers: int  # API_WORKERS
    model_path: Path
    log: Path  # the servers' output


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


def mnist_test_images(count: int) -> np.ndarray:
    mnist = os.environ.get("MNIST_PATH", str(REPO_ROOT.parent / "shared/data/mnist.npz"))
    with np.load(mnist) as data:
        return data["x_test"][:count]


def png_digits(count: int) -> list[bytes]:
    from PIL import Image

    encoded = []
    for image in mnist_test_images(count):
        buffer = BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    return encoded


def servers_log() -> Path:
    """A file for the output of the servers (kept: it says why one failed)."""
    handle, name = tempfile.mkstemp(prefix="predict_load-", suffix=".log")
    os.close(handle)
    print(f"Servers' output: {name}", flush=True)
    return Path(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    command: list[str], port: int, env: dict[str, str], log: Path, ready_path: str | None = None
) -> subprocess.Popen:
    """Start a server in a process group of its own and wait until it answers: at
    `ready_path`, else (the service) until every process has loaded the model, else (no
    API_WORKERS: the naive server) at /docs."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=out, stderr=out, start_new_session=True
        )
    workers = int(env.get("API_WORKERS", "0"))
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if ready_path or workers == 0:
                path = ready_path or "/docs"
                if httpx.get(f"http://{HOST}:{port}{path}").status_code == 200:
                    return process
            else:
                metrics = httpx.get(f"http://{HOST}:{port}/metrics").text
                if f"digit_service_models_loaded {workers:.1f}" in metrics:
                    return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(process)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{' '.join(command)} did not start. The end of its log:\n{tail}")


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server started by `start_server` and every process under it (BentoML's workers
    run in sessions of their own, beyond the reach of its process group)."""
    tree = [process.pid, *_descendants(process.pid)]
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)  # each server stops its own processes on SIGTERM
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_SECONDS)
    deadline = time.monotonic() + STOP_SECONDS
    while (alive := [pid for pid in tree if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _descendants(pid: int) -> list[int]:
    """The processes under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _running(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class Generator:
    """Runs load: wrk when installed, else bench/load_generator.py."""

    def __init__(self, use_wrk: bool, scratch: Path) -> None:
        self.use_wrk = use_wrk
        self.scratch = scratch
        self._scripts: dict[str, Path] = {}  # by path: one kind of request each

    @property
    def name(self) -> str:
        return "wrk -t1" if self.use_wrk else "bench/load_generator.py"

    def run(self, port: int, posts: Posts, concurrency: int, seconds: float) -> Load:
        if self.use_wrk:
            return wrk.run(
                f"http://{HOST}:{port}", self._script(posts), concurrency, round(seconds)
            )
        requests = [
            post_request(HOST, port, posts.path, posts.content_type, body) for body in posts.bodies
        ]
        return asyncio.run(run_load(HOST, port, requests, concurrency, seconds=seconds)).summary()

    def _script(self, posts: Posts) -> Path:
        if posts.path not in self._scripts:
            folder = self.scratch / f"wrk-{len(self._scripts)}"
            self._scripts[posts.path] = wrk.write_script(
                folder, posts.path, posts.content_type, posts.bodies
            )
        return self._scripts[posts.path]


def upload_posts(images: list[bytes]) -> Posts:
    boundary = uuid.uuid4().hex
    return Posts(
        "/predict/digit",
        f"multipart/form-data; boundary={boundary}",
        [multipart_body(f"{i}.png", data, boundary) for i, data in enumerate(images)],
    )


def batch_posts(images: np.ndarray) -> dict[str, Posts]:
    """TF Serving and KServe v2 requests of BATCH_IMAGES arrays each, different digits in each."""
    batches = [images[i * BATCH_IMAGES : (i + 1) * BATCH_IMAGES] for i in range(BATCH_BODIES)]
    v1 = [json.dumps({"instances": batch.tolist()}).encode() for batch in batches]
    v2 = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": list(batch.shape),
                        "datatype": "UINT8",
                        "data": batch.ravel().tolist(),
                    }
                ]
            }
        ).encode()
        for batch in batches
    ]
    return {
        "v1 :predict": Posts("/v1/models/cnn:predict", "application/json", v1),
        "v2 infer": Posts("/v2/models/cnn/infer", "application/json", v2),
    }


def check_answers(port: int, posts: Posts, count: int, valid: Callable[[Any], bool]) -> None:
    """Post the first `count` bodies one by one and check each answer (the first is retried
    while the server still starts its parts)."""
    deadline = time.monotonic() + START_SECONDS
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as client:
        for index, body in enumerate(posts.bodies[:count]):
            while True:
                try:
                    response = client.post(
                        posts.path, content=body, headers={"Content-Type": posts.content_type}
                    )
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    break
                if index > 0 or time.monotonic() > deadline:
                    answer = "no answer" if response is None else response.text[:500]
                    raise RuntimeError(f"POST {posts.path} answered: {answer}")
                time.sleep(0.5)
            if not valid(response.json()):
                raise RuntimeError(f"POST {posts.path}: unexpected answer {response.text[:500]}")


def is_digit_answer(answer: Any) -> bool:
    return isinstance(answer, dict) and "digit" in answer and len(answer["probabilities"]) == 10


def is_batch_answer(answer: Any) -> bool:
    if "predictions" in answer:
        return len(answer["predictions"]) == BATCH_IMAGES
    return answer["outputs"][0]["shape"] == [BATCH_IMAGES, 10]


def service_server(processes: int) -> Server:
    """The service as `make run` starts it, with `processes` API processes."""
    return Server(f"service, {processes} proc", api_command(), {"API_WORKERS": str(processes)})


def servers(args, env: dict[str, str], workers: int) -> tuple[list[Server], dict[str, str]]:
    """The servers named by --servers, and why any of them is skipped."""
    peer_env = {
        "BENTOML_HOME": str(Path(env["ARTIFACTS_DIR"]) / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PEER_WORKERS": str(workers),
    }
    listen = f"--host {HOST} --port {PORT_SLOT}".split()
    serve = [str(PEERS_PYTHON), "-m", "bentoml", "serve", *listen]
    known = {
        "service": service_server(workers),
        "service-1": service_server(1),
        "bentoml-batching": Server(
            f"{BENTOML_PREFIX}, adaptive batching",
            [*serve, "bench.peers.bento_digits:DigitFront"],
            peer_env,
            "/readyz",
        ),
        "bentoml-plain": Server(
            f"{BENTOML_PREFIX}, plain {workers} workers",
            [*serve, "bench.peers.bento_digits:DigitPlain"],
            peer_env,
            "/readyz",
        ),
        NAIVE: Server(
            NAIVE, [sys.executable, "-m", "uvicorn", "bench.naive_server:app", *listen], {}
        ),
    }
    missing = bentoml_missing() if any(key.startswith("bentoml") for key in args.servers) else None
    chosen, skipped = [], {}
    for key in args.servers:
        if key.startswith("bentoml") and missing:
            skipped[known[key].name] = missing
        else:
            chosen.append(known[key])
    return chosen, skipped


def bentoml_missing() -> str | None:
    """Why the BentoML peers cannot run, or None."""
    if not PEERS_PYTHON.exists():
        return f"{PEERS_PYTHON} does not exist; `make bench-peers` makes it"
    found = subprocess.run(
        [str(PEERS_PYTHON), "-c", "import bentoml; print(bentoml.__version__)"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        return f"BentoML is not installed in {PEERS_PYTHON}; `make bench-peers` installs it"
    return None


def start(bench: Bench, server: Server) -> tuple[subprocess.Popen, int]:
    """Start `server` on a free port; the process and the port."""
    port = free_port()
    command = [part.replace(PORT_SLOT, str(port)) for part in server.command]
    env = bench.env | server.env | {"PORT": str(port)}
    return start_server(command, port, env, bench.log, server.ready_path), port


def measure_uploads(bench: Bench, server: Server, posts: Posts, levels: list[int]) -> list[Load]:
    """One server at each concurrency, lowest first (a backlog then never spills into the
    next level's figures)."""
    process, port = start(bench, server)
    try:
        check_answers(port, posts, 5, is_digit_answer)
        bench.generator.run(port, posts, 4, WARM_UP_SECONDS)
        loads = []
        for concurrency in sorted(levels):
            load = bench.generator.run(port, posts, concurrency, bench.seconds)
            print(
                f"  {server.name:30} c={concurrency:<3} {load.throughput:9.1f} req/s  "
                f"p50 {load.p50_ms:8.2f} ms  p99 {load.p99_ms:8.2f} ms  errors {load.errors}",
                flush=True,
            )
            loads.append(load)
        return loads
    finally:
        stop_server(process)


def measure_batches(bench: Bench, posts: dict[str, Posts]) -> dict[str, Load]:
    """The service on each kind of batch request, at BATCH_CONCURRENCY."""
    process, port = start(bench, service_server(bench.workers))
    try:
        loads = {}
        for name, each in posts.items():
            check_answers(port, each, len(each.bodies), is_batch_answer)
            bench.generator.run(port, each, BATCH_CONCURRENCY, WARM_UP_SECONDS)
            load = bench.generator.run(port, each, BATCH_CONCURRENCY, bench.seconds)
            print(
                f"  {name:30} c={BATCH_CONCURRENCY:<3} {load.throughput * BATCH_IMAGES:9.0f} "
                f"images/s  p50 {load.p50_ms:8.2f} ms  errors {load.errors}",
                flush=True,
            )
            loads[name] = load
        return loads
    finally:
        stop_server(process)


def measure_ceiling(bench: Bench, batch: np.ndarray) -> float:
    rate = model_ceiling.measure(bench.model_path, batch, bench.workers, bench.seconds, bench.log)
    print(f"  {f'model only, {bench.workers} proc':30} {rate:9.0f} images/s", flush=True)
    return rate


def prepared_batch(images: np.ndarray) -> np.ndarray:
    """The arrays as the API prepares them for the model."""
    from training.digit_images import to_mnist

    return np.stack([to_mnist(image).image for image in images[:BATCH_IMAGES]])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's throughput against the naive server's and BentoML's best layout's in the
    same round at the same concurrency."""
    for row in rows:
        peers = [
            other
            for other in rows
            if (other["round"], other["concurrency"]) == (row["round"], row["concurrency"])
        ]
        naive = [other["throughput"] for other in peers if other["server"] == NAIVE]
        bentoml = [other for other in peers if other["server"].startswith(BENTOML_PREFIX)]
        best = max(bentoml, key=lambda other: other["throughput"]) if bentoml else None
        row["vs_naive"] = row["throughput"] / naive[0] if naive else None
        row["bentoml_best"] = best["server"] if best else None
        row["vs_bentoml_best"] = row["throughput"] / best["throughput"] if best else None


def add_ceiling_shares(runs: Runs) -> None:
    """Each batch figure as a share of the model-only ceiling of the same round."""
    ceilings = {row["round"]: row["images_per_s"] for row in runs.ceilings}
    for row in runs.batches:
        ceiling = ceilings.get(row["round"])
        row["share_of_ceiling"] = row["images_per_s"] / ceiling if ceiling else None


def spread(values: list[float | None]) -> dict[str, float] | None:
    """Median and range, or None without values."""
    present = [value for value in values if value is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}


def upload_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per server and concurrency: medians over the rounds, with their ranges."""
    summary = []
    keys = list(dict.fromkeys((row["server"], row["concurrency"]) for row in rows))
    for server, concurrency in keys:
        mine = [row for row in rows if (row["server"], row["concurrency"]) == (server, concurrency)]
        summary.append(
            {
                "server": server,
                "concurrency": concurrency,
                "rounds": len(mine),
                "errors": sum(row["errors"] for row in mine),
                **{
                    name: spread([row[name] for row in mine])
                    for name in ("throughput", "p50_ms", "p99_ms", "vs_naive", "vs_bentoml_best")
                },
            }
        )
    return summary


def batch_summary(runs: Runs) -> list[dict[str, Any]]:
    """Per endpoint, and for the ceiling: medians over the rounds, with their ranges."""
    summary = []
    for endpoint in dict.fromkeys(row["endpoint"] for row in runs.batches):
        rows = [row for row in runs.batches if row["endpoint"] == endpoint]
        summary.append({
            "what": endpoint,
            "images_per_s": spread([row["images_per_s"] for row in rows]),
            "share_of_ceiling": spread([row["share_of_ceiling"] for row in rows]),
        })  # fmt: skip
    if runs.ceilings:
        summary.append({
            "what": "model only (ceiling)",
            "images_per_s": spread([row["images_per_s"] for row in runs.ceilings]),
            "share_of_ceiling": None,
        })  # fmt: skip
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="per concurrency level")
    parser.add_argument("--rounds", type=int, default=3, help="every server once per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["service", "bentoml-batching", "bentoml-plain", NAIVE],
        choices=["service", "service-1", "bentoml-batching", "bentoml-plain", NAIVE],
    )
    parser.add_argument(
        "--sections", nargs="+", default=["uploads", "batch"], choices=["uploads", "batch"]
    )
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--quantized",
        action="store_true",
        help="the service, BentoML and the ceiling with SERVE_QUANTIZED=true (8-bit weights); "
        "results to bench/results/predict_load_quantized.json",
    )
    args = parser.parse_args()
    # The servers' and the ceiling's processes, whatever the shell or .env says.
    os.environ["SERVE_QUANTIZED"] = "true" if args.quantized else "false"

    use_wrk = args.generator == "wrk" or (args.generator == "auto" and wrk.available())
    if args.generator == "auto" and not use_wrk:
        print(
            "wrk is not installed (`make bench-tools`): load from bench/load_generator.py "
            "instead, which takes more of the CPU the servers share.",
            flush=True,
        )
    redis_url, redis = scratch_redis()
    with tempfile.TemporaryDirectory() as scratch:
        artifacts = Path(scratch) / "artifacts"
        model_path = store_model(redis, artifacts)
        env = {
            **os.environ,
            "HOST": HOST,
            "REDIS_URL": redis_url,
            "ARTIFACTS_DIR": str(artifacts),
            "BOOTSTRAP_MODELS": "false",
            "LOG_LEVEL": "WARNING",
            "MODEL_PATH": str(model_path),
            "PYTHONPATH": str(REPO_ROOT),
        }
        workers = Settings().api_workers
        chosen, skipped = servers(args, env, workers)
        generator = Generator(use_wrk, Path(scratch))
        bench = Bench(args.seconds, env, generator, workers, model_path, servers_log())
        for name, reason in skipped.items():
            print(f"Skipped {name}: {reason}.", flush=True)
        print(
            f"{args.seconds} s per level, {args.rounds} rounds, load from {generator.name}; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        runs = run_rounds(bench, args, chosen)
    redis.flushdb()
    add_ratios(runs.uploads)
    add_ceiling_shares(runs)
    figures = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "generator": generator.name,
        "api_workers": workers,
        "serve_quantized": args.quantized,
        "skipped": skipped,
        "uploads": runs.uploads,
        "uploads_summary": upload_summary(runs.uploads),
        "batch": {
            "images_per_request": BATCH_IMAGES,
            "concurrency": BATCH_CONCURRENCY,
            "requests": runs.batches,
            "ceiling": runs.ceilings,
            "summary": batch_summary(runs),
        },
    }
    print_tables(figures)
    name = "predict_load_quantized" if args.quantized else "predict_load"
    print(f"\nWritten to {write_results(name, figures, seed=None)}")


def run_rounds(bench: Bench, args, chosen: list[Server]) -> Runs:
    """Every server once per round, in alternating order; the batch section likewise."""
    runs = Runs()
    images = mnist_test_images(max(200, BATCH_IMAGES * BATCH_BODIES))
    uploads = upload_posts(png_digits(200))
    batches = batch_posts(images[: BATCH_IMAGES * BATCH_BODIES])
    batch = prepared_batch(images)
    for round_index in range(1, args.rounds + 1):
        print(f"Round {round_index}", flush=True)
        forward = round_index % 2 == 1
        if "uploads" in args.sections:
            for server in chosen if forward else chosen[::-1]:
                for load in measure_uploads(bench, server, uploads, args.concurrency):
                    runs.uploads.append({"server": server.name, "round": round_index,
                                         **asdict(load)})  # fmt: skip
        if "batch" not in args.sections:
            continue
        for step in ("service", "ceiling") if forward else ("ceiling", "service"):
            if step == "ceiling":
                rate = measure_ceiling(bench, batch)
                runs.ceilings.append(
                    {"round": round_index, "processes": bench.workers, "images_per_s": rate}
                )
                continue
            for name, load in measure_batches(bench, batches).items():
                runs.batches.append({"endpoint": name, "round": round_index,
                                     "images_per_s": load.throughput * BATCH_IMAGES,
                                     **asdict(load)})  # fmt: skip
    return runs


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}x" if value >= 1 else f"{value:.2f}x"


def _range(value: dict[str, float] | None, digits: int, unit: str = "") -> str:
    if value is None:
        return "-"
    median, low, high = (f"{value[k]:.{digits}f}{unit}" for k in ("median", "min", "max"))
    return median if low == high else f"{median} ({low} to {high})"


def print_tables(figures: dict[str, Any]) -> None:
    print("\nPer round (ratios: against the same round's figures at the same concurrency):\n")
    print(
        "| round | server | concurrency | requests/s | p50 ms | p99 ms | errors | vs naive "
        "| vs BentoML's best |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in figures["uploads"]:
        print(
            f"| {row['round']} | {row['server']} | {row['concurrency']} | "
            f"{row['throughput']:.1f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['errors']} | {_ratio(row['vs_naive'])} | "
            f"{_ratio(row['vs_bentoml_best'])} |"
        )
    print(f"\nMedians over {figures['rounds']} rounds (range):\n")
    print(
        "| server | concurrency | requests/s | p50 ms | p99 ms | errors | vs naive "
        "| vs BentoML's best |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in figures["uploads_summary"]:
        print(
            f"| {row['server']} | {row['concurrency']} | {_range(row['throughput'], 1)} | "
            f"{_range(row['p50_ms'], 2)} | {_range(row['p99_ms'], 2)} | {row['errors']} | "
            f"{_range(row['vs_naive'], 1, 'x')} | {_range(row['vs_bentoml_best'], 1, 'x')} |"
        )
    batch = figures["batch"]
    if batch["summary"]:
        print(
            f"\nBatches of {batch['images_per_request']} arrays at concurrency "
            f"{batch['concurrency']}, medians over the rounds (range):\n"
        )
        print("| what | images/s | share of the ceiling |")
        print("|---|---|---|")
        for row in batch["summary"]:
            share = row["share_of_ceiling"]
            percent = {key: value * 100 for key, value in share.items()} if share else None
            print(
                f"| {row['what']} | {_range(row['images_per_s'], 0)} | {_range(percent, 0, '%')} |"
            )


if __name__ == "__main__":
    main()
