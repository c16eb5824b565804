"""TF Serving's row format: `instances` -> the arrays a model takes, and outputs -> rows.

A digit model's instance is a 28x28 array of numbers (MNIST's convention: 0..255, white ink on
black) or `{"b64": "<image file>"}`, which is decoded and prepared like an upload. Arrays are
prepared too, as the training images were (`prepare_images`): the models learn from prepared
digits, and a raw MNIST digit differs from its prepared form by about 15/255 a pixel. A request's
arrays are read as one array and prepared together (`prepare_batch`, which gives what
`prepare_images` gives) when all are well formed; else instance by instance, so that the first
wrong one is named. A calculator's instance is a 10x28x28 array or a list of 10 such objects.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from service.errors import ServiceError
from service.predict.reading import Upload, prepare_digit
from service.settings import Settings
from training.batch_preparation import prepare_batch
from training.data.sequences import SEQUENCE_LENGTH

DIGIT_SHAPE = (28, 28)
# How to send what the API takes, said after any value out of its convention.
INK_CONVENTION = (
    "the API takes numbers 0..255, white ink on black (MNIST's convention): multiply images "
    "scaled to 0..1 by 255, and invert dark ink on white (255 - value)"
)


class InvalidInstance(ServiceError):
    status_code = 422
    code = "invalid_instance"


def decode_images(instances: list[Any]) -> list[Any]:
    """The instances with every `{"b64": ...}` replaced by the image file it holds (an
    `Upload`), decoded from base64 once."""

    def decoded(item: Any, where: str) -> Any:
        return _b64_upload(item, where) if isinstance(item, dict) else item

    return [
        [decoded(item, f"instances[{i}][{j}]") for j, item in enumerate(instance)]
        if isinstance(instance, list) and any(isinstance(item, dict) for item in instance)
        else decoded(instance, f"instances[{i}]")
        for i, instance in enumerate(instances)
    ]


def uploads_in(instances: list[Any]) -> list[Upload]:
    """The image files among decoded instances."""
    return [
        item
        for instance in instances
        for item in (instance if isinstance(instance, list) else [instance])
        if isinstance(item, Upload)
    ]


def instances_to_array(instances: list[Any], sequence: bool, settings: Settings) -> np.ndarray:
    """The model's input batch: (N, 28, 28) for digit models, (N, 10, 28, 28) for sequences."""
    arrays = _arrays(instances, (SEQUENCE_LENGTH, *DIGIT_SHAPE) if sequence else DIGIT_SHAPE)
    if arrays is not None:
        return _prepared(arrays.reshape(-1, *DIGIT_SHAPE)).reshape(arrays.shape)
    rows = []
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if sequence:
            rows.append(_sequence(instance, where, settings))
        else:
            rows.append(_digit(instance, where, settings))
    return np.stack(rows)


def image_count(instances: int, sequence: bool) -> int:
    """The 28x28 images `instances` rows carry (a calculator's row: SEQUENCE_LENGTH), as
    MAX_IMAGES_PER_REQUEST counts them."""
    return instances * (SEQUENCE_LENGTH if sequence else 1)


def ink_problem(images: np.ndarray) -> tuple[int, str] | None:
    """The first of (K, 28, 28) images not in the API's convention (0..255, white ink on
    black), and what is wrong with it; None when all are. An image whose largest value is at
    most 1 is blank, or was scaled to 0..1: either way the model would answer for a blank."""
    flat = images.reshape(len(images), -1)
    lowest, highest = flat.min(axis=1), flat.max(axis=1)
    outside = np.flatnonzero((lowest < 0) | (highest > 255))
    if outside.size:
        index = int(outside[0])
        return index, f"holds values from {lowest[index]:g} to {highest[index]:g}, outside 0..255"
    faint = np.flatnonzero(highest <= 1)
    if faint.size:
        index = int(faint[0])
        return index, (
            f"has no value above 1 (its largest is {highest[index]:g}): it looks blank, or "
            "scaled to 0..1; send 0..255"
        )
    return None


