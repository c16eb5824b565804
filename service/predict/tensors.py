"""KServe v2 (Open Inference Protocol) tensors: each served kind's inputs and outputs, a
request's input tensor -> the instances TF Serving's path prepares (`instances_to_array`), and
a model's outputs -> response tensors.

A digit model takes `image` (N, 28, 28), numbers 0..255 with white ink on black as TF Serving's
arrays, or `image_bytes` (N), base64 image files prepared like uploads; a calculator takes
`images` (N, 10, 28, 28) or `image_bytes` (N, 10). Data is row-major, flat or nested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.predict.batching import Outputs
from service.predict.instances import (
    DIGIT_SHAPE,
    INK_CONVENTION,
    InvalidInstance,
    b64_upload,
    ink_problem,
)
from service.predict.models import SUM_TASK
from training.data.sequences import SEQUENCE_LENGTH

NUMERIC_DATATYPES: dict[str, type[np.generic]] = {
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
# Every datatype the protocol names; BOOL and BF16 are named to be refused with a reason.
DATATYPES = (*NUMERIC_DATATYPES, "BOOL", "BYTES", "BF16")


class InvalidTensor(InvalidInstance):
    code = "invalid_tensor"


@dataclass(frozen=True)
class TensorSpec:
    """A model's input or output: its name, datatype and shape (-1: any number, the batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name!r} ({self.datatype} {list(self.shape)})"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]  # a request sends exactly one of them
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Tensor:
    """An input tensor as a request sent it."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: list[Any]


DIGIT_SIGNATURE = Signature(
    inputs=(
        TensorSpec("image", "FP32", (-1, *DIGIT_SHAPE)),
        TensorSpec("image_bytes", "BYTES", (-1,)),
    ),
    outputs=(TensorSpec("probabilities", "FP32", (-1, 10)),),
)
CALCULATOR_SIGNATURE = Signature(
    inputs=(
        TensorSpec("images", "FP32", (-1, SEQUENCE_LENGTH, *DIGIT_SHAPE)),
        TensorSpec("image_bytes", "BYTES", (-1, SEQUENCE_LENGTH)),
    ),
    outputs=(  # the calculator's outputs (training/calculator.py)
        TensorSpec("digits", "FP32", (-1, SEQUENCE_LENGTH, 10)),
        TensorSpec("cumulative", "FP32", (-1, SEQUENCE_LENGTH)),
        TensorSpec("sum", "FP32", (-1, 1)),
        TensorSpec("sum_distribution", "FP32", (-1, 9 * SEQUENCE_LENGTH + 1)),
    ),
)


def signature_for(kind: str) -> Signature:
    return CALCULATOR_SIGNATURE if kind in SUM_TASK.kinds else DIGIT_SIGNATURE


def chosen_input(tensors: list[Tensor], signature: Signature, model: str) -> Tensor:
    """The request's one input, its name, datatype and shape checked against the model's."""
    choices = " or ".join(spec.describe() for spec in signature.inputs)
    if len(tensors) != 1:
        raise InvalidTensor(
            f"Model {model!r} takes one input, {choices}; the request has {len(tensors)} "
            f"({', '.join(repr(tensor.name) for tensor in tensors)}). Send one of them."
        )
    (tensor,) = tensors
    spec = next((spec for spec in signature.inputs if spec.name == tensor.name), None)
    if spec is None:
        raise InvalidTensor(f"Model {model!r} has no input {tensor.name!r}; it takes {choices}.")
    if tensor.datatype not in (("BYTES",) if spec.datatype == "BYTES" else NUMERIC_DATATYPES):
        expected = (
            "BYTES (base64 image files)"
            if spec.datatype == "BYTES"
            else f"numbers 0..255, white ink on black ({', '.join(NUMERIC_DATATYPES)})"
        )
        raise InvalidTensor(
            f"Input {tensor.name!r} of model {model!r} is {tensor.datatype}; it takes "
            f"{expected}. Model {model!r} takes {choices}."
        )
    fixed = spec.shape[1:]
    if len(tensor.shape) != len(spec.shape) or tensor.shape[1:] != fixed or tensor.shape[0] < 1:
        raise InvalidTensor(
            f"Input {tensor.name!r} has shape {list(tensor.shape)}; model {model!r} takes "
            f"{list(spec.shape)} (-1: any number of {'sequences' if len(fixed) > 1 else 'images'}"
            ", at least 1)."
        )
    return tensor


def tensor_instances(tensor: Tensor) -> list[Any]:
    """A checked input tensor (`chosen_input`) as TF Serving's decoded instances: one array
    per image (or sequence), or its image files (`Upload`s; 10 a sequence)."""
    values, kinds = _flat_values(tensor)
    if tensor.datatype == "BYTES":
        return _uploads(tensor, values)
    array = _numbers(tensor, values, kinds).reshape(tensor.shape)
    _check_ink(tensor, array)
    return list(array)


def check_outputs(requested: list[str], signature: Signature, model: str) -> None:
    """Outputs asked for by name: each one the model has, once."""
    names = [spec.name for spec in signature.outputs]
    for name in requested:
        if name not in names:
            raise InvalidTensor(
                f"Model {model!r} has no output {name!r}; its outputs are "
                f"{', '.join(spec.describe() for spec in signature.outputs)}."
            )
        if requested.count(name) > 1:
            raise InvalidTensor(f"Output {name!r} is asked for twice; name each output once.")


def output_tensors(
    outputs: Outputs, signature: Signature, requested: list[str] | None, model: str
) -> list[dict[str, Any]]:
    """The model's outputs as response tensors: those `requested` (checked by
    `check_outputs`), else all, in the signature's order."""
    named = outputs if isinstance(outputs, dict) else {signature.outputs[0].name: outputs}
    names = requested or [spec.name for spec in signature.outputs if spec.name in named]
    missing = [name for name in names if name not in named]
    if missing:  # a calculator stored before these outputs existed
        raise InvalidTensor(
            f"Model {model!r} was stored before it gave {', '.join(map(repr, missing))}; it "
            f"gives {', '.join(map(repr, named))}. Ask for those, or use a newer model."
        )
    return [_tensor(name, np.asarray(named[name])) for name in names]


def _tensor(name: str, value: np.ndarray) -> dict[str, Any]:
    datatype = next(
        (key for key, dtype in NUMERIC_DATATYPES.items() if np.dtype(dtype) == value.dtype), "FP32"
    )
    if datatype == "FP32" and value.dtype != np.float32:
        value = value.astype(np.float32)
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(value.shape),
        "data": value.reshape(-1).tolist(),
    }


def _flat_values(tensor: Tensor) -> tuple[list[Any], set[type]]:
    """The tensor's data, flat: sent flat, or nested no deeper than its shape, each list as
    long as its dimension (a list of values holds the dimensions left, flat); and the types
    of its values."""
    shape = tensor.shape
    level: list[list[Any]] = [tensor.data]  # the lists at one depth, in row-major order
    for depth in range(len(shape)):
        values = tensor.data if depth == 0 else [item for row in level for item in row]
        # The types, once: a walk over the values per question cost milliseconds a request.
        kinds = set(map(type, values))
        lists = [issubclass(kind, list) for kind in kinds]
        deeper = any(lists)
        if deeper and not all(lists):
            raise InvalidTensor(
                f"Input {tensor.name!r}'s data mixes lists and values at one level; send it "
                "flat (row-major) or nested as its shape."
            )
        if deeper and depth == len(shape) - 1:
            raise InvalidTensor(
                f"Input {tensor.name!r}'s data is nested deeper than its shape "
                f"{list(shape)}; send it flat (row-major) or nested as its shape."
            )
        expected = shape[depth] if deeper else math.prod(shape[depth:])
        wrong = next((i for i, row in enumerate(level) if len(row) != expected), None)
        if wrong is not None and depth == 0 and not deeper:
            raise InvalidTensor(
                f"Input {tensor.name!r} has {len(values)} values; its shape {list(shape)} "
                f"holds {expected}. Make the shape and the data agree."
            )
        if wrong is not None:
            where = (
                "".join(f"[{i}]" for i in np.unravel_index(wrong, shape[:depth])) if depth else ""
            )
            needs = (
                f"dimension {depth} of its shape {list(shape)} is {expected}"
                if deeper or depth == len(shape) - 1
                else f"its shape {list(shape)} holds {expected} values there (flat)"
            )
            raise InvalidTensor(
                f"Input {tensor.name!r}'s data{where} has {len(level[wrong])} items; {needs}. "
                "Nest the data as its shape, or send it flat (row-major)."
            )
        if not deeper:
            return values, kinds
        level = values
    raise AssertionError("not reached: the last depth holds values (deeper data is refused)")


