"""API_TOKEN: who may start, cancel or delete work and change models; PROTECT_READS."""

from __future__ import annotations

import re
import socket

import pytest

from service.api.access import Access, required_access
from service.api.deps import require_write_token
from service.api.routes import (
    health,
    jobs,
    kserve_v2,
    metrics,
    models,
    plots,
    predict,
    presets,
    sweeps,
    tf_serving,
    web,
)
from service.main import app
from tests.conftest import FAULTS_DB
from tests.stack import ServiceStack

TOKEN = "s3cret-token-for-tests"
# Every router the API includes, and whether it is included openly (service/main.py) or
# behind ReadAccess; `test_every_documented_route_is_checked` keeps the list whole.
OPEN_ROUTERS = [health.router, web.router, kserve_v2.health_router]
READ_ROUTERS = [
    module.router
    for module in (jobs, models, sweeps, presets, predict, tf_serving, kserve_v2, plots, metrics)
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    stack = ServiceStack(FAULTS_DB, tmp_path_factory.mktemp("auth"), API_TOKEN=TOKEN)
    stack.start(worker=False)
    yield stack
    stack.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


WRITES = [
    ("post", "/jobs", {"json": {"kind": "backprop", "params": {}}}),
    ("post", "/sweeps", {"json": {"base": {"kind": "backprop"}, "grid": {"x": [1, 2]}}}),
    ("post", "/presets/cnn/submit", {}),
    ("post", f"/jobs/{'0' * 32}/cancel", {}),
    ("post", f"/sweeps/{'0' * 32}/cancel", {}),
    ("put", f"/models/{'0' * 32}/aliases/production", {}),
    ("delete", "/models/aliases/production", {}),
]


@pytest.mark.parametrize(("method", "path", "options"), WRITES)
def test_changes_need_the_token(guarded, method, path, options):
    missing = getattr(guarded.client, method)(path, **options)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in missing.json()["detail"]
    wrong = getattr(guarded.client, method)(path, headers=bearer("not-it"), **options)
    assert wrong.status_code == 403, wrong.text
    right = getattr(guarded.client, method)(path, headers=bearer(TOKEN), **options)
    assert right.status_code not in (401, 403), right.text


def test_a_job_submitted_with_the_token_is_stored_and_readable_without(guarded):
    job = guarded.client.post("/jobs", json={"kind": "backprop"}, headers=bearer(TOKEN))
    assert job.status_code == 202
    assert guarded.client.get(f"/jobs/{job.json()['id']}").status_code == 200
    assert guarded.client.get("/jobs").status_code == 200
    assert guarded.client.get("/models").status_code == 200
    # Predictions stay open: this one fails only for want of a model.
    prediction = guarded.client.post("/predict/digit", files=[("file", ("a.png", b"x"))])
    assert prediction.status_code == 409


def test_with_protect_reads_everything_but_health_needs_the_token(tmp_path):
    stack = ServiceStack(FAULTS_DB, tmp_path, API_TOKEN=TOKEN, PROTECT_READS="true")
    stack.start(worker=False)
    try:
        reads = ("/jobs", "/models", "/presets", "/metrics", "/v1/models/cnn", "/v2/models/cnn")
        for path in reads:
            assert stack.client.get(path).status_code == 401, path
            assert stack.client.get(path, headers=bearer(TOKEN)).status_code in (200, 409), path
        assert stack.client.post("/predict/digit", files=[("file", ("a", b"x"))]).status_code == 401
        for path in ("/health", "/v2/health/live", "/v2/health/ready"):
            assert stack.client.get(path).status_code == 200, path
    finally:
        stack.stop()


def test_the_cli_sends_the_token(guarded):
    import subprocess
    import sys

    from tests.stack import REPO_ROOT

    def submit(*token: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", "--url", guarded.base_url, *token,
             "submit", "backprop"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert submit().stderr.startswith("error: 401")
    accepted = submit("--token", TOKEN)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.startswith("job ")


def test_the_token_is_checked_before_any_body_is_read(guarded):
    """A client without the token gets its 401 while the body it announced is still unsent."""
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as connection:
        connection.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n"
        )
        answer = ""
        while "}" not in answer:  # the headers, then the JSON body
            answer += connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401"), answer
    assert '"code":"unauthorized"' in answer


@pytest.mark.parametrize(
    "router", OPEN_ROUTERS + READ_ROUTERS, ids=lambda router: router.routes[0].path
)
def test_the_early_check_agrees_with_what_every_route_declares(router):
    """The middleware decides from the path alone; each route declares its access itself
    (`WriteAccess`; the API includes health and the page openly, the rest behind ReadAccess).
    Every route of every router must get from the one what the other declares."""
    for route in router.routes:
        calls, pending = set(), [route.dependant]
        while pending:
            dependant = pending.pop()
            calls.add(dependant.call)
            pending.extend(dependant.dependencies)
        if require_write_token in calls:
            declared = Access.WRITE
        else:
            declared = Access.OPEN if router in OPEN_ROUTERS else Access.READ
        path = re.sub(r"\{[^}]+\}", "0" * 32, route.path)
        for method in route.methods:
            assert required_access(method, path) is declared, (method, route.path)


def test_every_documented_route_is_checked():
    checked = {route.path for router in OPEN_ROUTERS + READ_ROUTERS for route in router.routes}
    assert set(app.openapi()["paths"]) <= checked
