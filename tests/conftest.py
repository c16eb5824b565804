"""Shared fixtures: a real API and a real Celery worker on a Redis DB reserved for tests."""

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import REPO_ROOT, ServiceStack

# Redis DB numbers used by the tests; each suite of tests that needs a clean slate has its own.
STORE_TEST_DB = 12
STACK_DB = 13
FAULTS_DB = 14
LAUNCHER_DB = 15


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


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """The API and one worker, started once for the session."""
    mnist = find_mnist()
    settings = {"MNIST_PATH": str(mnist)} if mnist else {}
    service = ServiceStack(STACK_DB, tmp_path_factory.mktemp("stack"), **settings).start()
    yield service
    service.stop()


@pytest.fixture
def client(stack: ServiceStack) -> httpx.Client:
    """An HTTP client for the running API."""
    return stack.client
