"""Predictions from stored models."""

from __future__ import annotations

import base64
import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Query, UploadFile
from PIL import Image
from pydantic import BaseModel, Field

from service.api.deps import ModelCacheDep, ModelStoreDep, SettingsDep
from service.api.errors import ERROR_RESPONSES
from service.errors import ServiceError
from service.predict.decode import decode_upload
from service.predict.models import resolve_digit_model
from training.digit_images import NoDigitFound, to_mnist

router = APIRouter(
    prefix="/predict",
    tags=["predict"],
    responses={
        **ERROR_RESPONSES,
        413: ERROR_RESPONSES[422] | {"description": "Upload too large"},
        415: ERROR_RESPONSES[422] | {"description": "Not a decodable image"},
    },
)


class NoDigitInImage(ServiceError):
    status_code = 422
    code = "no_digit_found"


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


@router.post("/digit", response_model=DigitPrediction | DigitPredictions)
def predict_digit(
    file: Annotated[
        list[UploadFile], File(description="One image of a digit, or several `file` parts.")
    ],
    store: ModelStoreDep,
    cache: ModelCacheDep,
    settings: SettingsDep,
    model: Annotated[str | None, Query(description="A model id; default: newest cnn.")] = None,
    debug: Annotated[bool, Query(description="Also return the 28x28 image seen.")] = False,
) -> DigitPrediction | DigitPredictions:
    """Read the handwritten digit in each uploaded image (photo, scan or drawing)."""
    record = resolve_digit_model(store, model)
    prepared = []
    for upload in file:
        name = upload.filename or "upload"
        data = upload.file.read(settings.max_upload_bytes + 1)
        gray = decode_upload(data, name, settings.max_upload_bytes, settings.max_image_pixels)
        try:
            prepared.append(to_mnist(gray).image)
        except NoDigitFound as error:
            raise NoDigitInImage(f"{name!r}: {error}") from None
    probabilities = np.asarray(cache.get(record)(np.stack(prepared), training=False))
    info = ModelInfo(id=record.id, kind=record.kind)
    predictions = [
        DigitPrediction(
            digit=int(np.argmax(row)),
            probabilities=[float(p) for p in row],
            confidence=float(np.max(row)),
            model=info,
            image=_png_base64(image) if debug else None,
        )
        for row, image in zip(probabilities, prepared, strict=True)
    ]
    return predictions[0] if len(predictions) == 1 else DigitPredictions(predictions=predictions)


def _png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