def _numbers(tensor: Tensor, values: list[Any], kinds: set[type]) -> np.ndarray:
    """The values (of the types `kinds`) as float64, each a JSON number of the datatype."""
    wrong = (
        None
        if kinds <= {int, float}
        else next(i for i, value in enumerate(values) if type(value) not in (int, float))
    )
    if wrong is not None:
        raise InvalidTensor(
            f"Input {tensor.name!r} is {tensor.datatype}, but its value {wrong} is "
            f"{_json_type(values[wrong])}; send numbers (0..255, white ink on black), or "
            "encoded image files as BYTES."
        )
    try:
        array = np.asarray(values, dtype=np.float64)
    except OverflowError:  # a JSON integer too large for any float
        raise InvalidTensor(
            f"Input {tensor.name!r} holds an integer too large for a number ({tensor.datatype} "
            f"or any other); send 0..255, white ink on black."
        ) from None
    if not np.isfinite(array).all():
        raise InvalidTensor(f"Input {tensor.name!r} holds NaN or infinite values; send 0..255.")
    dtype = NUMERIC_DATATYPES[tensor.datatype]
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    integral = not np.issubdtype(dtype, np.integer) or bool(np.all(array == np.floor(array)))
    if not integral or array.min() < info.min or array.max() > info.max:
        raise InvalidTensor(
            f"Input {tensor.name!r} holds values that are not {tensor.datatype} "
            f"({'integers ' if np.issubdtype(dtype, np.integer) else ''}{info.min}..{info.max}); "
            "fix the values or the datatype."
        )
    return array


def _check_ink(tensor: Tensor, array: np.ndarray) -> None:
    """TF Serving's rule for arrays (`ink_problem`), said in the tensor's words."""
    problem = ink_problem(array.reshape(-1, *DIGIT_SHAPE))
    if problem is not None:
        index, why = problem
        where = np.unravel_index(index, tensor.shape[:-2])
        raise InvalidTensor(
            f"Input {tensor.name!r}'s image {''.join(f'[{i}]' for i in where)} {why}; "
            f"{INK_CONVENTION}."
        )


def _uploads(tensor: Tensor, values: list[Any]) -> list[Any]:
    wrong = next((i for i, value in enumerate(values) if not isinstance(value, str)), None)
    if wrong is not None:
        raise InvalidTensor(
            f"Input {tensor.name!r} is BYTES, but its value {wrong} is "
            f"{_json_type(values[wrong])}; send each image file as a base64 string."
        )
    if len(tensor.shape) == 1:
        return [b64_upload(text, f"{tensor.name}[{i}]") for i, text in enumerate(values)]
    width = tensor.shape[1]
    return [
        [b64_upload(values[i * width + j], f"{tensor.name}[{i}][{j}]") for j in range(width)]
        for i in range(tensor.shape[0])
    ]


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)
