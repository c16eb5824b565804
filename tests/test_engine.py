"""The compute-graph engine against TensorFlow's autodiff and finite differences."""

import math
import random

import pytest
import tensorflow as tf

from training.graph.engine import (
    ACTIVATIONS,
    Node,
    activation,
    constant,
    squared_error,
    topological_order,
    variable,
)

# The activations as the issue defines them, written independently in TensorFlow.
TF_ACTIVATIONS = {
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "tanh": tf.tanh,
    "lecun": lambda x: 1.7159 * tf.tanh(2.0 * x / 3.0) + 0.01 * x,
    "identity": tf.identity,
}
RTOL = 1e-9


def test_every_engine_activation_has_a_reference():
    assert set(ACTIVATIONS) == set(TF_ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(TF_ACTIVATIONS))
def test_activation_value_and_derivative_match_tensorflow(name):
    rng = random.Random(name)
    for _ in range(50):
        x_value = rng.uniform(-6.0, 6.0)
        x = variable(x_value)
        y = activation(name)(x)
        y.backward()

        x_tf = tf.Variable(x_value, dtype=tf.float64)
        with tf.GradientTape() as tape:
            y_tf = TF_ACTIVATIONS[name](x_tf)
        assert y.value == pytest.approx(float(y_tf), rel=RTOL, abs=1e-12)
        assert x.grad == pytest.approx(float(tape.gradient(y_tf, x_tf)), rel=RTOL, abs=1e-12)


def _random_expression(seed: int, shift: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """Build the same random expression in the engine and in TensorFlow, reusing nodes often.

    `shift` moves the inputs without changing the expression, for finite differences.
    """
    rng = random.Random(seed)
    inputs = [rng.uniform(-2.0, 2.0) + delta for delta in shift]
    target = rng.uniform(-2.0, 2.0)
    engine_vars = [variable(v, f"v{i}") for i, v in enumerate(inputs)]
    tf_vars = [tf.Variable(v, dtype=tf.float64) for v in inputs]
    with tf.GradientTape() as tape:
        engine_pool: list[Node] = list(engine_vars)
        tf_pool = list(tf_vars)
        for _ in range(12):
            op = rng.choice(["add", "mul", "sub", "scale", *sorted(TF_ACTIVATIONS)])
            i, j = rng.randrange(len(engine_pool)), rng.randrange(len(engine_pool))
            a, b, ta, tb = engine_pool[i], engine_pool[j], tf_pool[i], tf_pool[j]
            if op == "add":
                engine_pool.append(a + b)
                tf_pool.append(ta + tb)
            elif op == "mul":
                engine_pool.append(a * b)
                tf_pool.append(ta * tb)
            elif op == "sub":
                engine_pool.append(a - b)
                tf_pool.append(ta - tb)
            elif op == "scale":
                factor = rng.uniform(-1.5, 1.5)
                engine_pool.append(factor * a + 0.5)
                tf_pool.append(factor * ta + 0.5)
            else:
                engine_pool.append(activation(op)(a))
                tf_pool.append(TF_ACTIVATIONS[op](ta))
        loss = squared_error(engine_pool[-1] + engine_pool[-2], constant(target))
        tf_loss = 0.5 * (tf_pool[-1] + tf_pool[-2] - target) ** 2
    return engine_vars, loss, tape.gradient(tf_loss, tf_vars), tf_loss


@pytest.mark.parametrize("seed", range(25))
def test_random_graphs_match_gradient_tape(seed):
    engine_vars, loss, tf_grads, tf_loss = _random_expression(seed)
    loss.backward()
    assert loss.value == pytest.approx(float(tf_loss), rel=RTOL, abs=1e-12)
    for node, tf_grad in zip(engine_vars, tf_grads, strict=True):
        expected = 0.0 if tf_grad is None else float(tf_grad)
        assert node.grad == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_a_node_used_twice_receives_both_contributions():
    x_value = 0.7
    x = variable(x_value)
    out = x * x + x.tanh() * x
    out.backward()

    x_tf = tf.Variable(x_value, dtype=tf.float64)
    with tf.GradientTape() as tape:
        out_tf = x_tf * x_tf + tf.tanh(x_tf) * x_tf
    assert x.grad == pytest.approx(float(tape.gradient(out_tf, x_tf)), rel=RTOL)


@pytest.mark.parametrize("seed", range(10))
def test_gradients_match_central_finite_differences(seed):
    engine_vars, loss, _, _ = _random_expression(seed)
    loss.backward()
    step = 1e-6
    for index, node in enumerate(engine_vars):
        plus = tuple(step if i == index else 0.0 for i in range(3))
        minus = tuple(-step if i == index else 0.0 for i in range(3))
        loss_plus = _random_expression(seed, plus)[1].value
        loss_minus = _random_expression(seed, minus)[1].value
        numeric = (loss_plus - loss_minus) / (2 * step)
        assert node.grad == pytest.approx(numeric, rel=1e-5, abs=1e-6)


def test_topological_order_puts_every_node_after_its_parents():
    _, loss, _, _ = _random_expression(3)
    order = topological_order(loss)
    position = {id(node): i for i, node in enumerate(order)}
    assert len(position) == len(order)
    for node in order:
        for parent in node.parents:
            assert position[id(parent)] < position[id(node)]


def test_deep_chains_do_not_hit_the_recursion_limit():
    x = variable(0.1)
    out = x
    for _ in range(5000):
        out = out.identity()
    out.backward()
    assert x.grad == 1.0


def test_sigmoid_does_not_overflow_for_large_inputs():
    for value in (-1000.0, 1000.0):
        node = variable(value)
        out = node.sigmoid()
        out.backward()
        assert math.isfinite(out.value)
        assert math.isfinite(node.grad)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="Expected one of"):
        activation("softplus")
