"""The course's five-weight network on the compute-graph engine, trained by gradient descent.

One input x feeds neuron n1 through w1; n1 feeds n2 (w2) and n3 (w3); n2 and n3 feed the output
neuron (w4, w5). No biases; the same activation on every neuron; loss 1/2 (output - y)^2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from training.graph.engine import Node, activation, constant, squared_error
from training.progress import ProgressReporter, SilentReporter

WEIGHT_COUNT = 5
DEFAULT_WEIGHTS = (2.0, 1.0, 2.0, 4.0, 1.0)


@dataclass
class CourseNetwork:
    """One forward pass of the network: the weight nodes, the output, the loss and every node."""

    weights: list[Node]
    output: Node
    loss: Node
    nodes: list[Node]  # inputs and weights first, then each node in the order it is computed


def build_course_network(
    activation_name: str, weights: Sequence[float], x: float, y: float
) -> CourseNetwork:
    """Build the graph for one input and target, with every node named as in the course."""
    if len(weights) != WEIGHT_COUNT:
        raise ValueError(
            f"The course network has {WEIGHT_COUNT} weights (w1..w5), got {len(weights)}: "
            f"{list(weights)}. Pass five numbers, e.g. {list(DEFAULT_WEIGHTS)}."
        )
    act = activation(activation_name)
    x_node = constant(x, "x")
    y_node = constant(y, "y")
    w1, w2, w3, w4, w5 = (
        Node(value, op="variable", name=f"w{i}") for i, value in enumerate(weights, start=1)
    )
    n1_net = (w1 * x_node).named("n1.net")
    n1 = act(n1_net).named("n1")
    n2_net = (w2 * n1).named("n2.net")
    n2 = act(n2_net).named("n2")
    n3_net = (w3 * n1).named("n3.net")
    n3 = act(n3_net).named("n3")
    w4_n2 = (w4 * n2).named("w4*n2")
    w5_n3 = (w5 * n3).named("w5*n3")
    output_net = (w4_n2 + w5_n3).named("output.net")
    output = act(output_net).named("output")
    loss = squared_error(output, y_node).named("loss")
    weight_nodes = [w1, w2, w3, w4, w5]
    computed = [n1_net, n1, n2_net, n2, n3_net, n3, w4_n2, w5_n3, output_net, output, loss]
    return CourseNetwork(
        weights=weight_nodes,
        output=output,
        loss=loss,
        nodes=[x_node, y_node, *weight_nodes, *computed],
    )


def describe_nodes(network: CourseNetwork) -> list[dict[str, Any]]:
    """Each node's name, operation, inputs, forward value and gradient, for checking by hand."""
    return [
        {
            "name": node.name,
            "op": node.op,
            "inputs": [parent.name for parent in node.parents],
            "value": node.value,
            "grad": node.grad,
        }
        for node in network.nodes
    ]


def train_course_network(
    activation: str = "relu",
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    x: float = 2.0,
    y: float = 3.0,
    learning_rate: float = 0.1,
    steps: int = 1,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Run `steps` steps of gradient descent on one (x, y) pair.

    Each step builds the graph from the current weights, runs the forward pass, computes every
    gradient, and only then updates all weights at once.

    Returns the first step's `output`, `loss`, `gradients` (dL/dw1..dL/dw5) and `nodes`; the
    `weights` after all steps; `history`, the loss at each step before its update; and
    `final_output` / `final_loss` with the final weights.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}.")
    progress = progress or SilentReporter()
    current_weights = [float(w) for w in weights]
    history: list[float] = []
    first_step: dict[str, Any] = {}
    for step in range(1, steps + 1):
        progress.check_cancelled()
        network = build_course_network(activation, current_weights, x, y)
        network.loss.backward()
        _raise_if_diverged(network.loss.value, step, learning_rate)
        gradients = [weight.grad for weight in network.weights]
        if step == 1:
            first_step = {
                "output": network.output.value,
                "loss": network.loss.value,
                "gradients": gradients,
                "nodes": describe_nodes(network),
            }
        history.append(network.loss.value)
        current_weights = [
            w - learning_rate * g for w, g in zip(current_weights, gradients, strict=True)
        ]
        progress.report(step=step, steps=steps, loss=network.loss.value)

    final = build_course_network(activation, current_weights, x, y)
    _raise_if_diverged(final.loss.value, steps + 1, learning_rate)
    return {
        **first_step,
        "weights": current_weights,
        "history": history,
        "final_output": final.output.value,
        "final_loss": final.loss.value,
    }


def _raise_if_diverged(loss: float, step: int, learning_rate: float) -> None:
    if not math.isfinite(loss):
        raise ValueError(
            f"Training diverged: the loss is {loss} at step {step}. "
            f"Lower learning_rate (now {learning_rate}) or use fewer steps."
        )
