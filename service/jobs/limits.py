"""How large a Keras job is, estimated from its params by plain arithmetic (no TensorFlow: the
API checks it before queueing), and the limits a submission must stay within.

Three estimates per job:
- parameters: every weight of the model training/ builds (what `model.count_params()` says,
  non-trainable batch-norm statistics included);
- activation memory of one training batch: the output of every layer for one example (the
  input included; these are what the backward pass keeps), times 2 (each gets a gradient of
  its size), times 4 bytes (float32), times the batch size. Weights and optimizer state are
  not in it: the parameter limit bounds them;
- optimizer steps: epochs x ceil(training examples / batch_size), the examples being what is
  left after the validation split (an upper bound where early stopping may end sooner).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.batch_sizes import default_batch_size, fit_examples

# Every preset and every default stays far below these (docs/training.md).
MAX_PARAMETERS = 50_000_000  # 200 MB of float32 weights, 800 MB with Adam's state and gradients
MAX_ACTIVATION_BYTES = 4 * 2**30  # fits beside the weights on an 8 GB GPU
MAX_TRAINING_STEPS = 500_000  # the mlp's default batch of 32 for 200 epochs on MNIST: 337,600

BYTES_PER_VALUE = 4  # float32
BACKWARD_FACTOR = 2  # an activation and its gradient
MNIST_TRAIN_IMAGES = 60_000
MNIST_SIDE = 28
SVHN_TRAIN_IMAGES = 73_257
SVHN_SIDE = 32
SEQUENCE_LENGTH = 10  # the calculator's images per sequence (training.data.sequences)
DIGITS = 10


@dataclass(frozen=True)
class Network:
    """A model's size: its parameters and the layer outputs of one example's forward pass."""

    parameters: int
    values_per_example: int


@dataclass(frozen=True)
class JobSize:
    """A job's estimates; `network` is None where it is not known (a stored digit model)."""

    network: Network | None
    batch_size: int
    train_examples: int  # examples (calculator: sequences) per epoch after the validation split
    epochs: int
    example: str = "examples"
    smaller_network: str | None = None  # how to make the network smaller, where params can

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_examples / self.batch_size) if self.train_examples else 0

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def bytes_per_example(self) -> int | None:
        if self.network is None or not self.train_examples:
            return None
        return self.network.values_per_example * BYTES_PER_VALUE * BACKWARD_FACTOR

    @property
    def activation_bytes(self) -> int | None:
        """Activation memory of one training batch; None when nothing trains or it is unknown."""
        per_example = self.bytes_per_example
        return None if per_example is None else per_example * self.batch_size


# Networks, layer by layer as training/ builds them


def mlp_network(hidden_units: Sequence[int], dropout_rate: float = 0.0) -> Network:
    """training.mlp.build_mlp: image, scale, flatten, dense (+ dropout) per layer, softmax."""
    pixels = MNIST_SIDE * MNIST_SIDE
    parameters, values, width = 0, 3 * pixels, pixels
    for units in hidden_units:
        parameters += width * units + units
        values += units * (2 if dropout_rate else 1)
        width = units
    parameters += width * DIGITS + DIGITS
    return Network(parameters, values + DIGITS)


def cnn_network(
    conv_filters: Sequence[int], dense_units: int = 128, augment: bool = True
) -> Network:
    """training.cnn.build_mnist_cnn: per block a 3x3 convolution without bias, batch norm
    (4 values per filter), ReLU and 2x2 pooling; then flatten, dropout, dense, dropout,
    softmax."""
    pixels = MNIST_SIDE * MNIST_SIDE
    values = pixels * (4 if augment else 3)  # image, scale, add_channel (, shift)
    parameters, side, channels = 0, MNIST_SIDE, 1
    for filters in conv_filters:
        parameters += 3 * 3 * channels * filters + 4 * filters
        values += 3 * side * side * filters  # convolution, batch norm, ReLU
        side, channels = side // 2, filters
        values += side * side * filters
    flat = side * side * channels
    parameters += flat * dense_units + dense_units + dense_units * DIGITS + DIGITS
    values += 2 * flat + 2 * dense_units + DIGITS  # flatten, dropout, dense, dropout, softmax
    return Network(parameters, values)


SVHN_FILTERS = (9, 36, 49)  # training.svhn_cnn.COURSE_FILTERS


def svhn_network() -> Network:
    """training.svhn_cnn.build_svhn_cnn: 3x3 convolutions with bias, each with 3x3 pooling."""
    pixels = SVHN_SIDE * SVHN_SIDE * 3
    parameters, values, side, channels = 0, 2 * pixels, SVHN_SIDE, 3
    for filters in SVHN_FILTERS:
        parameters += 3 * 3 * channels * filters + filters
        values += side * side * filters
        side, channels = side // 3, filters
        values += side * side * filters
    flat = side * side * channels
    parameters += flat * DIGITS + DIGITS
    return Network(parameters, values + flat + DIGITS)


def calculator_network(classifier: Network) -> Network:
    """training.calculator.build_calculator: the classifier on each of 10 images, a fixed
    linear recurrent unit (10 + 1 weights), and the exact sum distribution."""
    parameters = classifier.parameters + DIGITS + 1
    values = SEQUENCE_LENGTH * (MNIST_SIDE * MNIST_SIDE + classifier.values_per_example)
    values += SEQUENCE_LENGTH * DIGITS + 2 * SEQUENCE_LENGTH + 1  # digits, running sums, sum
    return Network(parameters, values + sum_distribution_values())