def output_rows(outputs: np.ndarray | dict[str, np.ndarray]) -> list[Any]:
    """One prediction per instance: the output row, or a dict of them for several outputs."""
    if isinstance(outputs, dict):
        count = len(next(iter(outputs.values())))
        return [{name: value[i].tolist() for name, value in outputs.items()} for i in range(count)]
    return outputs.tolist()


def _digit(instance: Any, where: str, settings: Settings) -> np.ndarray:
    if isinstance(instance, Upload):
        return prepare_digit(instance, settings)
    return _prepared(_array(instance, DIGIT_SHAPE, where)[np.newaxis])[0]


def _check_ink(images: np.ndarray, where: str, sequence: bool) -> None:
    problem = ink_problem(images)
    if problem is not None:
        index, why = problem
        raise InvalidInstance(
            f"{f'{where}[{index}]' if sequence else where} {why}; {INK_CONVENTION}."
        )


def _sequence(instance: Any, where: str, settings: Settings) -> np.ndarray:
    if isinstance(instance, list) and instance and all(isinstance(i, Upload) for i in instance):
        if len(instance) != SEQUENCE_LENGTH:
            raise InvalidInstance(
                f"{where} holds {len(instance)} images; a calculator instance is "
                f"{SEQUENCE_LENGTH} images (or a {SEQUENCE_LENGTH}x28x28 array)."
            )
        return np.stack(
            [_digit(item, f"{where}[{i}]", settings) for i, item in enumerate(instance)]
        )
    return _prepared(_array(instance, (SEQUENCE_LENGTH, *DIGIT_SHAPE), where))


def _prepared(digits: np.ndarray) -> np.ndarray:
    """(N, 28, 28) arrays of 0..255 numbers (`_array` checks them), prepared as the models'
    training images were (`prepare_batch` gives what `prepare_images` gives)."""
    return prepare_batch(np.rint(digits).astype(np.uint8))


def _arrays(instances: list[Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """Every instance as one (N, *shape) float32 array, when all are arrays of that shape
    that `_array` accepts; else None, and `_array`, instance by instance, says what is wrong
    with the first that is wrong (a request with image files is read that way too)."""
    if any(_holds_upload(item) for item in instances):
        return None
    try:
        arrays = np.asarray(instances, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        return None
    if arrays.shape != (len(instances), *shape) or not np.isfinite(arrays).all():
        return None
    if ink_problem(arrays.reshape(-1, *DIGIT_SHAPE)) is not None:
        return None
    return arrays


def _holds_upload(item: Any) -> bool:
    """Whether an instance is, or holds, an image file (read instance by instance)."""
    return isinstance(item, Upload) or (
        isinstance(item, list) and any(isinstance(part, Upload) for part in item)
    )


def _array(instance: Any, shape: tuple[int, ...], where: str) -> np.ndarray:
    expected = "x".join(map(str, shape))
    try:
        array = np.asarray(instance, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInstance(
            f"{where} is not an array of numbers; expected a {expected} array of numbers "
            f'(0..255, white ink on black) or {{"b64": "<base64 image file>"}}.'
        ) from None
    if array.shape != shape:
        raise InvalidInstance(
            f"{where} has shape {'x'.join(map(str, array.shape)) or 'scalar'}; expected "
            f'{expected} (0..255, white ink on black) or {{"b64": "<base64 image file>"}}.'
        )
    if not np.isfinite(array).all():
        raise InvalidInstance(f"{where} holds NaN or infinite values; send numbers 0..255.")
    _check_ink(array.reshape(-1, *DIGIT_SHAPE), where, sequence=array.ndim > len(DIGIT_SHAPE))
    return array


def _b64_upload(instance: dict, where: str) -> Upload:
    if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
        raise InvalidInstance(
            f'{where} is an object; the only object accepted is {{"b64": "<base64 image '
            f'file>"}}, got keys {sorted(instance)}.'
        )
    return b64_upload(instance["b64"], where)


def b64_upload(text: str, name: str) -> Upload:
    """The image file that base64 `text` holds (TF Serving's `b64`, KServe v2's BYTES
    elements), named `name` in errors."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInstance(
            f"{name} is not valid base64; send the image file's bytes base64-encoded."
        ) from None
    return Upload(name, data)
