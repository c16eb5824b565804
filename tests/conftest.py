"""Shared fixtures: a real API and a real Celery worker on a Redis DB reserved for tests."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from redis import Redis

from service.redis_server import ServerNotFound, is_local, redis_answers
from tests.stack import REDIS_BASE_URL, REPO_ROOT, OwnRedis, ServiceStack, redis_url

# Redis DB numbers used by the tests; each suite of tests that needs a clean slate has its own.
OBJECT_STORE_DB = 9
SECURITY_DB = 10
STORE_TEST_DB = 12
STACK_DB = 13
FAULTS_DB = 14
LAUNCHER_DB = 15


@pytest.fixture(scope="session", autouse=True)
def suite_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis at TEST_REDIS_URL; where none answers there, one started on its port for the
    session (as `make run` does), its data in a temporary folder."""
    if redis_answers(REDIS_BASE_URL):
        yield REDIS_BASE_URL
        return
    parts = urlsplit(REDIS_BASE_URL)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not is_local(host):
        pytest.exit(f"No Redis answers at TEST_REDIS_URL={REDIS_BASE_URL}: start it.", 1)
    try:
        server = OwnRedis(tmp_path_factory.mktemp("redis"), port, host).start()
    except (ServerNotFound, RuntimeError) as error:
        pytest.exit(f"No Redis answers at {REDIS_BASE_URL}, and none could start: {error}", 1)
    yield server.url
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def prepared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's jobs share a cache of prepared training images of their own (the user's
    ~/.keras is left alone)."""
    previous = os.environ.get("PREPARED_CACHE_DIR")
    folder = tmp_path_factory.mktemp("prepared")
    os.environ["PREPARED_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("PREPARED_CACHE_DIR", None)
    else:
        os.environ["PREPARED_CACHE_DIR"] = previous


@pytest.fixture
def store_redis() -> Iterator[Redis]:
    """A client of the Redis DB kept for tests of the stores without an API (STORE_TEST_DB),
    empty before and after the test."""
    client = Redis.from_url(redis_url(STORE_TEST_DB), decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def find_mnist() -> Path | None:
    """MNIST_PATH if set, else the shared copy beside the checkout, else None."""
    configured = os.environ.get("MNIST_PATH")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared/data/mnist.npz"
    return candidate.resolve() if candidate.is_file() else None


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """A local Keras-format mnist.npz; the tests cannot download one."""
    path = find_mnist()
    if path is None:
        pytest.skip("No local MNIST: set MNIST_PATH to a Keras-format mnist.npz.")
    return path


SVHN_SAMPLE = REPO_ROOT.parent / "shared/data/svhn_small.mat"
# Lower than the defaults, so that uploads over the limits are cheap to make in tests.
UPLOAD_LIMIT_BYTES = 3_000_000
UPLOAD_LIMIT_PIXELS = 30_000_000
REQUEST_LIMIT_BYTES = 12_000_000
JSON_LIMIT_BYTES = 4_000_000


@pytest.fixture(scope="session")
def svhn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like SVHN's downloads, both splits holding the 50 real sample crops."""
    if not SVHN_SAMPLE.is_file():
        pytest.skip(f"No SVHN sample at {SVHN_SAMPLE}.")
    folder = tmp_path_factory.mktemp("svhn")
    for name in ("train_32x32.mat", "test_32x32.mat"):
        shutil.copy(SVHN_SAMPLE, folder / name)
    return folder


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, svhn_dir: Path) -> Iterator[ServiceStack]:
    """The API and one worker, started once for the session."""
    mnist = find_mnist()
    settings = {
        "SVHN_DIR": str(svhn_dir),
        "MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT_BYTES),
        "MAX_IMAGE_PIXELS": str(UPLOAD_LIMIT_PIXELS),
        "MAX_REQUEST_BYTES": str(REQUEST_LIMIT_BYTES),
        "MAX_JSON_BYTES": str(JSON_LIMIT_BYTES),
    }
    if mnist:
        settings["MNIST_PATH"] = str(mnist)
    service = ServiceStack(STACK_DB, tmp_path_factory.mktemp("stack"), **settings).start()
    yield service
    service.stop()


@pytest.fixture
def client(stack: ServiceStack) -> httpx.Client:
    """An HTTP client for the running API."""
    return stack.client


@pytest.fixture(scope="session")
def digit_model(stack: ServiceStack, mnist_path: Path) -> dict:
    """A small CNN trained once for the session; its model record."""
    job = stack.submit(
        "cnn", conv_filters=[16, 32], dense_units=64, epochs=2, train_limit=12000,
        test_limit=2000, seed=0,
    )  # fmt: skip
    finished = stack.wait_until_finished(job["id"], timeout=300)
    assert finished["status"] == "succeeded", finished["error"]
    return stack.client.get(f"/models/{finished['result']['model_id']}").json()


@pytest.fixture(scope="session")
def calculator_model(stack: ServiceStack, mnist_path: Path, digit_model: dict) -> dict:
    """A calculator reading digits with the session's digit model; its model record."""
    job = stack.submit("calculator", digit_model=digit_model["id"], test_limit=2000, seed=0)
    finished = stack.wait_until_finished(job["id"], timeout=300)
    assert finished["status"] == "succeeded", finished["error"]
    return stack.client.get(f"/models/{finished['result']['model_id']}").json()


# A small MLP trained once for the session (tests/test_training_api.py reads its history and
# model, tests/test_plots.py draws it).
QUICK_MLP = {
    "hidden_units": [24, 12],
    "activation": "lecun",
    "optimizer": "adam",
    "learning_rate": 0.003,
    "epochs": 2,
    "batch_size": 64,
    "train_limit": 640,
    "test_limit": 300,
    "seed": 3,
}


@pytest.fixture(scope="session")
def finished_mlp(stack: ServiceStack, mnist_path: Path) -> dict:
    """The QUICK_MLP job, finished; its record."""
    job = stack.submit("mlp", **QUICK_MLP)
    finished = stack.wait_until_finished(job["id"], timeout=120)
    assert finished["status"] == "succeeded", finished["error"]
    return finished


@pytest.fixture(scope="session")
def replicated_sweep(stack: ServiceStack, mnist_path: Path) -> dict:
    """A finished sweep of small MLPs: depth 1 and 3, two replicates each (plots and sweep
    summaries read it); the sweep as POST /sweeps answered it."""
    body = {
        "base": {"kind": "mlp", "params": {"width": 16, "epochs": 2, "train_limit": 1000,
                                           "test_limit": 200}},
        "grid": {"depth": [1, 3]},
        "replicates": 2,
    }  # fmt: skip
    created = stack.client.post("/sweeps", json=body)
    assert created.status_code == 202, created.text
    for job in created.json()["jobs"]:
        assert stack.wait_until_finished(job["job_id"], timeout=180)["status"] == "succeeded"
    return created.json()


@pytest.fixture(scope="session")
def test_digits(mnist_path: Path) -> tuple:
    """MNIST test images 3000..3099 (none used to train the session's models) and labels."""
    with np.load(mnist_path) as data:
        return data["x_test"][3000:3100], data["y_test"][3000:3100]
