"""A scalar compute-graph engine with reverse-mode automatic differentiation.

Each operation builds its output node from its parents and attaches a small `_backward`
closure that adds `local_derivative * out.grad` to each parent's gradient. `Node.backward()`
sorts the graph topologically once and runs those closures in reverse order, so a node that
feeds several others receives the sum of all their contributions before its own closure runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

LECUN_SCALE = 1.7159
LECUN_SLOPE = 2.0 / 3.0
LECUN_LEAK = 0.01


class Node:
    """One scalar in the graph: its forward value, its gradient and how it was computed."""

    def __init__(
        self,
        value: float,
        parents: tuple[Node, ...] = (),
        op: str = "constant",
        name: str = "",
    ) -> None:
        self.value = float(value)
        self.grad = 0.0
        self.parents = parents
        self.op = op
        self.name = name
        self._backward: Callable[[], None] = lambda: None

    def __repr__(self) -> str:
        return f"Node(name={self.name!r}, op={self.op!r}, value={self.value}, grad={self.grad})"

    def named(self, name: str) -> Node:
        """Give the node a name (shown in graph listings) and return it, for chaining."""
        self.name = name
        return self

    def __add__(self, other: Node | float) -> Node:
        other = as_node(other)
        out = Node(self.value + other.value, (self, other), "add")

        def _backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other: Node | float) -> Node:
        other = as_node(other)
        out = Node(self.value * other.value, (self, other), "mul")

        def _backward() -> None:
            self.grad += other.value * out.grad
            other.grad += self.value * out.grad

        out._backward = _backward
        return out

    def __neg__(self) -> Node:
        return self * -1.0

    def __sub__(self, other: Node | float) -> Node:
        return self + (-as_node(other))

    def __radd__(self, other: float) -> Node:
        return self + other

    def __rmul__(self, other: float) -> Node:
        return self * other

    def __rsub__(self, other: float) -> Node:
        return as_node(other) - self

    def _unary(self, op: str, value: float, local_derivative: float) -> Node:
        """Build the output of a one-input operation whose derivative at this point is known."""
        out = Node(value, (self,), op)

        def _backward() -> None:
            self.grad += local_derivative * out.grad

        out._backward = _backward
        return out

    def relu(self) -> Node:
        # The derivative at exactly 0 is taken as 0, as TensorFlow does.
        return self._unary("relu", max(self.value, 0.0), 1.0 if self.value > 0 else 0.0)

    def sigmoid(self) -> Node:
        s = _stable_sigmoid(self.value)
        return self._unary("sigmoid", s, s * (1.0 - s))

    def tanh(self) -> Node:
        t = math.tanh(self.value)
        return self._unary("tanh", t, 1.0 - t * t)

    def lecun_tanh(self) -> Node:
        """LeCun's scaled tanh, 1.7159 * tanh(2x/3) + 0.01x."""
        t = math.tanh(LECUN_SLOPE * self.value)
        value = LECUN_SCALE * t + LECUN_LEAK * self.value
        derivative = LECUN_SCALE * LECUN_SLOPE * (1.0 - t * t) + LECUN_LEAK
        return self._unary("lecun_tanh", value, derivative)

    def identity(self) -> Node:
        return self._unary("identity", self.value, 1.0)

    def backward(self) -> None:
        """Set this node's gradient to 1 and propagate gradients to every node it depends on.

        Gradients accumulate, as in any reverse-mode engine: build a fresh graph (or reset
        `grad` to 0) before calling this a second time.
        """
        self.grad = 1.0
        for node in reversed(topological_order(self)):
            node._backward()


def as_node(value: Node | float) -> Node:
    """Wrap a plain number as a constant node; pass nodes through."""
    return value if isinstance(value, Node) else Node(value)


def constant(value: float, name: str = "") -> Node:
    """A fixed input of the graph, such as x or the target y."""
    return Node(value, op="constant", name=name)


def variable(value: float, name: str = "") -> Node:
    """A trainable parameter, such as a weight."""
    return Node(value, op="variable", name=name)


def squared_error(prediction: Node, target: Node | float) -> Node:
    """The loss 1/2 (prediction - target)^2, as one node whose inputs are both operands."""
    target = as_node(target)
    difference = prediction.value - target.value
    out = Node(0.5 * difference * difference, (prediction, target), "squared_error")

    def _backward() -> None:
        prediction.grad += difference * out.grad
        target.grad -= difference * out.grad

    out._backward = _backward
    return out


ACTIVATIONS: dict[str, Callable[[Node], Node]] = {
    "relu": Node.relu,
    "sigmoid": Node.sigmoid,
    "tanh": Node.tanh,
    "lecun": Node.lecun_tanh,
    "identity": Node.identity,
}


def activation(name: str) -> Callable[[Node], Node]:
    """The activation function called `name`, with a helpful error for unknown names."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}. Expected one of {sorted(ACTIVATIONS)}."
        ) from None


def topological_order(root: Node) -> list[Node]:
    """Every node `root` depends on, each after all of its parents (iterative depth-first)."""
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((parent, False) for parent in reversed(node.parents))
    return order


def _stable_sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
