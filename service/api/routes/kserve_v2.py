"""KServe v2, the Open Inference Protocol, over REST: health, server and model metadata,
model readiness, and `infer` with JSON tensors.

A model name is an alias, a model id, or a kind (`cnn`, `mlp`, `calculator`: the newest model
of that kind), as on TF Serving's API; a model's one version is its id. Predictions go through
the same resolver, model cache, preparation and micro-batcher as every prediction endpoint.
Errors are `{"error": "..."}` (service/api/errors.py).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from service.api.deps import ModelCacheDep, ModelResolverDep, ServingDep
from service.api.errors import PROTOCOL_ERROR_RESPONSES
from service.api.examples import DIGIT_PNG_BASE64
from service.api.json_body import FastJSONRoute
from service.api.request_id import request_id_of
from service.api.routes.predict import loaded_model
from service.errors import NotFoundError, ServiceError, UnavailableError
from service.models.store import ALIAS_PATTERN, MODEL_ID_PATTERN, ModelRecord
from service.predict.instances import image_count
from service.predict.models import SUM_TASK, ModelCache, ModelResolver
from service.predict.protocols import predict_instances
from service.predict.reading import check_request_size
from service.predict.served import resolve_served
from service.predict.serving import Serving
from service.predict.tensors import (
    DATATYPES,
    Tensor,
    TensorSpec,
    check_outputs,
    chosen_input,
    output_tensors,
    signature_for,
    tensor_instances,
)

logger = logging.getLogger(__name__)

SERVER_NAME = "digit-service"
PLATFORM = "keras"


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: PROTOCOL_ERROR_RESPONSES[status] for status in statuses}


# Health is open, like /health; the rest is behind ReadAccess (service/main.py).
health_router = APIRouter(prefix="/v2", tags=["kserve-v2"], responses=_errors(400, 500))
# Protocol clients (tritonclient) send JSON without a Content-Type; no route here changes state.
# Tensors' data is read by the faster JSON parser (service/api/json_body.py).
router = APIRouter(
    prefix="/v2",
    tags=["kserve-v2"],
    responses=_errors(400, 401, 403, 500),
    strict_content_type=False,
    route_class=FastJSONRoute,
)

ModelName = Annotated[
    str,
    Path(
        pattern=f"^(?:{MODEL_ID_PATTERN.pattern}|{ALIAS_PATTERN.pattern})$",
        description="An alias, a model id, or a kind (cnn, mlp, calculator: its newest).",
        examples=["cnn"],
    ),
]
# Any version is read, so that one that is no model id (tritonclient's "1") is a 404 saying
# what versions are, as an unknown one is.
ModelVersion = Annotated[
    str,
    Path(
        max_length=128,
        description="The model's id (a model has one version: its id).",
    ),
]
Datatype = Literal[DATATYPES]  # type: ignore[valid-type]


class ModelNotReady(UnavailableError):
    code = "model_not_ready"


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions supported: none.")


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1: any size (the batch).")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="The model's id.")
    platform: str
    inputs: list[MetadataTensor] = Field(description="A request sends exactly one of them.")
    outputs: list[MetadataTensor]


class InferInput(BaseModel):
    name: str = Field(max_length=100, examples=["image"])
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=8, examples=[[1, 28, 28]])
    datatype: Datatype = Field(  # type: ignore[valid-type]
        description="Numbers (UINT8, FP32, ...): images 0..255, white ink on black. BYTES: "
        "base64 image files (PNG, JPEG, ...), prepared like uploads."
    )
    parameters: dict[str, Any] | None = Field(None, description="Ignored.")
    data: list[Any] = Field(description="Row-major, flat or nested as `shape`.")


class InferOutputRequest(BaseModel):
    name: str = Field(max_length=100, examples=["probabilities"])
    parameters: dict[str, Any] | None = Field(
        None, description="Ignored: outputs are JSON (binary_data is not supported)."
    )


class InferRequest(BaseModel):
    id: str | None = Field(None, max_length=256, description="Echoed in the response.")
    parameters: dict[str, Any] | None = Field(None, description="Ignored.")
    inputs: list[InferInput] = Field(min_length=1, max_length=8)
    outputs: list[InferOutputRequest] | None = Field(
        None, max_length=8, description="The outputs to return, by name; default: all."
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "1",
                    "inputs": [
                        {
                            "name": "image_bytes",
                            "shape": [1],
                            "datatype": "BYTES",
                            "data": [DIGIT_PNG_BASE64],
                        }
                    ],
                    "outputs": [{"name": "probabilities"}],
                }
            ]
        }
    }


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] = Field(description="Row-major, flat.")


class InferResponse(BaseModel):
    model_name: str
    model_version: str = Field(description="The id of the model that answered.")
    id: str | None = Field(None, description="The request's id, when it sent one.")
    outputs: list[InferOutput]


@health_router.get("/health/live", response_model=ServerLive)
async def server_live() -> ServerLive:
    """Whether the server is live (it answers)."""
    return ServerLive(live=True)


@health_router.get("/health/ready", response_model=ServerReady, responses=_errors(503))
async def server_ready(resolver: ModelResolverDep) -> ServerReady:
    """Whether the server can serve: Redis, which holds the models' registry, answers."""
    try:
        await resolver.redis.ping()
    except RedisError as error:
        raise UnavailableError(
            f"Not ready: Redis, which holds the model registry, does not answer ({error}). "
            "Check that Redis runs at REDIS_URL; GET /health says more."
        ) from None
    return ServerReady(ready=True)


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    """The server's name, version and protocol extensions."""
    return ServerMetadata(name=SERVER_NAME, version=request.app.version, extensions=[])


