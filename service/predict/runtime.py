"""How a loaded Keras model runs for predictions: a function from a batch of inputs to numpy
outputs.

On a CPU, a model with one output runs on LiteRT (TensorFlow Lite's runtime, with its XNNPACK
kernels): converted from the model's traced TensorFlow graph when it is loaded, and served only
if it gives the graph's outputs on check inputs (within `LITE_TOLERANCE`). For the default cnn
it answers one image in 0.18 ms where the graph takes 0.88, and 16 in 2.7 ms against 4.4
(bench/predict_load.py measures the service). Models it cannot convert, models with several
outputs (the calculator) and every model on a GPU run as the traced graph.

With `quantized` (the SERVE_QUANTIZED setting), LiteRT runs the model with its weights in 8
bits (dynamic-range quantization: each image's activations are quantized on the fly, so an
answer does not depend on the other images of its batch, tested): for the default cnn, a batch
of 64 in under a third of the time, with answers that are no longer the model's own to 1e-4
but within `QUANTIZED_TOLERANCE` on the check inputs (on MNIST's test digits, probabilities
moved by up to 0.041 and 3 of 10,000 digits changed: bench/results/quantization.json). A model
that fails that check runs on LiteRT in float32.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from service.predict.batching import Outputs

logger = logging.getLogger(__name__)

LITE_TOLERANCE = 1e-4  # of any output on the check inputs, against the TensorFlow graph
# The same, for 8-bit weights, on probabilities (every served one-output model ends in a
# softmax). The check inputs are noise, where a softmax is near one-hot: this catches a broken
# conversion, not a loss of accuracy on digits (bench/quantization.py measures that).
QUANTIZED_TOLERANCE = 0.05
CHECK_BATCH = 3


def compiled_predict(model: Any, quantized: bool = False) -> Callable[[np.ndarray], Outputs]:
    """The fastest runtime that gives the model's own outputs, or with `quantized` outputs
    close to them (see the module's docstring)."""
    import tensorflow as tf

    signature = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    graph = tf.function(lambda inputs: model(inputs, training=False), input_signature=[signature])

    def graph_predict(inputs: np.ndarray) -> Outputs:
        outputs = graph(tf.constant(inputs, tf.float32))
        if isinstance(outputs, dict):
            return {name: value.numpy() for name, value in outputs.items()}
        return outputs.numpy()

    graph_predict(np.zeros((1, *model.input_shape[1:]), np.float32))  # trace now
    if tf.config.list_physical_devices("GPU") or len(model.outputs) != 1:
        return graph_predict
    lite = _lite_predict(model, graph, graph_predict, quantized=quantized)
    if lite is None and quantized:  # not with 8-bit weights: float LiteRT is still faster
        lite = _lite_predict(model, graph, graph_predict, quantized=False)
    if lite is None:
        logger.info("Serving the model's TensorFlow graph.")
    return lite or graph_predict


def _lite_predict(
    model: Any, graph: Any, reference: Callable[[np.ndarray], Outputs], quantized: bool
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The model on LiteRT (with 8-bit weights if `quantized`), or None when it cannot be
    converted or its outputs differ."""
    interpreter_class = _interpreter_class()
    if interpreter_class is None:
        return None
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        # Frozen first: converted with its variables, some models (the mlp) read them as
        # uninitialised and answer NaN.
        frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        if quantized:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # 8-bit weights
        interpreter = interpreter_class(model_content=converter.convert(), num_threads=1)
        interpreter.allocate_tensors()
    except Exception as error:  # an op LiteRT lacks, say: the graph serves it
        logger.info("Model not converted to LiteRT%s (%s).", " with 8-bit weights" * quantized,
                    error)  # fmt: skip
        return None
    (source,), (result,) = interpreter.get_input_details(), interpreter.get_output_details()
    lock = threading.Lock()  # an interpreter runs one call at a time
    allocated = [tuple(source["shape"])]  # the input shape its tensors are allocated for

    def predict(inputs: np.ndarray) -> np.ndarray:
        inputs = np.asarray(inputs, np.float32)
        with lock:
            if allocated[0] != inputs.shape:
                interpreter.resize_tensor_input(source["index"], inputs.shape)
                interpreter.allocate_tensors()
                allocated[0] = inputs.shape
            interpreter.set_tensor(source["index"], inputs)
            interpreter.invoke()
            return interpreter.get_tensor(result["index"])  # a copy

    check = np.random.default_rng(0).uniform(0, 255, (CHECK_BATCH, *model.input_shape[1:]))
    check[0] = 0
    check = check.astype(np.float32)
    difference = float(  # two batch sizes: the second resizes the interpreter's tensors
        np.max(
            [np.max(np.abs(predict(inputs) - reference(inputs))) for inputs in (check[:1], check)]
        )
    )  # NaN stays NaN
    tolerance = QUANTIZED_TOLERANCE if quantized else LITE_TOLERANCE
    if not difference <= tolerance:
        logger.warning(
            "LiteRT's outputs%s differ from the model's by %.2g (more than %g); not served.",
            " with 8-bit weights" * quantized, difference, tolerance,
        )  # fmt: skip
        return None
    return predict


def _interpreter_class() -> Any:
    """LiteRT's interpreter (the ai-edge-litert package; TensorFlow's own copy is deprecated),
    or None without it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter
