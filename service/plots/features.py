"""What each convolutional filter of a stored model makes of one image (imports TensorFlow:
only the feature-maps plot imports this module, on first use)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from keras import layers

from service.predict.models import load_stored_model

Extractor = Callable[[np.ndarray], list[tuple[str, np.ndarray]]]


# Small: each entry keeps its own copy of a model alive, outside MODEL_CACHE_BYTES and whatever
# the prediction cache unloads (a deleted model's too, until two others push it out).
@functools.lru_cache(maxsize=2)
def feature_extractor(path: Path) -> Extractor:
    """For the stored model at `path` (loaded once per process by `load_stored_model`, apart
    from the copy the predictions' batcher holds): a function from one input (without the
    batch axis) to each Conv2D layer's name and output (height, width, filters), in the order
    the layers run."""
    model = load_stored_model(path)
    convolutions = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    if not convolutions:
        raise ValueError(f"Model {model.name!r} has no convolutional layers.")
    probe = keras.Model(model.inputs, [layer.output for layer in convolutions])
    names = [layer.name for layer in convolutions]

    def extract(inputs: np.ndarray) -> list[tuple[str, np.ndarray]]:
        outputs = probe([inputs[np.newaxis].astype("float32")], training=False)
        if len(names) == 1:
            outputs = [outputs]
        return [(name, np.asarray(output)[0]) for name, output in zip(names, outputs, strict=True)]

    return extract
