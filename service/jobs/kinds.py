"""The registry of job kinds: each kind's parameters (validated before anything is queued) and the
training function a worker runs for it.

Entry points are dotted strings resolved only inside the worker's child process, so neither the
API nor the worker's parent process imports TensorFlow by importing this module.
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ServiceError

MAX_BACKPROP_STEPS = 100_000


class KindParams(BaseModel):
    """Base for every kind's parameters: unknown names and non-finite numbers are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class BackpropParams(KindParams):
    """The course's hand-built compute graph: x -> n1 -> (n2, n3) -> output, no biases."""

    activation: Literal["relu", "sigmoid", "tanh", "lecun", "identity"] = Field(
        "relu",
        description="Activation on every neuron; 'lecun' is 1.7159 tanh(2x/3) + 0.01x.",
    )
    weights: list[float] = Field(
        [2.0, 1.0, 2.0, 4.0, 1.0],
        min_length=5,
        max_length=5,
        description="w1 (x->n1), w2 (n1->n2), w3 (n1->n3), w4 (n2->out), w5 (n3->out).",
    )
    x: float = Field(2.0, description="The input.")
    y: float = Field(3.0, description="The target output.")
    learning_rate: float = Field(0.1, gt=0, le=100, description="Gradient-descent step size.")
    steps: int = Field(
        1, ge=1, le=MAX_BACKPROP_STEPS, description="Gradient-descent steps to take."
    )


@dataclass(frozen=True)
class JobKind:
    name: str
    description: str
    params_model: type[KindParams]
    entry_point: str  # "module:function", called as function(**params, progress=reporter)
    uses_tensorflow: bool


JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in [
        JobKind(
            name="backprop",
            description=(
                "The course's hand-built backpropagation compute graph: forward pass, every "
                "node's gradient, and gradient-descent steps on one (x, y) pair."
            ),
            params_model=BackpropParams,
            entry_point="training.graph.course_network:train_course_network",
            uses_tensorflow=False,
        ),
    ]
}


class InvalidJobError(ServiceError):
    """A submission whose kind or parameters are wrong; `errors` locates each problem."""

    status_code = 422
    code = "validation_error"

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.errors = errors


def get_kind(name: str, location: tuple[str, ...] = ("body", "kind")) -> JobKind:
    """The kind called `name`, or an `InvalidJobError` that lists the kinds there are."""
    try:
        return JOB_KINDS[name]
    except KeyError:
        message = f"Unknown job kind {name!r}. Expected one of: {', '.join(sorted(JOB_KINDS))}."
        raise InvalidJobError(
            message, [{"loc": list(location), "msg": message, "type": "unknown_kind"}]
        ) from None


def validate_params(kind: JobKind, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with defaults filled in, or an `InvalidJobError` naming each bad field."""
    try:
        return kind.params_model.model_validate(params).model_dump()
    except ValidationError as error:
        errors = [
            {
                "loc": ["body", "params", *item["loc"]],
                "msg": item["msg"],
                "type": item["type"],
            }
            for item in error.errors()
        ]
        fields = "; ".join(
            f"params.{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in error.errors()
        )
        raise InvalidJobError(
            f"Invalid parameters for job kind {kind.name!r}: {fields}. "
            f"See GET /jobs/kinds for every parameter, its type and its default.",
            errors,
        ) from None
