"""`make run` end to end: it serves jobs, starts a Redis where none answers (even on a machine
with Python and nothing else), and SIGINT or SIGTERM leaves no process behind."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from redis import Redis

from service.redis_server import find_server
from tests.conftest import LAUNCHER_DB
from tests.stack import HEARTBEAT_SECONDS, REPO_ROOT, free_port, redis_url, wait_for

pytestmark = pytest.mark.slow
MAKE = shutil.which("make") or "make"  # found here: some tests give make run a bare PATH


def processes_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment carries `marker` (all of `make run`'s tree)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return [pid for pid in pids if pid != os.getpid()]


def start_make_run(
    tmp_path: Path, redis: str, **environment: str
) -> tuple[subprocess.Popen, str, str]:
    marker = f"MAKE_RUN_TEST_MARKER={uuid.uuid4().hex}"
    port = free_port()
    env = {
        **os.environ,
        **environment,
        "REDIS_URL": redis,
        "PORT": str(port),
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        # The default models' training (tested in test_serving) would hold the one worker.
        "BOOTSTRAP_MODELS": "false",
        marker.split("=")[0]: marker.split("=")[1],
    }
    log = (tmp_path / "make-run.log").open("wb")
    make = subprocess.Popen(
        [MAKE, "run"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own foreground group, as in a terminal
    )  # fmt: skip
    return make, f"http://127.0.0.1:{port}", marker


def serve_one_job(base_url: str, log: Path) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:

        def ready() -> bool:
            try:
                health = client.get("/health").json()
            except httpx.TransportError:
                return False
            return health["status"] == "ok" and health["workers"]["live"] == 1

        try:
            wait_for(ready, 90, "make run to serve with a live worker", interval=0.3)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{log.read_text()[-4000:]}") from None
        job = client.post("/jobs", json={"kind": "backprop", "params": {}}).json()
        finished = wait_for(
            lambda: (
                (record := client.get(f"/jobs/{job['id']}").json())["status"] == "succeeded"
                and record
            ),
            30,
            "the job to succeed",
        )
        assert finished["result"]["gradients"]


def assert_everything_stops(make: subprocess.Popen, marker: str, log: Path) -> None:
    # make, the launcher, the API, the worker and its pool child at least: the detector works.
    assert len(processes_with_marker(marker)) >= 5
    try:
        make.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(make.pid, signal.SIGKILL)
        pytest.fail(f"make run did not stop:\n{log.read_text()[-4000:]}")
    try:
        wait_for(lambda: not processes_with_marker(marker), 15, "every process to exit")
    except TimeoutError:
        strays = processes_with_marker(marker)
        for pid in strays:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"stray processes after make run stopped: {strays}")


def test_sigterm_to_make_stops_the_api_the_worker_and_the_redis_it_started(tmp_path):
    # No Redis listens on this port, so make run starts one for the session.
    make, base_url, marker = start_make_run(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    log = tmp_path / "make-run.log"
    try:
        serve_one_job(base_url, log)
        assert f"starting {Path(find_server()).name}" in log.read_text()
    finally:
        os.kill(make.pid, signal.SIGTERM)  # to make alone, not its group
        assert_everything_stops(make, marker, log)


def test_on_a_machine_with_python_alone_make_run_starts_the_embedded_redis(tmp_path):
    # PATH holds the venv's programs and nothing else: no redis-server, as on a bare machine.
    bare_path = str(Path(sys.executable).parent)
    assert shutil.which("redis-server", path=bare_path) is None
    redis_port = free_port()
    make, base_url, marker = start_make_run(
        tmp_path, f"redis://127.0.0.1:{redis_port}/0", PATH=bare_path, REDIS_SERVER="auto"
    )
    log = tmp_path / "make-run.log"
    try:
        serve_one_job(base_url, log)
        assert "starting valkey-server" in log.read_text()
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert_everything_stops(make, marker, log)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=2).close()
    # The data stays for the next `make run`, append-only, under ARTIFACTS_DIR.
    assert list((tmp_path / "artifacts/redis/appendonlydir").glob("*.aof"))


def test_ctrl_c_stops_everything_and_leaves_an_existing_redis_alone(tmp_path):
    make, base_url, marker = start_make_run(tmp_path, redis_url(LAUNCHER_DB))
    log = tmp_path / "make-run.log"
    try:
        serve_one_job(base_url, log)
        assert "starting redis-server" not in log.read_text()
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        assert_everything_stops(make, marker, log)
        redis = Redis.from_url(redis_url(LAUNCHER_DB))
        assert redis.ping()
        redis.flushdb()
        redis.close()


def test_a_server_that_cannot_be_found_is_explained_in_one_line(tmp_path):
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "REDIS_SERVER": str(tmp_path / "no-such-server"),
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "service.launcher"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 1
    message = completed.stderr.strip().splitlines()[-1]
    assert message.startswith("No Redis answers at redis://127.0.0.1:")
    assert "REDIS_SERVER=" in message and "no-such-server" in message and "embedded" in message
