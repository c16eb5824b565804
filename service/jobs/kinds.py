"""The registry of job kinds: each kind's parameters model and the training function a worker
runs for it, and the validation of a submission's kind and parameters.

Entry points are dotted strings resolved only inside the worker's child process, so neither the
API nor the worker's parent process imports TensorFlow by importing this module.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from service.errors import ServiceError
from service.jobs.limits import Network, estimate, over_limits
from service.jobs.params import (
    BackpropParams,
    CalculatorParams,
    CnnParams,
    KindParams,
    MlpParams,
    SvhnParams,
)


@dataclass(frozen=True)
class JobKind:
    name: str
    description: str
    params_model: type[KindParams]
    # "module:function", called as function(**params, **resources, progress=reporter)
    entry_point: str
    uses_tensorflow: bool
    # Settings the function needs besides its params: "mnist_path", "svhn_dir".
    resources: tuple[str, ...] = ()
    # Whether it saves a model into a `model_dir` it is given, to be registered on success.
    produces_model: bool = False
    # Params that name a stored digit model (id, alias or kind: ModelStore.digit_model) -> the
    # argument that gets its file.
    model_references: tuple[tuple[str, str], ...] = ()
    # Seconds without progress after which a running job is stalled (JOB_STALL_SECONDS
    # overrides): long enough for loading TensorFlow and the data, and for evaluating a test set
    # at an epoch's end, when no batch reports.
    stall_seconds: float = 900.0


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
            stall_seconds=120.0,
        ),
        JobKind(
            name="mlp",
            description=(
                "A multilayer perceptron on MNIST: any depth, width and hidden activation, "
                "dropout, L2 weight decay, and a choice of optimizer."
            ),
            params_model=MlpParams,
            entry_point="training.mlp:train_mlp",
            uses_tensorflow=True,
            resources=("mnist_path",),
            produces_model=True,
        ),
        JobKind(
            name="cnn",
            description=(
                "The convolutional handwritten-digit classifier for MNIST; its defaults reach "
                "at least 99.3% test accuracy on the full data set."
            ),
            params_model=CnnParams,
            entry_point="training.cnn:train_cnn",
            uses_tensorflow=True,
            resources=("mnist_path",),
            produces_model=True,
        ),
        JobKind(
            name="svhn_cnn",
            description=(
                "The course's fixed-topology CNN for SVHN house-number digits, with early "
                "stopping on a validation set drawn at random from the training set."
            ),
            params_model=SvhnParams,
            entry_point="training.svhn_cnn:train_svhn_cnn",
            uses_tensorflow=True,
            resources=("svhn_dir",),
            produces_model=True,
        ),
        JobKind(
            name="calculator",
            description=(
                "The MNIST calculator: reads a sequence of 10 digit images and outputs the digit "
                "read at each position, their sum and running sums (exact arithmetic on the "
                "digits' probabilities); trained on sums only (as in the course) or with digit "
                "labels, optionally from a stored digit model."
            ),
            params_model=CalculatorParams,
            entry_point="training.calculator:train_calculator",
            uses_tensorflow=True,
            resources=("mnist_path",),
            produces_model=True,
            model_references=(("digit_model", "digit_model_path"),),
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
    """The parameters with defaults filled in, or an `InvalidJobError` naming each bad field
    or the limit on job size that they exceed."""
    try:
        validated = kind.params_model.model_validate(params).model_dump()
    except ValidationError as error:
        errors = [
            {
                "loc": ["body", "params", *item["loc"]],
                "msg": item["msg"].removeprefix("Value error, "),
                "type": item["type"],
            }
            for item in error.errors()
        ]
        fields = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'][1:])}: {item['msg'].rstrip('.')}"
            for item in errors
        )
        raise InvalidJobError(
            f"Invalid parameters for job kind {kind.name!r}: {fields}. "
            f"See GET /jobs/kinds for every parameter, its type and its default.",
            errors,
        ) from None
    check_size(kind, validated)
    return validated


def validate_param(kind: JobKind, name: str, value: Any, location: list[str | int]) -> None:
    """`InvalidJobError` when `value` is not one that parameter `name` of `kind` takes (its
    type and bounds, on its own: the rules across parameters need them all)."""
    field = kind.params_model.model_fields[name]
    adapter = TypeAdapter(Annotated[field.annotation, field], config=kind.params_model.model_config)
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]
        message = problem["msg"].removeprefix("Value error, ")
        raise InvalidJobError(
            f"Invalid parameters for job kind {kind.name!r}: "
            f"{'.'.join(str(part) for part in location[1:])}: {message}.",
            [{"loc": location, "msg": message, "type": problem["type"]}],
        ) from None


def check_size(
    kind: JobKind, params: dict[str, Any], stored_classifier: Network | None = None
) -> None:
    """`InvalidJobError` stating each estimate of the job's size that is over its limit, the
    limit, and how to get under it (`service.jobs.limits`)."""
    size = estimate(kind.name, params, stored_classifier)
    problems = over_limits(kind.name, size) if size else []
    if problems:
        raise InvalidJobError(
            f"Job kind {kind.name!r} is too large: {'; '.join(problems)}. Limits on job size: "
            "docs/training.md.",
            [
                {"loc": ["body", "params"], "msg": problem, "type": "job_too_large"}
                for problem in problems
            ],
        )
