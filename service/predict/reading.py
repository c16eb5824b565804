"""From uploaded files to answers: prepare each image, run the model through its batcher, and
turn the model's outputs into digits and sums."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from fastapi import UploadFile
from PIL import Image
from starlette.concurrency import run_in_threadpool

from service.errors import ServiceError
from service.gates import Gate
from service.predict.decode import decode_upload, decoded_pixels
from service.predict.models import LoadedModel
from service.settings import Settings
from training.data.sequences import (
    DOUBTFUL_BELOW,
    SEQUENCE_LENGTH,
    SequenceReading,
    read_sequences,
)
from training.digit_images import NoDigitFound, to_mnist
from training.digit_rows import WrongDigitCount, split_row


class NoDigitInImage(ServiceError):
    status_code = 422
    code = "no_digit_found"


class WrongImageCount(ServiceError):
    status_code = 422
    code = "wrong_image_count"


T = TypeVar("T")

# A request is prepared on the event loop when that is quick: a few images (or arrays), small
# together (a 28x28 PNG takes 0.4 ms; a thread hop per request, with every thread contending
# for the GIL, cost far more; 100k pixels take about 7 ms). Others go to the thread pool so
# they never hold up other requests; those with large images (photos: 0.1-0.3 s each) hold
# one of PREPARE_SLOTS while they are prepared.
INLINE_ITEMS = 16
INLINE_BYTES = 64_000
INLINE_PIXELS = 100_000  # all images of the request together
GATED_PIXELS = 250_000  # all images of the request together


class TooManyImages(ServiceError):
    status_code = 413
    code = "too_many_images"


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes

    @functools.cached_property
    def pixels(self) -> int:
        """The pixels decoding it costs, from its header (0 if it has none: decoding refuses
        it with its reason, at no cost)."""
        return decoded_pixels(self.data) or 0


def check_request_size(uploads: list[Upload], items: int, settings: Settings) -> None:
    """Refuse, before anything is decoded, a request of more than MAX_IMAGES_PER_REQUEST
    images or inputs, or whose images have more than MAX_REQUEST_PIXELS pixels together."""
    most = settings.max_images_per_request
    if max(items, len(uploads)) > most:
        raise TooManyImages(
            f"The request carries {max(items, len(uploads))} images or inputs; at most {most} "
            "are read per request (MAX_IMAGES_PER_REQUEST). Split it into several requests."
        )
    # An image over MAX_IMAGE_PIXELS is never decoded (its own 413 names it): not counted whole.
    pixels = sum(min(upload.pixels, settings.max_image_pixels) for upload in uploads)
    if pixels > settings.max_request_pixels:
        raise TooManyImages(
            f"The request's images have {pixels:,} pixels together; at most "
            f"{settings.max_request_pixels:,} are decoded per request (MAX_REQUEST_PIXELS). "
            "Send smaller images or fewer per request."
        )


async def prepare_where_fit(
    gate: Gate, uploads: list[Upload], items: int, prepare: Callable[..., T], *args: Any
) -> T:
    """`prepare(*args)` for a request of `items` inputs, of which `uploads` are image files: on
    the event loop when that is quick, else in a thread; with large images, holding one of the
    gate's slots (`Busy`, a 503, when every slot is taken)."""
    pixels = sum(upload.pixels for upload in uploads)
    size = sum(len(upload.data) for upload in uploads)
    if items <= INLINE_ITEMS and pixels <= INLINE_PIXELS and size <= INLINE_BYTES:
        return prepare(*args)
    if pixels <= GATED_PIXELS:
        return await run_in_threadpool(prepare, *args)
    with gate.enter():
        return await run_in_threadpool(prepare, *args)


@dataclass(frozen=True)
class DigitReading:
    digit: int
    probabilities: list[float]
    image: np.ndarray


@dataclass(frozen=True)
class SumReading:
    """The digits read in a sequence with their probabilities; the sum and running sums are
    theirs, so an answer never contradicts itself."""

    digits: list[int]
    confidences: list[float] | None  # None: the model gives none (an older calculator)
    raw_sum: float | None
    images: list[np.ndarray]

    @property
    def sum(self) -> int:
        return sum(self.digits)

    @property
    def cumulative(self) -> list[int]:
        return np.cumsum(self.digits).tolist()

    @property
    def uncertain(self) -> bool:
        """Whether a digit was read with less than DOUBTFUL_BELOW probability (always, when the
        model gives no probabilities)."""
        return self.confidences is None or min(self.confidences) < DOUBTFUL_BELOW


