"""Deployment files, tested without a Docker engine: docker-compose.yml follows the Compose
Specification, every command line in it and in the Dockerfile starts here against the local
Redis, and every variable they set is one the settings class reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from redis import Redis

from service.settings import Settings
from tests.conftest import LAUNCHER_DB
from tests.stack import REPO_ROOT, free_port, redis_url, wait_for

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
SCHEMA = json.loads((REPO_ROOT / "tests/data/compose-spec.json").read_text())
SERVICES = COMPOSE["services"]
# Variables the files set that are not the service's settings, and whose they are.
NOT_SETTINGS = {
    "PATH": "the shell's: finds the virtual environment",
    "PYTHONUNBUFFERED": "Python's: logs appear as they are written",
    "PIP_NO_CACHE_DIR": "pip's, while building the image",
    "PIP_DISABLE_PIP_VERSION_CHECK": "pip's, while building the image",
    "PUBLISHED_PORT": "docker compose's: the host port the API is published on",
    "REDIS_PASSWORD": "Redis' own (--requirepass), and part of REDIS_URL",
    "REDISCLI_AUTH": "redis-cli's, for Redis' healthcheck",
    "API_MEMORY_LIMIT": "docker compose's: the API container's mem_limit",
    "WORKER_MEMORY_LIMIT": "docker compose's: each worker container's mem_limit",
}


@pytest.fixture(autouse=True)
def clean_redis_db():
    """The command lines run against their own Redis DB, emptied before and after."""
    redis = Redis.from_url(redis_url(LAUNCHER_DB))
    redis.flushdb()
    yield
    redis.flushdb()
    redis.close()


def test_the_compose_file_follows_the_compose_specification():
    validator = jsonschema.Draft201909Validator(SCHEMA)
    assert [error.message for error in validator.iter_errors(COMPOSE)] == []
    broken = {**COMPOSE, "services": {**SERVICES, "api": {**SERVICES["api"], "portz": [8000]}}}
    assert any("portz" in error.message for error in validator.iter_errors(broken))


def test_the_compose_file_wires_redis_api_and_gpu_workers():
    redis, api, worker, cpu_worker = (SERVICES[name] for name in
                                      ("redis", "api", "worker", "worker-cpu"))  # fmt: skip
    assert "--appendonly" in redis["command"] and "redis-data:/data" in redis["volumes"]
    for service in (api, worker, cpu_worker):
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "artifacts:/data" in service["volumes"]  # models and plots, shared
        assert service["restart"] == "unless-stopped"
        assert service["environment"]["ARTIFACTS_DIR"] == "/data"
    for service in SERVICES.values():
        assert service["healthcheck"]["test"][0] == "CMD"
    gpu = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["build"]["target"] == "gpu" and cpu_worker["build"]["target"] == "cpu"
    assert cpu_worker["profiles"] == ["cpu"] and "profiles" not in worker
    assert worker["command"] == cpu_worker["command"]
    assert worker["command"][worker["command"].index("--concurrency") + 1] == "1"
    assert worker["command"][worker["command"].index("--queues") + 1] == "gpu"
    assert api["ports"] == ["${PUBLISHED_PORT:-8000}:8000"]


def test_the_compose_file_passes_the_security_settings_and_bounds_memory():
    redis, api = SERVICES["redis"], SERVICES["api"]
    for name in ("API_TOKEN", "PROTECT_READS", "ALLOW_OPEN_API", "ALLOWED_HOSTS"):
        assert api["environment"][name] == f"${{{name}:-{_env_example_value(name)}}}"
    password = redis["command"][redis["command"].index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD:?")  # compose stops when it is unset
    for service in ("api", "worker", "worker-cpu"):
        url = SERVICES[service]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("@redis:6379/0")
        assert SERVICES[service]["mem_limit"].startswith("${")


def test_the_dockerfile_runs_the_api_as_compose_does_and_not_as_root():
    assert _dockerfile_json("CMD") == SERVICES["api"]["command"]
    assert _dockerfile_json("HEALTHCHECK") == SERVICES["api"]["healthcheck"]["test"][1:]
    stages = re.findall(r"^FROM .* AS (\w[\w-]*)$", DOCKERFILE, flags=re.MULTILINE)
    assert stages[-1] == "cpu" and "gpu" in stages  # cpu is the default target
    assert DOCKERFILE.count("USER app") == 2  # both runnable targets


def test_every_variable_set_is_read_by_the_settings():
    fields = {name.upper() for name in Settings.model_fields}
    set_by_files = (
        {name for service in SERVICES.values() for name in service.get("environment", {})}
        | set(_dockerfile_env())
        | set(_env_example())
        | set(re.findall(r"\$\{(\w+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    )
    unknown = set_by_files - fields - set(NOT_SETTINGS)
    assert unknown == set()
    # Whatever compose reads from the environment, .env.example shows.
    referenced = set(re.findall(r"\$\{(\w+)", (REPO_ROOT / "docker-compose.yml").read_text()))
    assert referenced <= set(_env_example())


@pytest.mark.slow
def test_the_api_command_refuses_to_start_published_without_a_token(tmp_path):
    env = _environment("api", tmp_path)
    assert env["HOST"] == "0.0.0.0" and not env["API_TOKEN"]
    api = subprocess.run(_local(SERVICES["api"]["command"]), env=env, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert api.returncode == 2
    assert "no API_TOKEN" in api.stderr and "ALLOW_OPEN_API=true" in api.stderr
    opened = subprocess.run(_local(SERVICES["api"]["command"]), env={**env, "API_TOKEN": "short"},
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert opened.returncode == 2 and "at least 16" in opened.stderr


@pytest.mark.slow
def test_the_api_command_and_its_healthcheck_start_here(tmp_path, mnist_path):
    env = _environment("api", tmp_path) | {"API_TOKEN": "a-token-as-an-operator-sets-it"}
    healthcheck = _local(SERVICES["api"]["healthcheck"]["test"][1:])
    api = _start(SERVICES["api"]["command"], env, tmp_path / "api.log")
    try:
        url = f"http://127.0.0.1:{env['PORT']}/health"
        wait_for(lambda: _answers(url), 90, f"the API to answer\n{_tail(tmp_path / 'api.log')}")
        assert subprocess.run(healthcheck, env=env, timeout=30).returncode == 0
    finally:
        _stop(api)
    assert subprocess.run(healthcheck, env=env, timeout=30).returncode == 1


@pytest.mark.slow
@pytest.mark.parametrize("service", ["worker", "worker-cpu"])
def test_the_worker_command_and_its_healthcheck_start_here(tmp_path, service):
    env = _environment(service, tmp_path)
    healthcheck = _local(SERVICES[service]["healthcheck"]["test"][1:])
    worker = _start(SERVICES[service]["command"], env, tmp_path / "worker.log")
    try:
        wait_for(
            lambda: subprocess.run(healthcheck, env=env, timeout=30,
                                   capture_output=True).returncode == 0,
            90, f"the worker to report itself\n{_tail(tmp_path / 'worker.log')}", interval=1,
        )  # fmt: skip
    finally:
        _stop(worker)


def _environment(service: str, tmp_path: Path) -> dict[str, str]:
    """The service's environment as compose would set it, pointed at this machine: the test
    Redis DB, a scratch data folder, a free port."""
    local = {**os.environ, "BOOTSTRAP_MODELS": "false"}  # as an operator's .env may say
    values = {name: _interpolate(str(value), local)
              for name, value in SERVICES[service].get("environment", {}).items()}  # fmt: skip
    values |= {"REDIS_URL": redis_url(LAUNCHER_DB), "ARTIFACTS_DIR": str(tmp_path / "data")}
    if "PORT" in values:
        values["PORT"] = str(free_port())
    bin_dir = str(Path(sys.executable).parent)
    return {**local, **values, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` and `${NAME:?error}` (which stops compose when unset)."""
    value = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)
    return re.sub(r"\$\{(\w+):\?([^}]*)\}", lambda m: env.get(m[1]) or f"<unset: {m[2]}>", value)


def _local(command: list[str]) -> list[str]:
    """The command as the image runs it: `python` is the virtual environment's."""
    return [sys.executable if command[0] == "python" else command[0], *command[1:]]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(_local(command), env=env, cwd=REPO_ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def _dockerfile_json(instruction: str) -> list[str]:
    """The JSON array of the last CMD, or of the HEALTHCHECK's CMD."""
    text = DOCKERFILE.replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(instruction + " ")]
    return json.loads(lines[-1][lines[-1].index("[") :])


def _dockerfile_env() -> list[str]:
    text = DOCKERFILE.replace("\\\n", " ")
    names = []
    for line in text.splitlines():
        if line.startswith("ENV "):
            names += re.findall(r"(\w+)=", line)
    return names


def _env_example() -> list[str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    return [line.split("=")[0] for line in lines if line and not line.startswith("#")]


def _env_example_value(name: str) -> str:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith(name + "="))
