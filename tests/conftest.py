"""Shared fixtures: a real API and a real Celery worker on a Redis DB reserved for tests."""

from collections.abc import Iterator

import httpx
import pytest

from tests.stack import ServiceStack

# Redis DB numbers used by the tests; each suite of tests that needs a clean slate has its own.
STORE_TEST_DB = 12
STACK_DB = 13
FAULTS_DB = 14
LAUNCHER_DB = 15


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """The API and one worker, started once for the session."""
    service = ServiceStack(STACK_DB, tmp_path_factory.mktemp("stack")).start()
    yield service
    service.stop()


@pytest.fixture
def client(stack: ServiceStack) -> httpx.Client:
    """An HTTP client for the running API."""
    return stack.client
