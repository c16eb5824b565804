"""The course's experiments, by name, as bodies ready for POST /jobs or POST /sweeps."""

from typing import Any, Literal

from pydantic import BaseModel

# Five L2 factors spaced evenly on a log scale from 1e-6 to 1e-3.
L2_FACTORS = [1e-6, 5.6e-6, 3.2e-5, 1.8e-4, 1e-3]


class Preset(BaseModel):
    name: str
    description: str
    submit_to: Literal["/jobs", "/sweeps"]
    body: dict[str, Any]


# The course trained its MLPs with plain SGD (the mlp kind's defaults are Adam, for short runs).
COURSE_SGD = {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 128}


def _job(kind: str, **params: Any) -> dict[str, Any]:
    return {"kind": kind, "params": params}


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            name="depth-by-activation",
            description="512-unit MLPs of depth 1, 2 and 3, sigmoid vs ReLU (dropout 0.2, SGD, "
            "10 epochs): the course's six curves.",
            submit_to="/sweeps",
            body={
                "base": _job("mlp", width=512, dropout_rate=0.2, epochs=10, **COURSE_SGD),
                "grid": {"depth": [1, 2, 3], "activation": ["sigmoid", "relu"]},
                "replicates": 1,
            },
        ),
        Preset(
            name="deep-gradients",
            description="32-unit MLPs with 5, 20 and 40 hidden layers and ReLU, tanh, sigmoid "
            "or LeCun's tanh (SGD, lr 0.01, 3 epochs), with per-layer gradient statistics.",
            submit_to="/sweeps",
            body={
                "base": _job("mlp", width=32, dropout_rate=0.0, epochs=3, **COURSE_SGD),
                "grid": {"depth": [5, 20, 40], "activation": ["relu", "tanh", "sigmoid", "lecun"]},
                "replicates": 1,
            },
        ),
        Preset(
            name="l2-regularization",
            description="The 500-300 MLP with five L2 factors from 1e-6 to 1e-3, 3 replicates "
            "each: final accuracy as mean +- std per factor.",
            submit_to="/sweeps",
            body={
                "base": _job(
                    "mlp", hidden_units=[500, 300], dropout_rate=0.0, epochs=40, **COURSE_SGD
                ),
                "grid": {"l2": L2_FACTORS},
                "replicates": 3,
            },
        ),
        Preset(
            name="mlp-64-64",
            description="A 64-64 MLP trained with SGD at learning rate 0.1.",
            submit_to="/jobs",
            body=_job("mlp", hidden_units=[64, 64], **(COURSE_SGD | {"learning_rate": 0.1})),
        ),
        Preset(
            name="mlp-500-300",
            description="The 500-300 MLP trained for 40 epochs.",
            submit_to="/jobs",
            body=_job("mlp", hidden_units=[500, 300], epochs=40, **COURSE_SGD),
        ),
        Preset(
            name="cnn",
            description="The CNN digit classifier; its defaults reach >= 99.3% test accuracy.",
            submit_to="/jobs",
            body=_job("cnn"),
        ),
        Preset(
            name="svhn",
            description="The course's fixed SVHN CNN with early stopping.",
            submit_to="/jobs",
            body=_job("svhn_cnn"),
        ),
        Preset(
            name="calculator",
            description="The MNIST calculator trained on sums only, as in the course.",
            submit_to="/jobs",
            body=_job("calculator"),
        ),
        Preset(
            name="calculator-digit-labels",
            description="The MNIST calculator with per-digit auxiliary labels, its digit "
            "classifier trained from scratch.",
            submit_to="/jobs",
            body=_job("calculator", digit_labels=True),
        ),
        Preset(
            name="calculator-from-cnn",
            description="The MNIST calculator reading each digit with the newest cnn model "
            "(kept as it is): its sums are exact whenever that model reads the digits right. "
            "Needs a stored cnn model; nothing to train, seconds on a CPU.",
            submit_to="/jobs",
            body=_job("calculator", digit_model="cnn"),
        ),
    ]
}
