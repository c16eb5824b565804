"""Dependencies for route handlers, as `Annotated` aliases so signatures read like plain types.

They are `async def` although they only read attributes: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request (measured: it halved the
prediction endpoints' throughput)."""

import hmac
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Query, Request
from redis import Redis

from service.artifacts import ArtifactStore
from service.errors import ForbiddenError, UnauthorizedError
from service.jobs.idempotency import MAX_KEY_LENGTH
from service.jobs.kinds import JOB_KINDS
from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.predict.models import ModelCache, ModelResolver
from service.predict.serving import Serving
from service.settings import Settings, get_settings
from service.sweeps.store import SweepStore


async def settings() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(settings)]


async def get_redis(request: Request) -> Redis:
    return request.app.state.redis


async def get_job_store(request: Request) -> JobStore:
    return request.app.state.job_store


async def get_model_store(request: Request) -> ModelStore:
    return request.app.state.model_store


async def get_artifacts(request: Request) -> ArtifactStore:
    return request.app.state.model_store.artifacts


async def get_model_cache(request: Request) -> ModelCache:
    return request.app.state.model_cache


async def get_model_resolver(request: Request) -> ModelResolver:
    return request.app.state.model_resolver


async def get_sweep_store(request: Request) -> SweepStore:
    return request.app.state.sweep_store


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


async def get_serving(request: Request) -> Serving:
    return request.app.state.serving


RedisDep = Annotated[Redis, Depends(get_redis)]
JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
ModelStoreDep = Annotated[ModelStore, Depends(get_model_store)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
ModelCacheDep = Annotated[ModelCache, Depends(get_model_cache)]
ModelResolverDep = Annotated[ModelResolver, Depends(get_model_resolver)]
SweepStoreDep = Annotated[SweepStore, Depends(get_sweep_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ServingDep = Annotated[Serving, Depends(get_serving)]


def check_token(request: Request, what: str) -> None:
    """`UnauthorizedError` without a bearer token, `ForbiddenError` with a wrong one."""
    token = get_settings().api_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise UnauthorizedError(
            f"{what} needs a token: send the header `Authorization: Bearer <token>` with the "
            f"API_TOKEN the service was started with."
        )
    # Constant time: how much of a guess matches must not show in how long the answer takes.
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ForbiddenError(f"The bearer token is not the one {what.lower()} needs.")


async def require_write_token(request: Request) -> None:
    """With API_TOKEN set: starting, cancelling or deleting work, or changing models."""
    check_token(request, "Changing jobs, sweeps, models or aliases")


async def require_read_token(request: Request) -> None:
    """With API_TOKEN and PROTECT_READS set: reads and predictions too."""
    if get_settings().protect_reads:
        check_token(request, "Reading from this service")


# Paging: an offset past any Redis index still answers an empty page; a larger one would
# overflow Redis' 64-bit ranges (a 500 found by schemathesis).
MAX_OFFSET = 10**9
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
# The kinds as the document's enum; the value is checked by `get_kind` (its error lists them).
KindFilter = Annotated[
    str | None,
    Query(description="Only those of this job kind.", json_schema_extra={"enum": list(JOB_KINDS)}),
]

WriteAccess = Depends(require_write_token)
ReadAccess = Depends(require_read_token)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description=(
            "Any string unique to this request (a UUID): repeating the request with the same "
            "key within 24 hours returns what the first one created, and creates nothing."
        ),
    ),
]
