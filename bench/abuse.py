"""Abuse bench: each attack on the HTTP surface while normal clients keep predicting.

    MNIST_PATH=../shared/data/mnist.npz python bench/abuse.py [--seconds 8]

Starts one API process (API_TOKEN set, MODEL_CACHE_BYTES room for 3 of 6 stored cnn models) on
the benches' Redis DB (BENCH_REDIS_URL, default DB 11). Then, for a quiet phase and for each
attack, one normal client posts a 28x28 PNG to /predict/digit in a loop and another polls
/health, while attacker threads run. Prints, per phase, the p50/p99 of normal predictions and
the p99 of /health, the attack's answers by status, and any 5xx other than the documented 503;
the API's RSS before and after. Writes bench/results/abuse.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.predict_load import HOST, REPO_ROOT, png_digits, scratch_redis, start_server, store_model
from bench.results import write_results
from tests.photo_like import encode, photo_of_digit
from tests.stack import free_port

TOKEN = "abuse-bench-token-0123456789"
MODELS = 6


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Phase:
    """Runs normal clients and attackers for `seconds`, recording what each got."""

    def __init__(self, base: str, png: bytes, seconds: float) -> None:
        self.base = base
        self.png = png
        self.seconds = seconds
        self.predict_ms: list[float] = []
        self.health_ms: list[float] = []
        self.normal_statuses: Counter = Counter()
        self.attack_statuses: Counter = Counter()
        self.lock = threading.Lock()

    def run(self, attack: Callable[[httpx.Client], int] | None, threads: int) -> dict:
        stop = time.monotonic() + self.seconds
        workers = [threading.Thread(target=self._predict, args=(stop,)),
                   threading.Thread(target=self._health, args=(stop,))]  # fmt: skip
        if attack is not None:
            workers += [threading.Thread(target=self._attack, args=(attack, stop))
                        for _ in range(threads)]  # fmt: skip
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        unexpected = sum(
            count
            for statuses in (self.normal_statuses, self.attack_statuses)
            for status, count in statuses.items()
            if status >= 500 and status != 503
        )
        return {
            "predictions": len(self.predict_ms),
            "predict_p50_ms": float(np.percentile(self.predict_ms, 50)),
            "predict_p99_ms": float(np.percentile(self.predict_ms, 99)),
            "health_p99_ms": float(np.percentile(self.health_ms, 99)),
            "normal_statuses": dict(self.normal_statuses),
            "attack_statuses": dict(self.attack_statuses),
            "unexpected_5xx": unexpected,
        }

    def _predict(self, stop: float) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                answer = client.post("/predict/digit", files={"file": ("d.png", self.png)})
                self.predict_ms.append((time.perf_counter() - started) * 1000)
                self.normal_statuses[answer.status_code] += 1

    def _health(self, stop: float) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while time.monotonic() < stop:
                started = time.perf_counter()
                self.normal_statuses[client.get("/health").status_code] += 1
                self.health_ms.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

    def _attack(self, attack: Callable[[httpx.Client], int], stop: float) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while time.monotonic() < stop:
                try:
                    status = attack(client)
                except httpx.HTTPError:
                    status = 0  # the connection was refused or dropped
                with self.lock:
                    self.attack_statuses[status] += 1


def big_body_without_token(port: int) -> Callable[[httpx.Client], int]:
    def attack(_: httpx.Client) -> int:
        with socket.create_connection((HOST, port), timeout=30) as connection:
            connection.sendall(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Content-Length: 60000000\r\n\r\n")  # fmt: skip
            return int(connection.recv(4096).split()[1])

    return attack


def slow_uploads(port: int, count: int, seconds: float) -> threading.Thread:
    """`count` connections that announce an upload and send it a byte a second."""

    def dribble() -> None:
        connections = []
        for _ in range(count):
            connection = socket.create_connection((HOST, port), timeout=30)
            connection.sendall(b"POST /predict/digit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Content-Type: multipart/form-data; boundary=x\r\n"
                               b"Content-Length: 100000\r\n\r\n--x\r\n")  # fmt: skip
            connections.append(connection)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.sendall(b"a")
            time.sleep(1)
        for connection in connections:
            connection.close()

    return threading.Thread(target=dribble)


def upload(path: Callable[[], str] | str, files: list[tuple[str, bytes]]) -> Callable:
    """An attack that posts `files` (name, bytes) as `file` parts to a path."""

    def attack(client: httpx.Client) -> int:
        where = path() if callable(path) else path
        return client.post(where, files=[("file", file) for file in files]).status_code

    return attack


def attacks(port: int, models: list[str], png: bytes) -> dict[str, tuple[Callable, int]]:
    rng = np.random.default_rng(0)
    with np.load(os.environ.get("MNIST_PATH", REPO_ROOT.parent / "shared/data/mnist.npz")) as d:
        digit = d["x_test"][0]
    photo = encode(photo_of_digit(digit, rng), "JPEG")
    big_photo = encode(np.asarray(Image.fromarray(photo_of_digit(digit, rng)).resize((4000, 3000))))
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    cycle = itertools.cycle(models)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    huge_mlp = {"kind": "mlp", "params": {"depth": 100, "width": 4096, "batch_size": 1}}
    return {
        "big bodies without token": (big_body_without_token(port), 4),
        "1,000 files per request": (upload("/predict/digit", [("d.png", png)] * 1000), 2),
        "64 Mpx PNG bombs x40": (upload("/predict/digit", [("b.png", bomb)] * 40), 2),
        "12 Mpx photos": (upload("/predict/digit", [("p.jpg", big_photo)]), 4),
        "phone photos": (upload("/predict/digit", [("p.jpg", photo)]), 4),
        "every model in turn": (
            upload(lambda: f"/predict/digit?model={next(cycle)}", [("d.png", png)]),
            2,
        ),
        "oversized jobs": (lambda c: c.post("/jobs", json=huge_mlp, headers=auth).status_code, 2),
        "feature maps": (
            upload(f"/models/{models[0]}/plots/feature-maps.png", [("p.jpg", photo)]),
            4,
        ),
        "health flood": (lambda c: c.get("/health").status_code, 4),
        "malformed ids": (lambda c: c.get("/jobs/..%2F..%2Fx:history").status_code, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    args = parser.parse_args()
    url, redis = scratch_redis()
    with tempfile.TemporaryDirectory() as scratch:
        artifacts = Path(scratch) / "artifacts"
        paths = [store_model(redis, artifacts) for _ in range(MODELS)]
        models = [path.parent.name for path in paths]
        port = free_port()
        size = sum(f.stat().st_size for f in paths[0].parent.iterdir())
        env = {**os.environ, "REDIS_URL": url, "ARTIFACTS_DIR": str(artifacts), "PORT": str(port),
               "HOST": HOST, "API_WORKERS": "1", "API_TOKEN": TOKEN, "BOOTSTRAP_MODELS": "false",
               "MODEL_CACHE_BYTES": str(3 * size), "LOG_LEVEL": "WARNING"}  # fmt: skip
        process = start_server([sys.executable, "-m", "service.api_server"], port, env,
                               Path(scratch) / "api.log")  # fmt: skip
        try:
            figures = run_phases(process.pid, port, models, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
            redis.flushdb()
    path = write_results("abuse", figures, seed=0)
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")


def run_phases(pid: int, port: int, models: list[str], seconds: float) -> dict:
    base = f"http://{HOST}:{port}"
    png = png_digits(1)[0]
    Phase(base, png, 3).run(None, 0)  # warm up: the default model loads
    rss_before = rss_bytes(pid)
    phases = {"quiet": Phase(base, png, seconds).run(None, 0)}
    slow = slow_uploads(port, 200, seconds)
    slow.start()
    phases["200 slow uploads"] = Phase(base, png, seconds).run(None, 0)
    slow.join()
    for name, (attack, threads) in attacks(port, models, png).items():
        phases[name] = Phase(base, png, seconds).run(attack, threads)
    rss_after = rss_bytes(pid)
    quiet = phases["quiet"]
    print(f"{'phase':26} {'predictions':>11} {'p50 ms':>7} {'p99 ms':>7} {'x quiet':>7} "
          f"{'health p99':>10}  attack answers / unexpected 5xx")  # fmt: skip
    for name, phase in phases.items():
        ratio = phase["predict_p99_ms"] / quiet["predict_p99_ms"]
        phase["predict_p99_vs_quiet"] = ratio
        print(f"{name:26} {phase['predictions']:11} {phase['predict_p50_ms']:7.1f} "
              f"{phase['predict_p99_ms']:7.1f} {ratio:7.2f} {phase['health_p99_ms']:10.1f}  "
              f"{json.dumps(phase['attack_statuses'])} / {phase['unexpected_5xx']}")  # fmt: skip
    growth = rss_after / rss_before - 1
    print(f"API RSS: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after "
          f"({growth:+.1%})")  # fmt: skip
    return {"phases": phases, "rss_before_bytes": rss_before, "rss_after_bytes": rss_after,
            "rss_growth": growth, "seconds_per_phase": seconds}  # fmt: skip


if __name__ == "__main__":
    main()
