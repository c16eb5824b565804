"""Settings come from environment variables, with documented defaults."""

from pathlib import Path

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
    assert settings.artifacts_dir == Path("/srv/artifacts")
    assert settings.heartbeat_ttl_seconds == 6