MODEL_ERRORS = _errors(404, 409, 422, 503)


@router.get("/models/{name}", response_model=ModelMetadata, responses=MODEL_ERRORS)
async def model_metadata(name: ModelName, resolver: ModelResolverDep) -> ModelMetadata:
    """The model's version, inputs and outputs."""
    return _metadata(name, await resolve_served(resolver, name))


@router.get(
    "/models/{name}/versions/{version}", response_model=ModelMetadata, responses=MODEL_ERRORS
)
async def model_version_metadata(
    name: ModelName, version: ModelVersion, resolver: ModelResolverDep
) -> ModelMetadata:
    """The model's inputs and outputs, when `version` is its id."""
    return _metadata(name, await _resolve(resolver, name, version))


@router.get("/models/{name}/ready", response_model=ModelReady, responses=MODEL_ERRORS)
async def model_ready(
    request: Request, name: ModelName, resolver: ModelResolverDep, cache: ModelCacheDep
) -> ModelReady:
    """Ready when the name resolves to a stored model that loads (loading it now if needed);
    409 while none of a kind is trained, 503 when the model's file does not load."""
    return await _ready(request, resolver, cache, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready", response_model=ModelReady, responses=MODEL_ERRORS
)
async def model_version_ready(
    request: Request,
    name: ModelName,
    version: ModelVersion,
    resolver: ModelResolverDep,
    cache: ModelCacheDep,
) -> ModelReady:
    """Ready when `version` is the model's id and the model loads."""
    return await _ready(request, resolver, cache, name, version)


INFER_ERRORS = _errors(404, 409, 413, 415, 422, 503)
INFER_OPTIONS: dict[str, Any] = {
    "response_model": InferResponse,
    "response_model_exclude_none": True,
    "responses": INFER_ERRORS,
}


@router.post("/models/{name}/infer", **INFER_OPTIONS)
async def infer(
    request: Request,
    name: ModelName,
    body: Annotated[InferRequest, Body()],
    serving: ServingDep,
) -> Any:
    """Run the model on one input tensor; the response holds its outputs as tensors."""
    return await _infer(request, name, None, body, serving)


@router.post("/models/{name}/versions/{version}/infer", **INFER_OPTIONS)
async def infer_version(
    request: Request,
    name: ModelName,
    version: ModelVersion,
    body: Annotated[InferRequest, Body()],
    serving: ServingDep,
) -> Any:
    """`infer`, when `version` is the model's id."""
    return await _infer(request, name, version, body, serving)


async def _infer(
    request: Request,
    name: str,
    version: str | None,
    body: InferRequest,
    serving: Serving,
) -> InferResponse:
    record = await _resolve(serving.resolver, name, version)
    request.state.model_id = record.id
    signature = signature_for(record.kind)
    requested = [output.name for output in body.outputs] if body.outputs else None
    check_outputs(requested or [], signature, name)
    tensor = chosen_input(
        [Tensor(t.name, t.datatype, tuple(t.shape), t.data) for t in body.inputs], signature, name
    )
    sequence = record.kind in SUM_TASK.kinds
    # Before its data is read: a calculator's row is SEQUENCE_LENGTH images.
    check_request_size([], image_count(tensor.shape[0], sequence), serving.settings)
    loaded = await loaded_model(serving.cache, record)
    outputs = await predict_instances(loaded, lambda: tensor_instances(tensor), sequence, serving)
    return InferResponse(
        model_name=name,
        model_version=record.id,
        id=body.id,
        outputs=[InferOutput(**t) for t in output_tensors(outputs, signature, requested, name)],
    )


async def _resolve(resolver: ModelResolver, name: str, version: str | None) -> ModelRecord:
    record = await resolve_served(resolver, name)
    if version is not None and version != record.id:
        raise NotFoundError(
            f"Model {name!r} has one version, {record.id}: a model's versions are model ids, "
            f"and there is no version {version!r}. Leave the version out (tritonclient: "
            f'model_version="") or give the model\'s id; name another model by its id: '
            "/v2/models/<id>."
        )
    return record


async def _ready(
    request: Request, resolver: ModelResolver, cache: ModelCache, name: str, version: str | None
) -> ModelReady:
    # None of a kind trained yet stays a 409, naming the job training one, as everywhere.
    record = await _resolve(resolver, name, version)
    try:
        await loaded_model(cache, record)
    except ServiceError:
        raise
    except Exception:  # a file that does not load: not ready; why (server paths) is logged only
        request_id = request_id_of(request)
        logger.exception("Request %s: model %s could not be loaded.", request_id, record.id)
        raise ModelNotReady(
            f"Model {name!r} ({record.id}) is stored but could not be loaded; see the server's "
            f"log, request id {request_id}. Train or choose another model."
        ) from None
    return ModelReady(name=name, ready=True)


def _metadata(name: str, record: ModelRecord) -> ModelMetadata:
    signature = signature_for(record.kind)
    return ModelMetadata(
        name=name,
        versions=[record.id],
        platform=PLATFORM,
        inputs=[_tensor_metadata(spec) for spec in signature.inputs],
        outputs=[_tensor_metadata(spec) for spec in signature.outputs],
    )


def _tensor_metadata(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