def sum_distribution_values() -> int:
    """Values the sum distribution makes for one sequence: at each position after the first,
    10 padded copies of the running total, 10 of them weighed and their 10 partial sums."""
    totals = [9 * position + DIGITS for position in range(1, SEQUENCE_LENGTH)]
    return sum(3 * DIGITS * length for length in totals) + 9 * SEQUENCE_LENGTH + 1


def digit_network(kind: str, params: dict[str, Any]) -> Network | None:
    """The network of a digit model trained by an `mlp` or `cnn` job with `params` (a stored
    model's record); None for other kinds."""
    if kind == "mlp":
        return mlp_network(params.get("hidden_units") or [512], params.get("dropout_rate", 0.2))
    if kind == "cnn":
        return cnn_network(
            params.get("conv_filters") or [32, 64, 128],
            params.get("dense_units", 128),
            params.get("augment", True),
        )
    return None


# Jobs

SMALLER_CNN = "fewer or smaller conv_filters, or fewer dense_units"


def estimate(
    kind: str, params: dict[str, Any], stored_classifier: Network | None = None
) -> JobSize | None:
    """The size of a job of `kind` with validated `params`; None for kinds without Keras.

    A calculator on a stored digit model (`digit_model`) trains nothing unless `fine_tune`;
    then its classifier is `stored_classifier`, and its network unknown (None) without it.
    """
    if kind in ("mlp", "cnn"):
        images = min(params["train_limit"] or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)
        if kind == "mlp":
            network = mlp_network(params["hidden_units"], params["dropout_rate"])
            smaller = "fewer or narrower hidden layers (hidden_units, or depth and width)"
        else:
            network = cnn_network(params["conv_filters"], params["dense_units"], params["augment"])
            smaller = SMALLER_CNN
        examples = fit_examples(images, params["validation_split"])
        batch_size = params["batch_size"] or default_batch_size(examples)  # the cnn's default
        return JobSize(network, batch_size, examples, params["epochs"], smaller_network=smaller)
    if kind == "svhn_cnn":
        images = min(params["train_limit"] or SVHN_TRAIN_IMAGES, SVHN_TRAIN_IMAGES)
        examples = max(0, images - params["validation_size"])
        return JobSize(svhn_network(), params["batch_size"], examples, params["epochs"])
    if kind == "calculator":
        return _calculator(params, stored_classifier)
    return None


def _calculator(params: dict[str, Any], stored_classifier: Network | None) -> JobSize:
    batch_size, epochs = params["batch_size"], params["epochs"]
    if params.get("digit_model"):
        if not params["fine_tune"]:  # kept as it is: nothing trains
            return JobSize(None, batch_size, 0, epochs, "sequences")
        network = calculator_network(stored_classifier) if stored_classifier else None
        smaller = "a smaller stored digit_model"
    else:
        classifier = cnn_network(params["conv_filters"], params["dense_units"], params["augment"])
        network = calculator_network(classifier)
        smaller = SMALLER_CNN
    images = min(params["train_limit"] or MNIST_TRAIN_IMAGES, MNIST_TRAIN_IMAGES)
    sequences = params["train_sequences"] or max(1, images // SEQUENCE_LENGTH)
    examples = fit_examples(sequences, params["validation_split"])
    return JobSize(network, batch_size, examples, epochs, "sequences", smaller)


# Limits

SHORTER_RUN = {
    "mlp": "train_limit",
    "cnn": "train_limit",
    "svhn_cnn": "train_limit",
    "calculator": "train_sequences or train_limit",
}


def over_limits(kind: str, size: JobSize) -> list[str]:
    """What in `size` is over a limit, each with the estimate, the limit and how to get under
    it; empty when the job fits."""
    problems = []
    network = size.network
    if network is not None and network.parameters > MAX_PARAMETERS:
        problems.append(
            f"the model would have an estimated {network.parameters:,} parameters, over the "
            f"limit of {MAX_PARAMETERS:,} (MAX_PARAMETERS); use "
            f"{size.smaller_network or 'a smaller model'}"
        )
    activation_bytes, per_example = size.activation_bytes, size.bytes_per_example
    if activation_bytes is not None and per_example and activation_bytes > MAX_ACTIVATION_BYTES:
        largest_batch = MAX_ACTIVATION_BYTES // per_example
        options = [f"batch_size {largest_batch} or less"] if largest_batch else []
        options += [size.smaller_network] if size.smaller_network else []
        remedy = "use " + ", or ".join(options)
        problems.append(
            f"one training batch would need an estimated {_gib(activation_bytes)} of activation "
            f"memory (batch_size {size.batch_size} x {_mib(per_example)} per "
            f"{size.example[:-1]}: every layer's output and its gradient, float32), over the "
            f"limit of {_gib(MAX_ACTIVATION_BYTES)} (MAX_ACTIVATION_BYTES); {remedy}"
        )
    if size.steps > MAX_TRAINING_STEPS:
        most_epochs = MAX_TRAINING_STEPS // size.steps_per_epoch
        fewer = f"at most {most_epochs} epochs, " if most_epochs else ""
        problems.append(
            f"training would take an estimated {size.steps:,} optimizer steps ({size.epochs} "
            f"epochs x {size.steps_per_epoch:,} batches of {size.batch_size} over "
            f"{size.train_examples:,} training {size.example}), over the limit of "
            f"{MAX_TRAINING_STEPS:,} (MAX_TRAINING_STEPS); use {fewer}a larger batch_size, or "
            f"fewer training {size.example} ({SHORTER_RUN.get(kind, 'train_limit')})"
        )
    return problems


def _gib(count: int) -> str:
    return f"{count / 2**30:.3g} GiB"


def _mib(count: int) -> str:
    return f"{count / 2**20:.3g} MiB"
