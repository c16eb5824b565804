"""The service's configuration: one pydantic-settings class, read once from the environment."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.artifacts import ArtifactStore, check_location, is_url


def _text(value: Any) -> Any:
    """A folder given as a `Path` (tests, scripts) or a file:// URL, read as the text
    ARTIFACTS_DIR holds."""
    if isinstance(value, str) and value.startswith("file://"):
        return value.removeprefix("file://") or "/"
    return str(value) if isinstance(value, Path) else value


ArtifactsLocation = Annotated[str, BeforeValidator(_text), AfterValidator(check_location)]


class Settings(BaseSettings):
    """Every knob the API, the worker and `make run` read. Each field is an environment variable."""

    # An empty variable means unset (docker compose passes `${MNIST_PATH:-}` as "").
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis holding the job records and serving as Celery's broker.",
    )
    host: str = Field("127.0.0.1", description="Interface the API listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    mnist_path: Path | None = Field(
        None,
        description="A Keras-format mnist.npz used instead of Keras' download when set.",
    )
    svhn_dir: Path | None = Field(
        None, description="Folder with SVHN's train_32x32.mat / test_32x32.mat."
    )
    artifacts_dir: ArtifactsLocation = Field(
        "artifacts",
        description=(
            "Where stored models and TensorBoard logs live: a local folder that every machine "
            "mounts, or an object-store URL such as s3://bucket/prefix (the s3 extra; "
            "credentials from the usual AWS variables or ARTIFACTS_STORAGE_OPTIONS)."
        ),
    )
    local_dir: Path | None = Field(
        None,
        description=(
            "This machine's own files: models trained or downloaded here, the prepared-image "
            "cache, metrics, make run's Redis data. Default: ARTIFACTS_DIR when it is a "
            "folder, else ./artifacts."
        ),
    )
    artifacts_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'fsspec options for an object-store ARTIFACTS_DIR, as JSON (e.g. {"endpoint_url": '
            '"http://minio:9000"} for S3-compatible servers, or take AWS_ENDPOINT_URL).'
        ),
    )
    artifacts_cache_bytes: int = Field(
        4_000_000_000,
        gt=0,
        description=(
            "With an object-store ARTIFACTS_DIR: disk for the models downloaded on this "
            "machine; the least recently used beyond it are removed (and downloaded again "
            "when needed)."
        ),
    )
    job_queue: str = Field("gpu", description="Celery queue that training jobs go to.")
    heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "How often a running job and each worker report that they are alive. A job whose "
            "heartbeat is missing for 3 intervals is marked failed."
        ),
    )
    api_token: SecretStr | None = Field(
        None,
        description=(
            "When set, starting, cancelling or deleting work and changing models or aliases "
            "need `Authorization: Bearer <token>`."
        ),
    )
    protect_reads: bool = Field(
        False,
        description="With API_TOKEN, reads and predictions need the token too (not /health).",
    )
    allow_open_api: bool = Field(
        False,
        description=(
            "Let the API listen on a non-loopback address (HOST) without API_TOKEN, open to "
            "anyone who reaches it. Without this, such a start is refused."
        ),
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description=(
            'Host headers the API answers, as JSON (e.g. ["digits.example.com"]; "*.x.com" '
            "matches subdomains); empty: any. Guards against DNS rebinding."
        ),
    )
    log_level: str = Field("INFO", description="Log level of the API and the worker.")
    max_request_bytes: int = Field(
        64_000_000,
        gt=0,
        description="Largest request body, all files of an upload together, in bytes.",
    )
    max_json_bytes: int = Field(
        8_000_000,
        gt=0,
        description=(
            "Largest JSON request body, in bytes (JSON is parsed whole before a route runs; "
            "large images go as multipart uploads)."
        ),
    )
    max_upload_bytes: int = Field(
        20_000_000, gt=0, description="Largest image file a prediction accepts, in bytes."
    )
    max_image_pixels: int = Field(
        64_000_000, gt=0, description="Most pixels an uploaded image may have (width x height)."
    )
    max_images_per_request: int = Field(
        64,
        ge=10,
        le=1024,
        description="Most images (files or TF Serving instances) one request may carry.",
    )
    max_request_pixels: int = Field(
        100_000_000,
        gt=0,
        description=(
            "Most pixels all images of one request may have together, counted as decoded "
            "(JPEGs over 2000 pixels are decoded at 1/2, 1/4 or 1/8 scale)."
        ),
    )
    prepare_slots: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Large uploads (photos) prepared at once per API process; more answer 503 with "
            "Retry-After."
        ),
    )
    plot_slots: int = Field(
        2,
        ge=1,
        le=64,
        description="Plots rendered at once per API process; more answer 503 with Retry-After.",
    )
    model_cache_bytes: int = Field(
        1_000_000_000,
        ge=0,
        description=(
            "Memory for loaded models per API process (their weights); the least recently used "
            "model beyond it is unloaded. The default models and aliased models stay loaded."
        ),
    )
    job_time_limit_seconds: float = Field(
        24 * 3600,
        ge=10,
        description="A job still running after this long is stopped and marked failed.",
    )
    redis_outage_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "How long a running job keeps its progress, history and outcome for a Redis that "
            "does not answer (a restart, say) before giving up on it."
        ),
    )
    reconcile_seconds: float = Field(
        10.0,
        gt=0,
        description=(
            "How often the API's reconciler looks for queued jobs whose message was lost, "
            "running jobs whose worker is gone, and default models to train again."
        ),
    )
    queued_grace_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "How long a queued job may go without a message in the queue (or with one held by "
            "a worker that never starts it) before the reconciler sends it again."
        ),
    )
    max_resends: int = Field(
        3, ge=0, description="Messages sent again for one queued job before it is failed."
    )
    held_idle_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "How long a live worker may hold job messages while running no job (its pool "
            "stuck before starting them) before the reconciler treats them as lost and sends "
            "them again; a job waiting behind one the worker runs is never affected."
        ),
    )
    job_stall_seconds: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'Per job kind, as JSON (e.g. {"cnn": 600}): a running job whose training reports '
            "no progress for this long is failed as stalled and its process killed. Unset "
            "kinds keep their default (service/jobs/kinds.py)."
        ),
    )
    cancel_grace_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "How long a running job has to stop after it is cancelled before its worker kills "
            "its process and marks it cancelled."
        ),
    )
    bootstrap_attempts: int = Field(
        3,
        ge=1,
        description=(
            "Jobs queued for a default model that has none before bootstrap stops retrying "
            "(each failed one is submitted again by the reconciler)."
        ),
    )
    api_workers: int = Field(
        2,
        ge=1,
        le=64,
        description=(
            "API processes. Each holds its own copy of the models; more processes serve more "
            "predictions per second, up to about one per CPU core."
        ),
    )
    access_log: bool = Field(
        False,
        description=(
            "Log one line per request (uvicorn's access log). Off by default, as in gunicorn: "
            "GET /metrics counts every request by endpoint, model and status."
        ),
    )
    predict_max_batch: int = Field(
        64, ge=1, le=1024, description="Most images one model call takes (micro-batching)."
    )
    predict_max_wait_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description=(
            "How long a forming batch waits for requests that are still decoding their images. "
            "A request that finds the model idle and no one else arriving never waits."
        ),
    )
    serve_quantized: bool = Field(
        False,
        description=(
            "Run the digit models (cnn, mlp) on the CPU with 8-bit weights: model calls 3.4x "
            "cheaper for 64 images, answers close to the model's but not equal (for the "
            "default cnn, 3 of MNIST's 10,000 test digits change; bench/quantization.py). "
            "Off: every answer is the stored model's own."
        ),
    )
    bootstrap_models: bool = Field(
        True,
        description=(
            "On start, when no digit (cnn) or calculator model is stored and none is being "
            "trained, queue a job that trains one with the preset's settings."
        ),
    )
    bootstrap_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            'JSON merged into the bootstrap jobs\' params, e.g. {"epochs": 1} for quick demo '
            "models."
        ),
    )
    preload_models: bool = Field(
        True, description="On start, load the newest digit and calculator models into memory."
    )

    @property
    def local_artifacts_dir(self) -> Path:
        """This machine's folder: the artifacts themselves, or its part beside an object store."""
        if self.local_dir is not None:
            return self.local_dir
        return Path("artifacts") if is_url(self.artifacts_dir) else Path(self.artifacts_dir)

    @property
    def heartbeat_ttl_seconds(self) -> float:
        """How long a heartbeat stays valid: three missed beats mean the process is gone."""
        return 3 * self.heartbeat_seconds


def artifact_store(settings: Settings) -> ArtifactStore:
    """The artifact store the settings name (`ValueError` for a URL fsspec cannot open)."""
    return ArtifactStore(
        settings.artifacts_dir,
        settings.local_artifacts_dir,
        cache_bytes=settings.artifacts_cache_bytes,
        options=settings.artifacts_storage_options,
    )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
