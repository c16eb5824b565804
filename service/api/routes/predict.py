"""Predictions from stored models: one digit or several, and the sum of 10 digits."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import ModelCacheDep, ModelResolverDep, SettingsDep
from service.api.errors import ERROR_RESPONSES
from service.models.store import ModelRecord
from service.predict.models import DIGIT_TASK, SUM_TASK, LoadedModel, ModelCache
from service.predict.reading import (
    SumReading,
    Upload,
    is_light,
    png_base64,
    prepare_digit,
    prepare_sequence,
    prepare_where_fit,
    read_digits,
    read_upload,
    sum_with_calculator,
    sum_with_digit_model,
)
from service.settings import Settings

router = APIRouter(
    prefix="/predict",
    tags=["predict"],
    responses={
        **ERROR_RESPONSES,
        413: ERROR_RESPONSES[422] | {"description": "Upload too large"},
        415: ERROR_RESPONSES[422] | {"description": "Not a decodable image"},
    },
)

ModelQuery = Annotated[
    str | None, Query(description="A model id or alias; default: the newest of the task's kind.")
]
DebugQuery = Annotated[bool, Query(description="Also return the 28x28 images the model saw.")]


class ModelInfo(BaseModel):
    id: str
    kind: str


class DigitPrediction(BaseModel):
    digit: int
    probabilities: list[float] = Field(description="One per digit 0..9.")
    confidence: float = Field(description="The probability of the predicted digit.")
    model: ModelInfo
    image: str | None = Field(
        None, description="With debug=true: the 28x28 image the model saw, as a base64 PNG."
    )


class DigitPredictions(BaseModel):
    predictions: list[DigitPrediction] = Field(description="In upload order.")


class SumPrediction(BaseModel):
    sum: int
    digits: list[int] = Field(description="The digit read at each of the 10 positions.")
    cumulative: list[int] = Field(description="The running sum after each position.")
    raw_sum: float | None = Field(
        None, description="The calculator's unrounded output (method=calculator)."
    )
    method: Literal["calculator", "digit-model"]
    model: ModelInfo
    images: list[str] | None = Field(
        None, description="With debug=true: the 10 images the model saw, as base64 PNGs."
    )


@router.post("/digit", response_model=DigitPrediction | DigitPredictions)
async def predict_digit(
    request: Request,
    file: Annotated[
        list[UploadFile], File(description="One image of a digit, or several `file` parts.")
    ],
    resolver: ModelResolverDep,
    cache: ModelCacheDep,
    settings: SettingsDep,
    model: ModelQuery = None,
    debug: DebugQuery = False,
) -> DigitPrediction | DigitPredictions:
    """Read the handwritten digit in each uploaded image (photo, scan or drawing)."""
    record = await resolver.resolve(DIGIT_TASK, model)
    request.state.model_id = record.id
    loaded = await loaded_model(cache, record)
    with loaded.batcher.arriving():
        uploads = [await read_upload(upload, settings) for upload in file]
        light = is_light(uploads, len(uploads))
        images = await prepare_where_fit(light, _prepare_digits, uploads, settings)
    info = ModelInfo(id=record.id, kind=record.kind)
    predictions = [
        DigitPrediction(
            digit=reading.digit,
            probabilities=reading.probabilities,
            confidence=max(reading.probabilities),
            model=info,
            image=png_base64(reading.image) if debug else None,
        )
        for reading in await read_digits(loaded, images)
    ]
    return predictions[0] if len(predictions) == 1 else DigitPredictions(predictions=predictions)


@router.post("/sum", response_model=SumPrediction)
async def predict_sum(
    request: Request,
    resolver: ModelResolverDep,
    cache: ModelCacheDep,
    settings: SettingsDep,
    files: Annotated[
        list[UploadFile], File(description="Exactly 10 digit images, in sequence order.")
    ] = [],  # noqa: B006  FastAPI copies defaults per request
    file: Annotated[
        UploadFile | None,
        File(
            description="Instead of `files`: one image of a row of 10 digits, read left to right."
        ),
    ] = None,
    method: Annotated[
        Literal["calculator", "digit-model"],
        Query(
            description="calculator: the MNIST calculator reads the sequence (default); "
            "digit-model: a digit model reads each image and the digits are added up."
        ),
    ] = "calculator",
    model: ModelQuery = None,
    debug: DebugQuery = False,
) -> SumPrediction:
    """The sum of 10 handwritten digits, the digit read at each position and the running sums."""
    task = SUM_TASK if method == "calculator" else DIGIT_TASK
    record = await resolver.resolve(task, model)
    request.state.model_id = record.id
    loaded = await loaded_model(cache, record)
    with loaded.batcher.arriving():
        uploads = [await read_upload(upload, settings) for upload in files]
        row = await read_upload(file, settings) if file is not None else None
        every_upload = uploads + ([row] if row else [])
        light = is_light(every_upload, len(every_upload))
        images = await prepare_where_fit(light, prepare_sequence, uploads, row, settings)
    reading: SumReading = await (
        sum_with_calculator(loaded, images)
        if method == "calculator"
        else sum_with_digit_model(loaded, images)
    )
    return SumPrediction(
        sum=reading.sum,
        digits=reading.digits,
        cumulative=reading.cumulative,
        raw_sum=reading.raw_sum,
        method=method,
        model=ModelInfo(id=record.id, kind=record.kind),
        images=[png_base64(image) for image in reading.images] if debug else None,
    )


def _prepare_digits(uploads: list[Upload], settings: Settings) -> list[np.ndarray]:
    return [prepare_digit(upload, settings) for upload in uploads]


async def loaded_model(cache: ModelCache, record: ModelRecord) -> LoadedModel:
    """The model in memory; loading one (seconds, the first time) happens in a thread."""
    return cache.peek(record) or await run_in_threadpool(cache.get, record)
