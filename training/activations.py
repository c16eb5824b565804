"""Hidden-layer activations by name: Keras' own plus LeCun's scaled tanh."""

from collections.abc import Callable

import keras

from training.activation_names import HIDDEN_ACTIVATIONS, KERAS_HIDDEN_ACTIVATIONS


@keras.saving.register_keras_serializable(package="digits")
def lecun_tanh(x):
    """LeCun's scaled tanh, 1.7159 tanh(2x/3) + 0.01x (the small linear term avoids flat spots)."""
    return 1.7159 * keras.ops.tanh(2.0 * x / 3.0) + 0.01 * x


def hidden_activation(name: str) -> Callable | str:
    """What to pass as a Keras layer's `activation` for `name`."""
    if name == "lecun":
        return lecun_tanh
    if name not in KERAS_HIDDEN_ACTIVATIONS:
        raise ValueError(
            f"Unknown hidden activation {name!r}. Expected one of: {', '.join(HIDDEN_ACTIVATIONS)}."
        )
    return name
