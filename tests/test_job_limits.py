"""Limits on job size: the estimates, made without TensorFlow, against the Keras models that
training/ builds and the batches Keras runs; submissions over a limit refused over HTTP before
anything is stored or queued; every preset and default still accepted."""

from __future__ import annotations

import math
from collections.abc import Iterator

import keras
import numpy as np
import pytest

from service.jobs.kinds import JOB_KINDS, InvalidJobError, validate_params
from service.jobs.limits import (
    BACKWARD_FACTOR,
    BYTES_PER_VALUE,
    MAX_ACTIVATION_BYTES,
    MAX_PARAMETERS,
    MAX_TRAINING_STEPS,
    JobSize,
    digit_network,
    estimate,
)
from service.jobs.store import JobStore
from service.models.store import ModelStore
from service.presets import PRESETS
from service.settings import Settings
from service.sweeps.runs import submit_sweep
from service.sweeps.schemas import SweepSubmission
from service.sweeps.store import SweepStore
from service.worker.celery_app import create_celery_app
from tests.conftest import FAULTS_DB
from tests.stack import ServiceStack
from training.calculator import build_calculator
from training.cnn import build_mnist_cnn
from training.mlp import build_mlp
from training.svhn_cnn import build_svhn_cnn


def validated(kind: str, **params) -> dict:
    return validate_params(JOB_KINDS[kind], params)


def size_of(kind: str, **params) -> JobSize:
    """The estimate for params whether or not they are within the limits."""
    return estimate(kind, JOB_KINDS[kind].params_model.model_validate(params).model_dump())


def layer_outputs(model: keras.Model) -> int:
    """Values of every layer's output for one example, the input layer's included."""
    return sum(math.prod(layer.output.shape[1:]) for layer in model.layers)


def mlp_model(params: dict) -> keras.Model:
    return build_mlp(
        params["hidden_units"],
        params["activation"],
        params["first_activation"],
        params["dropout_rate"],
        params["l2"],
    )


def cnn_model(params: dict) -> keras.Model:
    return build_mnist_cnn(
        params["conv_filters"], params["dense_units"], params["dropout_rate"], params["augment"]
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"hidden_units": [500, 300], "dropout_rate": 0.0}, {"depth": 5, "width": 32},
     {"hidden_units": [7, 1, 300], "l2": 0.01, "first_activation": "tanh"}],
)  # fmt: skip
def test_mlp_estimate_is_the_keras_models(params):
    model = mlp_model(validated("mlp", **params))
    network = size_of("mlp", **params).network
    assert network.parameters == model.count_params()
    assert network.values_per_example == layer_outputs(model)


@pytest.mark.parametrize(
    "params",
    [{}, {"conv_filters": [16, 32], "dense_units": 64}, {"conv_filters": [8], "augment": False},
     {"conv_filters": [4, 5, 6, 7], "dense_units": 33, "dropout_rate": 0.0}],
)  # fmt: skip
def test_cnn_estimate_is_the_keras_models(params):
    model = cnn_model(validated("cnn", **params))
    network = size_of("cnn", **params).network
    assert network.parameters == model.count_params()
    assert network.values_per_example == layer_outputs(model)


def test_svhn_estimate_is_the_keras_models():
    model = build_svhn_cnn()
    network = size_of("svhn_cnn").network
    assert network.parameters == model.count_params()
    assert network.values_per_example == layer_outputs(model)


@pytest.mark.parametrize(
    "params",
    [{}, {"conv_filters": [16, 32], "dense_units": 64, "augment": True},
     {"conv_filters": [3, 3, 3, 3], "dense_units": 5, "digit_labels": True}],
)  # fmt: skip
def test_calculator_estimate_is_the_keras_models(params):
    full = validated("calculator", **params)
    model = build_calculator(
        None, full["conv_filters"], full["dense_units"], full["dropout_rate"], full["augment"]
    )
    network = estimate("calculator", full).network
    assert network.parameters == model.count_params()
    # The classifier's layers run on each of the 10 images; the sum distribution's
    # intermediate values are not layers, so this is a lower bound.
    classifier = cnn_model(full)
    assert network.values_per_example > layer_outputs(model) + 10 * layer_outputs(classifier)


@pytest.mark.parametrize(
    ("kind", "params"),
    [("mlp", {"hidden_units": [64, 32]}), ("cnn", {"conv_filters": [8, 16], "dense_units": 32})],
)
def test_fine_tuning_a_stored_digit_model_is_estimated_from_its_params(kind, params):
    stored = validated(kind, **params)
    digit_model = mlp_model(stored) if kind == "mlp" else cnn_model(stored)
    calculator = validated("calculator", digit_model=kind, fine_tune=True)
    size = estimate("calculator", calculator, digit_network(kind, stored))
    assert size.network.parameters == build_calculator(digit_model).count_params()
    # Kept as it is, nothing trains: nothing to bound.
    kept = estimate("calculator", validated("calculator", digit_model=kind), None)
    assert kept.steps == 0 and kept.activation_bytes is None


