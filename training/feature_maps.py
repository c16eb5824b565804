"""What each convolutional filter of a model makes of one input."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


def convolution_outputs(model: keras.Model, inputs: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """For one input (without the batch axis), each Conv2D layer's name and its output
    (height, width, filters), in the order the layers run."""
    convolutions = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    if not convolutions:
        raise ValueError(f"Model {model.name!r} has no convolutional layers.")
    probe = keras.Model(model.inputs, [layer.output for layer in convolutions])
    outputs = probe(inputs[np.newaxis].astype("float32"), training=False)
    if len(convolutions) == 1:
        outputs = [outputs]
    return [
        (layer.name, np.asarray(output)[0])
        for layer, output in zip(convolutions, outputs, strict=True)
    ]
