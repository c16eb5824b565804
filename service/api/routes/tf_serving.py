"""TF Serving's REST API for clients written against it: model status and `:predict`.

A model name is an alias, a model id, or a kind (`cnn`, `mlp`, `calculator`: the newest model
of that kind). The model's version is its id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from pydantic import BaseModel, Field

from service.api.deps import ModelResolverDep, ServingDep
from service.api.errors import ERROR_RESPONSES
from service.api.examples import DIGIT_PNG_BASE64
from service.api.json_body import FastJSONRoute
from service.api.routes.predict import ModelInfo, loaded_model
from service.predict.instances import decode_images, output_rows
from service.predict.models import SUM_TASK
from service.predict.protocols import predict_instances
from service.predict.served import resolve_served

# Bodies of up to MAX_INSTANCES arrays: read by the faster JSON parser (service/api/json_body.py).
router = APIRouter(
    prefix="/v1/models",
    tags=["tf-serving"],
    responses=ERROR_RESPONSES,
    route_class=FastJSONRoute,
)

MAX_INSTANCES = 1024
ModelName = Annotated[
    str, Path(description="An alias, a model id, or a kind (cnn, mlp, calculator: its newest).")
]


class VersionStatus(BaseModel):
    version: str
    state: str = "AVAILABLE"
    status: dict[str, str] = {"error_code": "OK", "error_message": ""}


class ModelStatus(BaseModel):
    model_version_status: list[VersionStatus]


class PredictRequest(BaseModel):
    instances: list[Any] = Field(
        min_length=1,
        max_length=MAX_INSTANCES,
        description='Digit models: 28x28 arrays (0..255, white on black) or {"b64": image}. '
        'Calculators: 10x28x28 arrays or lists of 10 {"b64": image}.',
    )
    signature_name: str | None = Field(None, description="Ignored: each model has one.")

    model_config = {"json_schema_extra": {"examples": [{"instances": [{"b64": DIGIT_PNG_BASE64}]}]}}


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(
        description="Per instance: digit models, 10 probabilities; calculators, the model's "
        "outputs: `digits` (10x10 probabilities), `cumulative` and `sum` (expected running "
        "sums and total) and `sum_distribution` (the probability of each total 0..90); "
        "calculators stored before those outputs existed give `sum` and `cumulative`."
    )
    model: ModelInfo = Field(description="The model that answered (beyond TF Serving's format).")


@router.get("/{name}", response_model=ModelStatus)
async def model_status(name: ModelName, resolver: ModelResolverDep) -> ModelStatus:
    """The model's status, in TF Serving's format."""
    record = await resolve_served(resolver, name)
    return ModelStatus(model_version_status=[VersionStatus(version=record.id)])


@router.post("/{name}:predict", response_model=PredictResponse)
async def predict(
    request: Request,
    name: ModelName,
    body: Annotated[PredictRequest, Body()],
    serving: ServingDep,
) -> PredictResponse:
    """Predict for a batch of instances, in TF Serving's row format."""
    record = await resolve_served(serving.resolver, name)
    request.state.model_id = record.id
    loaded = await loaded_model(serving.cache, record)
    sequence = record.kind in SUM_TASK.kinds
    outputs = await predict_instances(
        loaded, lambda: decode_images(body.instances), sequence, serving
    )
    return PredictResponse(
        predictions=output_rows(outputs), model=ModelInfo(id=record.id, kind=record.kind)
    )