def test_activation_memory_is_every_layer_output_and_its_gradient_for_a_batch():
    size = size_of("cnn", batch_size=100)
    per_example = layer_outputs(cnn_model(validated("cnn"))) * BYTES_PER_VALUE * BACKWARD_FACTOR
    assert size.activation_bytes == 100 * per_example


class BatchCounter(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.batches += 1


@pytest.mark.parametrize(
    ("train_limit", "validation_split", "batch_size", "epochs"),
    # 512 with 0.1 held out: Keras trains on 460, not 512 - int(51.2) = 461 (23 steps, not 24).
    [(1000, 0.15, 7, 2), (333, 0.1, 32, 3), (50, 0.0, 64, 1), (512, 0.1, 20, 1)],
)
def test_steps_are_the_batches_keras_runs(train_limit, validation_split, batch_size, epochs):
    size = size_of(
        "mlp", train_limit=train_limit, validation_split=validation_split,
        batch_size=batch_size, epochs=epochs,
    )  # fmt: skip
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    counter = BatchCounter()
    inputs = np.zeros((train_limit, 2), "float32")
    model.fit(
        inputs, inputs[:, :1], batch_size=batch_size, epochs=epochs,
        validation_split=validation_split, callbacks=[counter], verbose=0,
    )  # fmt: skip
    assert size.steps == counter.batches


# Over HTTP, on an API with no worker: nothing submitted here ever runs.


@pytest.fixture(scope="module")
def idle(tmp_path_factory) -> Iterator[ServiceStack]:
    stack = ServiceStack(FAULTS_DB, tmp_path_factory.mktemp("limits"), PRELOAD_MODELS="false")
    stack.start(worker=False)
    yield stack
    stack.stop()


def gib(count: int) -> str:
    return f"{count / 2**30:.3g} GiB"


TOO_LARGE = [
    pytest.param(
        "mlp", {"depth": 100, "width": 4096}, f"{MAX_PARAMETERS:,} (MAX_PARAMETERS)",
        lambda size: f"{size.network.parameters:,} parameters", id="mlp-parameters",
    ),
    pytest.param(
        "cnn", {"conv_filters": [512] * 4, "batch_size": 8192},
        f"{gib(MAX_ACTIVATION_BYTES)} (MAX_ACTIVATION_BYTES)",
        lambda size: f"{gib(size.activation_bytes)} of activation memory", id="cnn-activations",
    ),
    pytest.param(
        "calculator", {"train_sequences": 200_000, "epochs": 200},
        f"{MAX_TRAINING_STEPS:,} (MAX_TRAINING_STEPS)",
        lambda size: f"{size.steps:,} optimizer steps", id="calculator-steps",
    ),
    pytest.param(
        "mlp", {"batch_size": 1, "epochs": 200}, f"{MAX_TRAINING_STEPS:,} (MAX_TRAINING_STEPS)",
        lambda size: f"{size.steps:,} optimizer steps", id="mlp-steps",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "params", "limit", "estimated"), TOO_LARGE)
def test_a_submission_over_a_limit_is_422_naming_estimate_and_limit(
    idle, kind, params, limit, estimated
):
    before = idle.client.get("/jobs").json()["total"], idle.redis.llen("gpu")
    response = idle.client.post("/jobs", json={"kind": kind, "params": params})
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["code"] == "validation_error"
    assert error["errors"][0]["type"] == "job_too_large"
    assert estimated(size_of(kind, **params)) in error["detail"]
    assert f"over the limit of {limit}" in error["detail"]
    # Nothing stored, nothing queued.
    assert (idle.client.get("/jobs").json()["total"], idle.redis.llen("gpu")) == before


def test_the_advice_in_the_refusal_gets_under_the_limit():
    cnn = {"conv_filters": [512] * 4, "batch_size": 8192}
    largest = MAX_ACTIVATION_BYTES // size_of("cnn", **cnn).bytes_per_example
    with pytest.raises(InvalidJobError, match=f"use batch_size {largest} or less"):
        validated("cnn", **cnn)
    assert size_of("cnn", **(cnn | {"batch_size": largest})).activation_bytes
    with pytest.raises(InvalidJobError):
        validated("cnn", **(cnn | {"batch_size": largest + 1}))

    mlp = {"batch_size": 1, "epochs": 200}
    most = MAX_TRAINING_STEPS // size_of("mlp", **mlp).steps_per_epoch
    with pytest.raises(InvalidJobError, match=f"use at most {most} epochs"):
        validated("mlp", **mlp)
    assert size_of("mlp", **(mlp | {"epochs": most})).steps <= MAX_TRAINING_STEPS
    with pytest.raises(InvalidJobError):
        validated("mlp", **(mlp | {"epochs": most + 1}))


def test_a_sweep_with_one_cell_over_a_limit_queues_nothing(idle):
    def counts() -> tuple[int, int, int]:
        totals = [idle.client.get(path).json()["total"] for path in ("/jobs", "/sweeps")]
        return (*totals, idle.redis.llen("gpu"))

    before = counts()
    body = {"base": {"kind": "mlp", "params": {"width": 4096}}, "grid": {"depth": [1, 4]}}
    response = idle.client.post("/sweeps", json=body)
    assert response.status_code == 422, response.text
    assert "In the cell {'depth': 4}" in response.json()["detail"]
    assert f"{MAX_PARAMETERS:,} (MAX_PARAMETERS)" in response.json()["detail"]
    assert counts() == before


def test_every_preset_and_every_default_is_accepted(idle):
    # calculator-from-cnn starts from the newest stored cnn: a record of one trained with the
    # cnn preset's params (its files are only read when a job runs).
    models = ModelStore(idle.redis, idle.log_dir / "artifacts")
    assert models.newest("cnn") is None
    early = idle.client.post("/presets/calculator-from-cnn/submit")
    assert early.status_code == 409, early.text  # nothing to start from yet: train a cnn first
    assert "No cnn model is stored yet" in early.json()["detail"]
    cnn = validated("cnn", **PRESETS["cnn"].body["params"])
    models.register("0" * 32, "cnn", "1" * 32, cnn, {}, {})
    for name in PRESETS:
        response = idle.client.post(f"/presets/{name}/submit")
        assert response.status_code == 202, (name, response.text)
    for kind in JOB_KINDS:
        response = idle.client.post("/jobs", json={"kind": kind})
        assert response.status_code == 202, (kind, response.text)


WIDE_MLP = {"hidden_units": [4096, 4096]}  # a stored digit model a calculator may fine-tune


@pytest.fixture(scope="module")
def wide_mlp(idle) -> str:
    """The id of a stored mlp model's record (its files are only read when a job runs)."""
    models = ModelStore(idle.redis, idle.log_dir / "artifacts")
    models.register("2" * 32, "mlp", "3" * 32, validated("mlp", **WIDE_MLP), {}, {})
    return "2" * 32


def fine_tuning(model_id: str, batch_size: int) -> dict:
    return {"digit_model": model_id, "fine_tune": True, "batch_size": batch_size}


def test_fine_tuning_a_stored_model_is_bounded_by_that_models_size(idle, wide_mlp):
    classifier = digit_network("mlp", validated("mlp", **WIDE_MLP))
    params = fine_tuning(wide_mlp, 8192)
    size = estimate("calculator", validated("calculator", **params), classifier)
    assert size.activation_bytes > MAX_ACTIVATION_BYTES
    before = idle.client.get("/jobs").json()["total"]
    response = idle.client.post("/jobs", json={"kind": "calculator", "params": params})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"{gib(size.activation_bytes)} of activation memory" in detail
    assert "a smaller stored digit_model" in detail
    assert idle.client.get("/jobs").json()["total"] == before
    largest = MAX_ACTIVATION_BYTES // size.bytes_per_example
    accepted = {"kind": "calculator", "params": fine_tuning(wide_mlp, largest)}
    assert idle.client.post("/jobs", json=accepted).status_code == 202


def test_a_sweep_fine_tuning_a_stored_model_is_bounded_too(idle, wide_mlp):
    submission = SweepSubmission.model_validate(
        {
            "base": {"kind": "calculator", "params": fine_tuning(wide_mlp, 32)},
            "grid": {"batch_size": [32, 8192]},
        }
    )
    celery = create_celery_app(Settings(redis_url=idle.redis_url))
    before = idle.client.get("/jobs").json()["total"], idle.redis.llen("gpu")
    with pytest.raises(InvalidJobError, match=r"In the cell \{'batch_size': 8192\}.*activation"):
        submit_sweep(
            JobStore(idle.redis, heartbeat_ttl_seconds=10), SweepStore(idle.redis), celery,
            "gpu", submission, ModelStore(idle.redis, idle.log_dir / "artifacts"),
        )  # fmt: skip
    assert (idle.client.get("/jobs").json()["total"], idle.redis.llen("gpu")) == before
