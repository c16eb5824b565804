"""Predictions from stored models: one digit or several, and the sum of 10 digits."""

from __future__ import annotations

import contextlib
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.api.deps import ServingDep
from service.api.errors import ERROR_RESPONSES
from service.api.forms import SmallFormRoute
from service.errors import ConflictError
from service.models.store import ModelRecord
from service.predict.models import (
    DIGIT_TASK,
    SUM_TASK,
    LoadedModel,
    ModelCache,
    ModelResolver,
    Task,
)
from service.predict.reading import (
    SumReading,
    Upload,
    check_request_size,
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
from training.data.sequences import DOUBTFUL_BELOW

router = APIRouter(
    prefix="/predict",
    tags=["predict"],
    responses=ERROR_RESPONSES,
    route_class=SmallFormRoute,
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


SumMethod = Literal["calculator", "digit-model"]


class SumPrediction(BaseModel):
    sum: int = Field(description="The sum of `digits`.")
    digits: list[int] = Field(description="The digit read at each of the 10 positions.")
    cumulative: list[int] = Field(description="The running sums of `digits`.")
    confidences: list[float] | None = Field(
        description="The probability of the digit read at each position (null: the model "
        "gives none)."
    )
    uncertain: bool = Field(
        description=f"Whether a digit was read with less than {DOUBTFUL_BELOW} probability, so "
        "the sum may be wrong (always true without confidences)."
    )
    raw_sum: float | None = Field(
        None, description="The calculator's own sum output, unrounded (method=calculator)."
    )
    method: SumMethod = Field(description="How the sum was read.")
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
    serving: ServingDep,
    model: ModelQuery = None,
    debug: DebugQuery = False,
) -> DigitPrediction | DigitPredictions:
    """Read the handwritten digit in each uploaded image (photo, scan or drawing).

    Example: `curl -F file=@digit.png localhost:8000/predict/digit` (several: repeat `-F
    file=@...`; `?debug=true` adds the 28x28 image the model saw)."""
    settings = serving.settings
    record = await serving.resolver.resolve(DIGIT_TASK, model)
    request.state.model_id = record.id
    loaded = await loaded_model(serving.cache, record)
    with loaded.batcher.arriving():
        uploads = [await read_upload(upload, settings) for upload in file]
        check_request_size(uploads, len(uploads), settings)
        images = await prepare_where_fit(
            serving.gate, uploads, len(uploads), _prepare_digits, uploads, settings
        )
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
    serving: ServingDep,
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
        Literal["auto", "calculator", "digit-model"],
        Query(
            description="calculator: the MNIST calculator reads the sequence; digit-model: a "
            "digit model reads each image and the digits are added up; auto (default): the "
            "kind of the model named, else the default model whose job measured more exact "
            "sums of the course's test sequences (the calculator on a tie)."
        ),
    ] = "auto",
    model: ModelQuery = None,
    debug: DebugQuery = False,
) -> SumPrediction:
    """The sum of 10 handwritten digits, the digit read at each position and the running sums.

    Example, 10 images: `curl -F files=@d0.png -F files=@d1.png ... -F files=@d9.png
    localhost:8000/predict/sum`; one image of a row of 10 digits: `curl -F file=@row.jpg
    localhost:8000/predict/sum`."""
    settings = serving.settings
    record, chosen = await _sum_model(serving.resolver, method, model)
    request.state.model_id = record.id
    loaded = await loaded_model(serving.cache, record)
    with loaded.batcher.arriving():
        uploads = [await read_upload(upload, settings) for upload in files]
        row = await read_upload(file, settings) if file is not None else None
        every_upload = uploads + ([row] if row else [])
        check_request_size(every_upload, len(every_upload), settings)
        images = await prepare_where_fit(
            serving.gate, every_upload, len(every_upload), prepare_sequence, uploads, row, settings
        )
    reading: SumReading = await (
        sum_with_calculator(loaded, images)
        if chosen == "calculator"
        else sum_with_digit_model(loaded, images)
    )
    return SumPrediction(
        sum=reading.sum,
        digits=reading.digits,
        cumulative=reading.cumulative,
        confidences=reading.confidences,
        uncertain=reading.uncertain,
        raw_sum=reading.raw_sum,
        method=chosen,
        model=ModelInfo(id=record.id, kind=record.kind),
        images=[png_base64(image) for image in reading.images] if debug else None,
    )


METHOD_TASKS: dict[SumMethod, Task] = {"calculator": SUM_TASK, "digit-model": DIGIT_TASK}
ANY_SUM_READER = Task(SUM_TASK.name, SUM_TASK.kinds + DIGIT_TASK.kinds, preset=SUM_TASK.preset)


async def _sum_model(
    resolver: ModelResolver, method: str, reference: str | None
) -> tuple[ModelRecord, SumMethod]:
    """The model that reads a sum, and how: the method asked for; else the method of the
    model named; else the more accurate default model (`_more_accurate`). With neither
    default model stored, the digit model's 409, which names the job training it."""
    if method != "auto":
        return await resolver.resolve(METHOD_TASKS[method], reference), method
    if reference:
        record = await resolver.resolve(ANY_SUM_READER, reference)
        return record, "calculator" if record.kind in SUM_TASK.kinds else "digit-model"
    found: dict[SumMethod, ModelRecord] = {}
    for name, task in METHOD_TASKS.items():
        with contextlib.suppress(ConflictError):
            found[name] = await resolver.resolve(task, None)
    if not found:  # the digit model's 409 names the job training it (unless one just came)
        found["digit-model"] = await resolver.resolve(DIGIT_TASK, None)
    return _more_accurate(found)


def _more_accurate(found: dict[SumMethod, ModelRecord]) -> tuple[ModelRecord, SumMethod]:
    """The calculator when its job measured more exact sums than the digit model's job on the
    same test sequences (or as many); else the digit model. Only figures that measure what the
    service answers (`sum_metrics`: both carry `test_all_cumulative_exact`) over the same
    number of sequences are compared; models stored before that, or tested on fewer
    sequences, are not comparable, and then the digit model answers, when there is one."""
    if len(found) == 1:
        ((method, record),) = found.items()
        return record, method
    calculator, digit_model = found["calculator"].metrics, found["digit-model"].metrics
    comparable = all("test_all_cumulative_exact" in m for m in (calculator, digit_model)) and (
        calculator.get("test_sequences") == digit_model.get("test_sequences")
    )
    if comparable and (
        calculator["test_exact_sum_accuracy"] >= digit_model["test_exact_sum_accuracy"]
    ):
        return found["calculator"], "calculator"
    return found["digit-model"], "digit-model"


def _prepare_digits(uploads: list[Upload], settings: Settings) -> list[np.ndarray]:
    return [prepare_digit(upload, settings) for upload in uploads]


async def loaded_model(cache: ModelCache, record: ModelRecord) -> LoadedModel:
    """The model in memory; loading one (seconds, the first time) happens in a thread."""
    return cache.peek(record) or await run_in_threadpool(cache.get, record)