async def read_upload(upload: UploadFile, settings: Settings) -> Upload:
    """The uploaded file's name and bytes; one byte over the limit is enough to refuse it."""
    return Upload(upload.filename or "upload", await upload.read(settings.max_upload_bytes + 1))


def prepare_digit(upload: Upload, settings: Settings) -> np.ndarray:
    """The 28x28 image (float32, white on black) the model sees for one uploaded digit."""
    gray = decode_upload(
        upload.data, upload.name, settings.max_upload_bytes, settings.max_image_pixels
    )
    try:
        return to_mnist(gray).image
    except NoDigitFound as error:
        raise NoDigitInImage(f"{upload.name!r}: {error}") from None


def prepare_row(upload: Upload, settings: Settings) -> list[np.ndarray]:
    """The 28x28 images of the 10 digits in one image of a row of digits, left to right."""
    gray = decode_upload(
        upload.data, upload.name, settings.max_upload_bytes, settings.max_image_pixels
    )
    try:
        return [digit.image for digit in split_row(gray, SEQUENCE_LENGTH)]
    except NoDigitFound as error:
        raise NoDigitInImage(f"{upload.name!r}: {error}") from None
    except WrongDigitCount as error:
        raise WrongImageCount(f"{upload.name!r}: {error}") from None


def prepare_sequence(
    uploads: list[Upload], row: Upload | None, settings: Settings
) -> list[np.ndarray]:
    """The 10 images of a sum request: 10 separate uploads, or one image of a row."""
    if row is not None and uploads:
        raise WrongImageCount(
            "Send either 10 `files` parts or one `file` holding a row of 10 digits, not both."
        )
    if row is not None:
        return prepare_row(row, settings)
    if len(uploads) != SEQUENCE_LENGTH:
        raise WrongImageCount(
            f"A sum needs exactly {SEQUENCE_LENGTH} images, got {len(uploads)}: send "
            f"{SEQUENCE_LENGTH} `files` parts in sequence order, or one `file` holding a row of "
            f"{SEQUENCE_LENGTH} digits."
        )
    return [prepare_digit(upload, settings) for upload in uploads]


async def read_digits(model: LoadedModel, images: list[np.ndarray]) -> list[DigitReading]:
    probabilities = np.asarray(await model.batcher.outputs(np.stack(images)))
    return [
        DigitReading(int(np.argmax(row)), [float(p) for p in row], image)
        for row, image in zip(probabilities, images, strict=True)
    ]


async def sum_with_digit_model(model: LoadedModel, images: list[np.ndarray]) -> SumReading:
    """Read each digit with a digit model and add them up."""
    probabilities = np.asarray(await model.batcher.outputs(np.stack(images)))
    return _sum_reading(read_sequences(probabilities), None, images)


async def sum_with_calculator(model: LoadedModel, images: list[np.ndarray]) -> SumReading:
    """The calculator's digits (the most likely at each position) and their sum; `raw_sum` is
    its own output. Calculators stored before digits were an output of every calculator give
    the steps between their rounded running sums, with no probabilities."""
    outputs = await model.batcher.outputs(np.stack(images)[np.newaxis])
    raw_sum = float(outputs["sum"].reshape(-1)[0])
    if "digits" in outputs:
        return _sum_reading(read_sequences(outputs["digits"][0]), raw_sum, images)
    running = np.rint(outputs["cumulative"][0]).astype(int)
    steps = np.clip(np.diff(running, prepend=0), 0, 9)
    return SumReading(steps.tolist(), None, raw_sum, images)


def _sum_reading(
    reading: SequenceReading, raw_sum: float | None, images: list[np.ndarray]
) -> SumReading:
    confidences = [float(value) for value in reading.confidences]
    return SumReading(reading.digits.tolist(), confidences, raw_sum, images)


def png_base64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
