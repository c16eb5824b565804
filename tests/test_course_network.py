"""The course's five-weight network against the same network built in TensorFlow."""

import random

import pytest
import tensorflow as tf

from training.graph.course_network import (
    DEFAULT_WEIGHTS,
    build_course_network,
    train_course_network,
)
from training.progress import TrainingCancelled

from .test_engine import TF_ACTIVATIONS

ACTIVATION_NAMES = sorted(TF_ACTIVATIONS)


def tf_course_network(activation: str, weights: list[float], x: float, y: float):
    """Forward pass in TensorFlow under a tape; returns the tape, the weights and every node."""
    act = TF_ACTIVATIONS[activation]
    w = [tf.Variable(value, dtype=tf.float64) for value in weights]
    with tf.GradientTape(persistent=True) as tape:
        n1_net = w[0] * x
        n1 = act(n1_net)
        n2_net = w[1] * n1
        n2 = act(n2_net)
        n3_net = w[2] * n1
        n3 = act(n3_net)
        w4_n2 = w[3] * n2
        w5_n3 = w[4] * n3
        output_net = w4_n2 + w5_n3
        output = act(output_net)
        loss = 0.5 * (output - y) ** 2
    nodes = {
        "n1.net": n1_net, "n1": n1, "n2.net": n2_net, "n2": n2, "n3.net": n3_net, "n3": n3,
        "w4*n2": w4_n2, "w5*n3": w5_n3, "output.net": output_net, "output": output, "loss": loss,
    }  # fmt: skip
    return tape, w, nodes


def random_case(seed: int) -> tuple[list[float], float, float]:
    rng = random.Random(seed)
    return [rng.uniform(-1.5, 1.5) for _ in range(5)], rng.uniform(-2, 2), rng.uniform(-2, 2)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("seed", range(5))
def test_every_node_value_and_gradient_match_tensorflow(activation, seed):
    weights, x, y = random_case(seed)
    network = build_course_network(activation, weights, x, y)
    network.loss.backward()

    tape, tf_weights, tf_nodes = tf_course_network(activation, weights, x, y)
    loss = tf_nodes["loss"]
    for node in network.nodes:
        if node.name in tf_nodes:
            assert node.value == pytest.approx(float(tf_nodes[node.name]), rel=1e-9, abs=1e-12)
            expected_grad = tape.gradient(loss, tf_nodes[node.name])
            assert node.grad == pytest.approx(float(expected_grad), rel=1e-8, abs=1e-12)
    for node, tf_weight in zip(network.weights, tf_weights, strict=True):
        assert node.grad == pytest.approx(float(tape.gradient(loss, tf_weight)), rel=1e-8)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("seed", range(3))
def test_weight_gradients_match_central_finite_differences(activation, seed):
    weights, x, y = random_case(seed)
    network = build_course_network(activation, weights, x, y)
    network.loss.backward()
    step = 1e-6
    for index, weight in enumerate(network.weights):

        def loss_with(shift: float, index: int = index) -> float:
            shifted = [w + (shift if i == index else 0.0) for i, w in enumerate(weights)]
            return build_course_network(activation, shifted, x, y).loss.value

        numeric = (loss_with(step) - loss_with(-step)) / (2 * step)
        assert weight.grad == pytest.approx(numeric, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_training_matches_gradient_descent_in_tensorflow(activation):
    weights, x, y = random_case(100)
    learning_rate, steps = 0.05, 7
    result = train_course_network(activation, weights, x, y, learning_rate, steps)

    tf_weights = [tf.Variable(w, dtype=tf.float64) for w in weights]
    losses = []
    first_gradients = None
    for _ in range(steps):
        tape, w, nodes = tf_course_network(activation, [float(v) for v in tf_weights], x, y)
        gradients = tape.gradient(nodes["loss"], w)
        first_gradients = first_gradients or [float(g) for g in gradients]
        losses.append(float(nodes["loss"]))
        for weight, gradient in zip(tf_weights, gradients, strict=True):
            weight.assign_sub(learning_rate * gradient)

    assert result["gradients"] == pytest.approx(first_gradients, rel=1e-8)
    assert result["history"] == pytest.approx(losses, rel=1e-8)
    assert result["weights"] == pytest.approx([float(w) for w in tf_weights], rel=1e-8)
    assert result["loss"] == pytest.approx(losses[0], rel=1e-9)


def test_default_job_reduces_the_loss_with_the_course_defaults():
    result = train_course_network(steps=1)
    assert len(result["history"]) == 1
    assert result["final_loss"] < result["loss"]
    names = [node["name"] for node in result["nodes"]]
    assert names[:7] == ["x", "y", "w1", "w2", "w3", "w4", "w5"]
    assert names[-1] == "loss"
    assert result["nodes"][-1]["grad"] == 1.0
    weight_grads = [node["grad"] for node in result["nodes"] if node["op"] == "variable"]
    assert weight_grads == result["gradients"]


def test_all_gradients_are_computed_before_any_weight_changes():
    # With one step, every gradient must come from the initial weights, as TensorFlow's do.
    tape, w, nodes = tf_course_network("relu", list(DEFAULT_WEIGHTS), 2.0, 3.0)
    expected = [float(g) for g in tape.gradient(nodes["loss"], w)]
    result = train_course_network(steps=1)
    assert result["weights"] == pytest.approx(
        [w0 - 0.1 * g for w0, g in zip(DEFAULT_WEIGHTS, expected, strict=True)], rel=1e-12
    )


def test_wrong_number_of_weights_is_explained():
    with pytest.raises(ValueError, match="5 weights"):
        build_course_network("relu", [1.0, 2.0], 1.0, 1.0)


def test_divergence_is_reported_not_returned_as_nan():
    with pytest.raises(ValueError, match="diverged"):
        train_course_network(activation="identity", learning_rate=10.0, steps=200)


def test_reporter_sees_every_step_and_can_cancel():
    class StopAfterThree:
        def __init__(self):
            self.steps = []

        def report(self, **progress):
            self.steps.append(progress["step"])

        def check_cancelled(self):
            if len(self.steps) >= 3:
                raise TrainingCancelled

    reporter = StopAfterThree()
    with pytest.raises(TrainingCancelled):
        train_course_network(steps=10, progress=reporter)
    assert reporter.steps == [1, 2, 3]
