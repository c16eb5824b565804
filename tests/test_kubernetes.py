"""Kubernetes manifests (deploy/kubernetes): each overlay renders with `kubectl kustomize`, every
object it renders validates offline against Kubernetes' own schemas (kubernetes-validate), and
the objects run the service as docker-compose.yml does: the same images, commands, settings and
grace, probes on the health endpoints (liveness never on Redis), the API scaled on CPU, one GPU
per worker in the gpu overlay and none in the cpu one, Redis persistent, placeholders only in
the secrets, and artifacts on a shared claim or (gpu-object-storage) on an object store.
Without kubectl or kustomize the tests skip, and fail where CI is set."""

from __future__ import annotations

import base64
import copy
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.api.exposure import (
    LOOPBACK_HOST_NAMES,
    MIN_TOKEN_LENGTH,
    UnsafeExposure,
    check_exposure,
)
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZE_DIR = REPO_ROOT / "deploy/kubernetes"
OVERLAYS = ("gpu", "cpu", "gpu-object-storage")
# Schemas shipped in the kubernetes-validate package (offline): the kubectl of the development
# machines (1.32) and the newest the package knows.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
PLACEHOLDER = "replace-me"  # the value of every secret in the manifests
# Variables the manifests set that are not the service's settings, and whose they are.
AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
NOT_SETTINGS = {
    "REDIS_PASSWORD": "Redis' own (--requirepass); REDIS_URL is built from it: $(REDIS_PASSWORD)",
    "REDISCLI_AUTH": "redis-cli's, for Redis' probes",
    **{name: "the S3 client's (botocore), for an object-store ARTIFACTS_DIR" for name in
       AWS_CREDENTIALS},
}  # fmt: skip
# What components/object-storage sets beside compose's settings (ARTIFACTS_DIR's value too).
OBJECT_STORE_VARIABLES = {"LOCAL_DIR", "ARTIFACTS_CACHE_BYTES", *AWS_CREDENTIALS}
EXPECTED_KINDS = {
    "Namespace", "ConfigMap", "Secret", "Service", "PersistentVolumeClaim", "Deployment",
    "StatefulSet", "HorizontalPodAutoscaler", "PodDisruptionBudget",
}  # fmt: skip


def _renderer() -> list[str]:
    """`kubectl kustomize` or `kustomize build`; without either, skip, or fail where CI is set
    (CI must run these tests, not skip them unseen)."""
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    reason = (
        "neither kubectl nor kustomize is on PATH, so the Kubernetes manifests cannot be "
        "rendered here: install kubectl to run these tests"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}")
    pytest.skip(reason)


def _render_dir(directory: Path) -> tuple[dict[str, Any], ...]:
    completed = subprocess.run(
        [*_renderer(), str(directory)], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return tuple(doc for doc in yaml.safe_load_all(completed.stdout) if doc)


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    return _render_dir(KUSTOMIZE_DIR / "overlays" / overlay)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(overlay: str) -> list[dict[str, Any]]:
    """The overlay's rendered objects (a copy: a test may change them)."""
    return copy.deepcopy(list(_render(overlay)))


def _object_store(overlay: str) -> bool:
    """Whether the overlay keeps artifacts on an object store (components/object-storage)."""
    return overlay.endswith("-object-storage")


def _image_flavour(overlay: str) -> str:
    return overlay.split("-")[0]  # gpu or cpu


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def _pod(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return _one(objects, kind, name)["spec"]["template"]["spec"]


def _container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (container,) = _pod(objects, kind, name)["containers"]
    return container


def _secret_values(objects: list[dict[str, Any]]) -> dict[str, str]:
    values = {}
    for secret in (o for o in objects if o["kind"] == "Secret"):
        assert "stringData" not in secret
        for key, value in secret.get("data", {}).items():
            values[key] = base64.b64decode(value).decode()
    return values


def _environment(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, Any]:
    """A container's variables as it sees them: {name: value}, a secret's as ("secret", key)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            secret = _one(objects, "Secret", source["secretRef"]["name"])
            env.update({key: ("secret", key) for key in secret["data"]})
            continue
        config_map = _one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            _one(objects, "Secret", ref["name"])  # the reference names a rendered Secret
            env[variable["name"]] = ("secret", ref["key"])
    return env


def _compose_default(value: str) -> str:
    """A compose value as it is when .env sets nothing; `${X:?...}` (required) as `$(X)`."""
    value = re.sub(r"\$\{(\w+):\?[^}]*\}", r"$(\1)", value)
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def _compose_environment(service: str) -> dict[str, str]:
    return {name: _compose_default(str(value)) for name, value in
            COMPOSE[service]["environment"].items()}  # fmt: skip


def _compose_memory(service: str) -> str:
    """Compose's default mem_limit of a service (`${X:-16g}`) in Kubernetes' units: Docker's
    k, m, g are binary (1024-based), Kubernetes' Ki, Mi, Gi."""
    limit = re.fullmatch(r"(\d+)([kmg])", _compose_default(COMPOSE[service]["mem_limit"]).lower())
    assert limit, COMPOSE[service]["mem_limit"]
    return limit[1] + {"k": "Ki", "m": "Mi", "g": "Gi"}[limit[2]]


def _expand(value: str, env: dict[str, Any]) -> str:
    """`$(VAR)` as the kubelet expands it in command, args and env values: from the container's
    variables (env and envFrom); `$$` is a literal `$`; an unknown variable stays as written."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        found = env.get(match[1])
        return found if isinstance(found, str) else match[0]

    return re.sub(r"\$\$|\$\((\w+)\)", one, value)


def test_each_overlay_renders_and_validates_against_the_kubernetes_schemas(objects, overlay):
    claims = {"PersistentVolumeClaim"} if _object_store(overlay) else set()
    assert {o["kind"] for o in objects} == EXPECTED_KINDS - claims
    errors = []
    for obj, version in ((o, v) for o in objects for v in KUBERNETES_VERSIONS):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} ({version}): {error.message}")
    assert errors == []
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "digit-service"
    # The schemas are strict: a misspelt field fails.
    api = _one(objects, "Deployment", "api")
    api["spec"]["template"]["spec"]["containers"][0]["livenesProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenesProbes"):
        kubernetes_validate.validate(api, KUBERNETES_VERSIONS[0], strict=True)


def test_the_api_runs_as_compose_runs_it_with_probes_on_the_health_endpoints(objects):
    from service.api.routes import health, kserve_v2

    api = _container(objects, "Deployment", "api")
    assert api["image"] == COMPOSE["api"]["image"]
    assert api["command"] == COMPOSE["api"]["command"]
    (port,) = api["ports"]
    default_port = Settings.model_fields["port"].default
    assert port["containerPort"] == int(_environment(objects, api)["PORT"]) == default_port
    assert api["resources"]["limits"]["memory"] == _compose_memory("api")
    # Liveness must not depend on Redis: a Redis outage does not restart the API.
    probes = {kind: api[kind]["httpGet"] for kind in
              ("startupProbe", "livenessProbe", "readinessProbe")}  # fmt: skip
    assert probes["livenessProbe"]["path"] == "/v2/health/live"
    assert probes["startupProbe"]["path"] == "/v2/health/live"
    assert probes["readinessProbe"]["path"] == "/v2/health/ready"
    routes = {r.path for r in [*kserve_v2.health_router.routes, *health.router.routes]}
    for probe in probes.values():
        assert probe["path"] in routes
        assert probe["port"] == port["name"]
        # A Host the API answers whatever ALLOWED_HOSTS says.
        assert probe["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
        assert "localhost" in LOOPBACK_HOST_NAMES
    service = _one(objects, "Service", "api")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": default_port, "targetPort": "http"}]  # fmt: skip
    labels = _one(objects, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_hpa_scales_the_api_deployment_on_cpu(objects):
    hpa = _one(objects, "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}  # fmt: skip
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > 2
    # The HPA owns the count; utilisation is measured against the CPU request.
    assert "replicas" not in _one(objects, "Deployment", "api")["spec"]
    assert _container(objects, "Deployment", "api")["resources"]["requests"]["cpu"]


def test_workers_take_one_job_at_a_time_with_the_grace_of_compose(objects, overlay):
    compose = COMPOSE["worker" if _image_flavour(overlay) == "gpu" else "worker-cpu"]
    worker = _container(objects, "Deployment", "worker")
    assert worker["image"] == compose["image"] == f"digit-service:{_image_flavour(overlay)}"
    env = _environment(objects, worker)
    command = [_expand(part, env) for part in worker["command"]]
    assert command == compose["command"]
    for flag in ("--concurrency", "--max-tasks-per-child", "--prefetch-multiplier"):
        assert command[command.index(flag) + 1] == "1"
    grace = re.fullmatch(r"(\d+)s", compose["stop_grace_period"])
    assert grace and _pod(objects, "Deployment", "worker")["terminationGracePeriodSeconds"] == int(
        grace[1]
    )
    limits, requests = worker["resources"]["limits"], worker["resources"]["requests"]
    if _image_flavour(overlay) == "gpu":
        assert limits["nvidia.com/gpu"] == "1"
    else:
        assert "nvidia.com/gpu" not in limits and "nvidia.com/gpu" not in requests
    assert limits["memory"] == _compose_memory("worker")  # compose's WORKER_MEMORY_LIMIT


def test_workers_read_the_queue_that_jobs_are_sent_to(objects, overlay, tmp_path):
    worker = _container(objects, "Deployment", "worker")
    command = worker["command"]
    # The queue is JOB_QUEUE, the setting the API sends jobs by, never a name typed in.
    assert command[command.index("--queues") + 1] == "$(JOB_QUEUE)"
    env = _environment(objects, worker)
    assert (
        env["JOB_QUEUE"]
        == _environment(objects, _container(objects, "Deployment", "api"))["JOB_QUEUE"]
    )
    # Every reference resolves (the kubelet leaves an unknown one as written).
    for part in command:
        assert "$(" not in _expand(part, env), part
    # Changed as the README says (an overlay's configMapGenerator, `behavior: merge`), the
    # workers follow.
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(KUSTOMIZE_DIR / "overlays" / overlay, tmp_path)],
                "configMapGenerator": [
                    {
                        "name": "digit-service-config",
                        "behavior": "merge",
                        "literals": ["JOB_QUEUE=training"],
                    }
                ],
            }
        )
    )
    changed = list(_render_dir(tmp_path))
    worker = _container(changed, "Deployment", "worker")
    command = [_expand(part, _environment(changed, worker)) for part in worker["command"]]
    assert command[command.index("--queues") + 1] == "training"
    api_env = _environment(changed, _container(changed, "Deployment", "api"))
    assert api_env["JOB_QUEUE"] == "training"


def test_worker_liveness_does_not_depend_on_redis(objects):
    """A Redis outage must not restart the workers (and kill their jobs): liveness checks only
    that the Celery parent (PID 1) is a live process; the healthcheck, which asks Redis, is
    readiness only."""
    compose = COMPOSE["worker"]
    worker = _container(objects, "Deployment", "worker")
    assert worker["command"][0] == "celery"  # PID 1 is the Celery parent, not a shell
    assert worker["readinessProbe"]["exec"]["command"] == compose["healthcheck"]["test"][1:]
    assert "startupProbe" not in worker  # nothing to wait for that liveness needs
    liveness = worker["livenessProbe"]["exec"]["command"]
    assert liveness[:2] == ["sh", "-c"]
    (script,) = liveness[2:]
    assert "/proc/1/stat" in script
    assert not re.search(r"python|healthcheck|redis", script, re.IGNORECASE)
    assert "env" not in worker["livenessProbe"]["exec"]


@pytest.mark.parametrize(
    ("stat", "alive"),
    [
        ("1 (celery) S 0 1 1 0 -1 4194560 20 0", True),
        ("1 (celery) R 0 1 1 0 -1 4194560 20 0", True),
        ("1 (celery) D 0 1 1 0 -1 4194560 20 0", True),
        ("1 (odd) Z name) S 0 1 1 0 -1 4194560 20 0", True),  # the name may hold ") Z"
        ("1 (celery) Z 0 1 1 0 -1 4194560 20 0", False),
        ("1 (celery) X 0 1 1 0 -1 4194560 20 0", False),
        ("1 (celery) T 0 1 1 0 -1 4194560 20 0", False),
    ],
)
def test_worker_liveness_fails_only_on_a_zombie_dead_or_stopped_parent(stat, alive, tmp_path):
    worker = _container(list(_render("gpu")), "Deployment", "worker")
    (script,) = worker["livenessProbe"]["exec"]["command"][2:]
    fake = tmp_path / "stat"
    fake.write_text(stat + "\n")
    probe = subprocess.run(["sh", "-c", script.replace("/proc/1/stat", str(fake))], timeout=10)
    assert (probe.returncode == 0) is alive
    # A live process: this test's own.
    own = subprocess.run(["sh", "-c", script.replace("/proc/1/", f"/proc/{os.getpid()}/")])
    assert own.returncode == 0
    # No such process: fails.
    fake.unlink()
    assert subprocess.run(["sh", "-c", script.replace("/proc/1/stat", str(fake))],
                          capture_output=True).returncode != 0  # fmt: skip


def test_redis_persists_to_its_own_volume_with_append_only(objects):
    statefulset = _one(objects, "StatefulSet", "redis")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    redis = _container(objects, "StatefulSet", "redis")
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in redis["volumeMounts"]
    assert redis["command"] == ["sh", "-c"]
    (script,) = redis["args"]
    assert "exec redis-server --appendonly yes --appendfsync everysec" in script
    assert '--requirepass "$REDIS_PASSWORD"' in script
    assert _environment(objects, redis)["REDIS_PASSWORD"] == ("secret", "REDIS_PASSWORD")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    # The StatefulSet's governing Service is headless, as Kubernetes requires of it.
    governing = _one(objects, "Service", statefulset["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"].items() <= labels.items()
    # The API and the workers reach Redis through a Service with a stable ClusterIP.
    for name in ("api", "worker"):
        env = _environment(objects, _container(objects, "Deployment", name))
        url = re.fullmatch(r"redis://:\$\(REDIS_PASSWORD\)@([\w-]+):(\d+)/0", env["REDIS_URL"])
        assert url, env["REDIS_URL"]
        service = _one(objects, "Service", url[1])
        assert service["spec"].get("clusterIP") != "None"
        assert [p["port"] for p in service["spec"]["ports"]] == [int(url[2])]
        assert service["spec"]["selector"].items() <= labels.items()


REDIS_PROBE = ["sh", "-c", "redis-cli ping | grep -q PONG"]


def test_redis_probes_pass_on_pong_only(objects, tmp_path):
    """`redis-cli ping` exits 0 on any reply, -LOADING (the append-only file still loading) and
    -NOAUTH included: each probe must see PONG."""
    redis = _container(objects, "StatefulSet", "redis")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert redis[kind]["exec"]["command"] == REDIS_PROBE, kind
    assert COMPOSE["redis"]["healthcheck"]["test"] == ["CMD", *REDIS_PROBE]  # the same check
    # The password comes from REDISCLI_AUTH, the same secret as Redis' own.
    env = _environment(objects, redis)
    assert env["REDISCLI_AUTH"] == env["REDIS_PASSWORD"] == ("secret", "REDIS_PASSWORD")
    stub = tmp_path / "redis-cli"
    for reply, passes in (
        ("PONG", True),
        ("LOADING Redis is loading the dataset in memory", False),
        ("NOAUTH Authentication required.", False),
        ("", False),
    ):
        stub.write_text(f"#!/bin/sh\necho '{reply}'\nexit 0\n")  # redis-cli exits 0 on all
        stub.chmod(0o755)
        env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
        probe = subprocess.run(REDIS_PROBE, env=env, capture_output=True, timeout=10)
        assert (probe.returncode == 0) is passes, reply


def test_redis_refuses_a_short_or_unsafe_password_and_starts_with_a_good_one(tmp_path):
    (script,) = _container(list(_render("gpu")), "StatefulSet", "redis")["args"]
    stub = tmp_path / "redis-server"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\n')
    stub.chmod(0o755)

    def start(password: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "REDIS_PASSWORD": password}
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)

    for refused in (PLACEHOLDER, "", "a" * 15, "a" * 31 + ":@/"):
        started = start(refused)
        assert started.returncode == 1 and "REDIS_PASSWORD" in started.stderr
        assert not (tmp_path / "args").exists()
    password = "0123456789abcdef" * 4
    assert start(password).returncode == 0
    assert (tmp_path / "args").read_text().split() == [
        "--appendonly", "yes", "--appendfsync", "everysec", "--requirepass", password]  # fmt: skip


def test_secrets_hold_placeholders_that_nothing_starts_with(objects, overlay):
    credentials = AWS_CREDENTIALS if _object_store(overlay) else ()
    expected = ("API_TOKEN", "REDIS_PASSWORD", *credentials)
    assert _secret_values(objects) == dict.fromkeys(expected, PLACEHOLDER)
    assert len(PLACEHOLDER) < MIN_TOKEN_LENGTH
    settings = Settings(_env_file=None, host="0.0.0.0", api_token=PLACEHOLDER)
    with pytest.raises(UnsafeExposure, match="at least 16"):
        check_exposure(settings)
    # Secret values come from the Secret only, never written into a workload.
    from_secret = {
        "API_TOKEN": ("secret", "API_TOKEN"),
        "REDIS_PASSWORD": ("secret", "REDIS_PASSWORD"),
        "REDISCLI_AUTH": ("secret", "REDIS_PASSWORD"),
        **{name: ("secret", name) for name in credentials},
    }
    for kind, name in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis")):
        for variable, value in _environment(objects, _container(objects, kind, name)).items():
            if variable in from_secret or isinstance(value, tuple):
                assert value == from_secret.get(variable), f"{name}: {variable}"
    assert "API_TOKEN" in _environment(objects, _container(objects, "Deployment", "api"))


def test_every_variable_set_is_a_setting_and_as_compose_sets_it(objects, overlay):
    fields = {name.upper() for name in Settings.model_fields}
    set_by_manifests = set()
    for kind, name in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis")):
        container = _container(objects, kind, name)
        names = [variable["name"] for variable in container.get("env", [])]
        if "REDIS_URL" in names:  # $(REDIS_PASSWORD) expands only when defined before
            assert names.index("REDIS_PASSWORD") < names.index("REDIS_URL")
        set_by_manifests |= set(_environment(objects, container))
    assert set_by_manifests - fields - set(NOT_SETTINGS) == set()
    for kind, name, service in (("Deployment", "api", "api"), ("Deployment", "worker", "worker")):
        env = _environment(objects, _container(objects, kind, name))
        compose = _compose_environment(service)
        own = OBJECT_STORE_VARIABLES if _object_store(overlay) else set()
        assert set(env) == set(compose) | {"REDIS_PASSWORD"} | own
        for variable, value in env.items():
            if variable in own or (variable == "ARTIFACTS_DIR" and own):
                continue  # the object store's, tested with the volumes
            if not isinstance(value, tuple):  # secrets are placeholders here, unset in compose
                assert value == compose[variable], variable
    redis_env = _environment(objects, _container(objects, "StatefulSet", "redis"))
    assert set(redis_env) == set(COMPOSE["redis"]["environment"]) | {"REDIS_PASSWORD"}


def test_without_a_renderer_the_tests_skip_and_fail_under_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _renderer()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _renderer()


def test_api_and_workers_share_the_artifacts_volume_or_the_object_store(objects, overlay):
    if not _object_store(overlay):
        claim = _one(objects, "PersistentVolumeClaim", "artifacts")
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in ("api", "worker"):
        pod = _pod(objects, "Deployment", name)
        (container,) = pod["containers"]
        env = _environment(objects, container)
        (mount,) = container["volumeMounts"]
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        if _object_store(overlay):
            # Settings read it as a store fsspec opens; each pod keeps its own local folder.
            settings = Settings(_env_file=None, artifacts_dir=env["ARTIFACTS_DIR"],
                                local_dir=env["LOCAL_DIR"])  # fmt: skip
            assert settings.artifacts_dir.startswith("s3://")
            assert str(settings.local_artifacts_dir) == mount["mountPath"]
            assert set(volume) == {"name", "emptyDir"}
            size_limit = re.fullmatch(r"(\d+)Gi", volume["emptyDir"]["sizeLimit"])
            assert size_limit and int(env["ARTIFACTS_CACHE_BYTES"]) < int(size_limit[1]) << 30
            assert {env[name] for name in AWS_CREDENTIALS} == {
                ("secret", name) for name in AWS_CREDENTIALS}  # fmt: skip
        else:
            assert env["ARTIFACTS_DIR"] == mount["mountPath"] == "/data"
            assert volume["persistentVolumeClaim"]["claimName"] == "artifacts"


def test_pods_run_unprivileged_as_the_images_user(objects):
    uid = int(re.search(r"useradd .*--uid (\d+) app", DOCKERFILE)[1])
    for kind, name in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis")):
        pod = _pod(objects, kind, name)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["enableServiceLinks"] is False  # no REDIS_PORT=tcp://... in the settings
        if name != "redis":
            assert pod["securityContext"]["runAsUser"] == uid
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
