"""Each job kind's parameters: the API's contract, validated before anything is queued.

Defaults here equal the defaults of the training functions (a test holds them together);
bounds keep one request from occupying a worker for days.
"""

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.activation_names import HIDDEN_ACTIVATIONS
from training.batch_sizes import fit_examples

MAX_BACKPROP_STEPS = 100_000
MAX_EPOCHS = 200
MAX_HIDDEN_LAYERS = 100
MAX_WIDTH = 4096
HiddenActivation = Literal[HIDDEN_ACTIVATIONS]


class KindParams(BaseModel):
    """Base for every kind's parameters: unknown names, non-finite numbers and values of
    another JSON type than the parameter's (0 for false, "1" for 1) are rejected, as the API
    document's schema says."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


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


class TrainingParams(KindParams):
    """What every Keras training kind accepts."""

    batch_size: int = Field(128, ge=1, le=8192, description="Examples per gradient step.")
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="Passes over the training data.")
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Makes a CPU run repeatable when set."
    )
    mixed_precision: bool = Field(False, description="float16 compute on GPUs that support it.")


class MnistParams(TrainingParams):
    """Training on MNIST, with the last part of the training data held out for validation."""

    validation_split: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the training data held out for val_ metrics."
    )
    train_limit: int | None = Field(
        None, ge=1, le=60000, description="Train on only the first N training examples."
    )
    test_limit: int | None = Field(
        None, ge=1, le=10000, description="Test on only the first N test examples."
    )

    @model_validator(mode="after")
    def _leaves_examples_to_train_on(self) -> Self:
        limit, split = self.train_limit, self.validation_split
        if limit is not None and fit_examples(limit, split) < 1:
            raise ValueError(
                f"train_limit={self.train_limit} with validation_split={self.validation_split} "
                "leaves no example to train on; raise train_limit or lower validation_split."
            )
        return self


class MlpParams(MnistParams):
    """A dense network on MNIST. Give `hidden_units`, or `depth` and `width`; default [512]."""

    hidden_units: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] | None = Field(
        None,
        min_length=1,
        max_length=MAX_HIDDEN_LAYERS,
        description="Width of each hidden layer, e.g. [500, 300].",
    )
    depth: int | None = Field(
        None, ge=1, le=MAX_HIDDEN_LAYERS, exclude=True, description="Hidden layers (with width)."
    )
    width: int | None = Field(
        None, ge=1, le=MAX_WIDTH, exclude=True, description="Units per hidden layer (with depth)."
    )
    activation: HiddenActivation = Field("relu", description="Activation of the hidden layers.")
    first_activation: HiddenActivation | None = Field(
        None, description="A different activation for the first hidden layer."
    )
    dropout_rate: float = Field(0.2, ge=0, lt=1, description="Dropout after each hidden layer.")
    l2: float = Field(0.0, ge=0, le=1, description="L2 weight decay on hidden-layer kernels.")
    optimizer: Literal["sgd", "adam", "adadelta", "rmsprop"] = "adam"
    learning_rate: float = Field(0.002, gt=0, le=10)
    batch_size: int = Field(32, ge=1, le=8192, description="Examples per gradient step.")

    @model_validator(mode="after")
    def _one_way_to_give_layers(self) -> Self:
        by_shape = self.depth is not None or self.width is not None
        if self.hidden_units is not None and by_shape:
            raise ValueError("Give hidden_units, or depth and width, not both.")
        if by_shape:
            if self.depth is None or self.width is None:
                raise ValueError("depth and width go together: give both, e.g. depth=5, width=32.")
            self.hidden_units = [self.width] * self.depth
        elif self.hidden_units is None:
            self.hidden_units = [512]
        return self


class CnnParams(MnistParams):
    """The MNIST digit classifier: 3x3 conv + batch norm + ReLU + 2x2 pooling blocks, then dense."""

    conv_filters: list[Annotated[int, Field(ge=1, le=512)]] = Field(
        [32, 64, 128],
        min_length=1,
        max_length=4,
        description="Filters of each convolutional block (at most 4: the image halves each time).",
    )
    dense_units: int = Field(128, ge=1, le=MAX_WIDTH)
    dropout_rate: float = Field(0.2, ge=0, lt=1)
    augment: bool = Field(
        True,
        description="Distort up to half the training images before preparing them (slant, "
        "rotation, aspect, wobble, pen width, low resolution, blur, noise) and shift them by up "
        "to 2 pixels, in proportion to (epochs - 1) / epochs: a 1-epoch run, in which every "
        "image is new to the model, trains on the images as they are.",
    )
    learning_rate: float = Field(
        0.002, gt=0, le=10, description="Adam's initial rate (cosine decay)."
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=8192,
        description="Examples per gradient step. Default: 128, or on small training sets the "
        "largest power of two down to 16 that makes an epoch at least 250 steps (the result's "
        "batch_size_used).",
    )
    epochs: int = Field(12, ge=1, le=MAX_EPOCHS)


class CalculatorParams(MnistParams):
    """10 MNIST images -> their sum and running sums; test sequences are the test set in
    consecutive groups of ten. Each image is read by a digit classifier (the cnn kind's
    network, or a stored digit model); the sums are exact arithmetic on its readings."""

    digit_labels: bool = Field(
        False,
        description="Also train on each image's digit (auxiliary labels); the course: sums only.",
    )
    digit_model: str | None = Field(
        None,
        max_length=63,
        description="Read digits with this stored digit model: an id, an alias, or a kind (cnn, "
        "mlp: its newest model). Kept as it is unless fine_tune: then nothing is trained and "
        "epochs do not apply. Default: a new classifier with conv_filters and dense_units.",
    )
    fine_tune: bool = Field(False, description="With digit_model: train it further.")
    train_sequences: int | None = Field(
        None,
        ge=1,
        le=200_000,
        description="Training sequences to draw; default: as many as the training images make.",
    )
    conv_filters: list[Annotated[int, Field(ge=1, le=512)]] = Field(
        [32, 64, 128], min_length=1, max_length=4, description="A new classifier's conv blocks."
    )
    dense_units: int = Field(128, ge=1, le=MAX_WIDTH)
    dropout_rate: float = Field(0.4, ge=0, lt=1)
    augment: bool = Field(
        False, description="Distort half the training images and shift them (slows learning)."
    )
    optimizer: Literal["sgd", "adam", "adadelta", "rmsprop"] = "adam"
    learning_rate: float = Field(0.003, gt=0, le=10, description="Initial rate (cosine decay).")
    batch_size: int = Field(32, ge=1, le=8192, description="Sequences per gradient step.")
    test_limit: int | None = Field(
        None, ge=10, le=10000, description="Test on only the first N test images (N >= 10)."
    )


class SvhnParams(TrainingParams):
    """The course's fixed SVHN CNN (9, 36, 49 filters of 3x3, each with 3x3 max pooling)."""

    validation_size: int = Field(
        7326, ge=1, le=73256, description="Validation images drawn at random from training."
    )
    patience: int = Field(3, ge=1, le=50, description="Early-stopping patience on val_loss.")
    optimizer: Literal["sgd", "adam", "adadelta", "rmsprop"] = "adam"
    learning_rate: float = Field(0.001, gt=0, le=10)
    epochs: int = Field(
        30, ge=1, le=MAX_EPOCHS, description="At most; early stopping may end sooner."
    )
    train_limit: int | None = Field(
        None, ge=2, le=73257, description="Use only the first N training images."
    )
    test_limit: int | None = Field(
        None, ge=1, le=26032, description="Test on only the first N test images."
    )

    @model_validator(mode="after")
    def _leaves_images_to_train_on(self) -> Self:
        if self.train_limit is not None and self.validation_size >= self.train_limit:
            raise ValueError(
                f"validation_size={self.validation_size} leaves nothing to train on with "
                f"train_limit={self.train_limit}; lower validation_size or raise train_limit."
            )
        return self
