"""Settings come from environment variables, with documented defaults."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings


def test_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("REDIS_URL", "HOST", "PORT", "MNIST_PATH", "ARTIFACTS_DIR", "JOB_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.mnist_path is None
    assert settings.job_queue == "gpu"


def test_environment_variables_override(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/3")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("MNIST_PATH", "/data/mnist.npz")
    monkeypatch.setenv("ARTIFACTS_DIR", "/srv/artifacts")
    monkeypatch.setenv("HEARTBEAT_SECONDS", "2")
    settings = Settings()
    assert settings.redis_url == "redis://example:6380/3"
    assert settings.port == 9000
    assert settings.mnist_path == Path("/data/mnist.npz")
    assert settings.local_artifacts_dir == Path("/srv/artifacts")
    assert settings.heartbeat_ttl_seconds == 6


def test_an_object_store_url_keeps_this_machines_files_in_a_local_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("LOCAL_DIR", raising=False)
    monkeypatch.setenv("ARTIFACTS_DIR", "s3://bucket/prefix")
    settings = Settings()
    assert settings.artifacts_dir == "s3://bucket/prefix"
    assert settings.local_artifacts_dir == Path("artifacts")
    monkeypatch.setenv("LOCAL_DIR", "/var/cache/digits")
    assert Settings().local_artifacts_dir == Path("/var/cache/digits")
    monkeypatch.setenv("ARTIFACTS_DIR", "file:///srv/artifacts")
    assert Settings().local_artifacts_dir == Path("/var/cache/digits")
    assert Settings().artifacts_dir == "/srv/artifacts"


def test_an_object_store_fsspec_cannot_open_is_refused_saying_what_to_install(monkeypatch):
    monkeypatch.setenv("ARTIFACTS_DIR", "nosuchstore://bucket/prefix")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "ARTIFACTS_DIR=nosuchstore://bucket/prefix" in str(refused.value)
    assert "pip install 'digit-service[s3]'" in str(refused.value)
