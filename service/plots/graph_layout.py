"""A layered layout of a compute graph (Sugiyama style), in inches, with no pixels involved.

Each node's layer is the longest path to it from the graph's inputs, so inputs sit in the
leftmost column and the loss in the rightmost. An edge that spans several layers passes
through a dummy slot in every column between, so every edge runs only between neighbouring
columns or straight along its own slot: no edge crosses a box. Nodes are ordered within their
column by barycentre sweeps (fewer crossings) and placed vertically near the mean of their
neighbours (straighter edges), keeping the order and a gap between slots.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BOX_WIDTH = 0.95  # inches, unless the caller needs wider boxes for its text
BOX_HEIGHT = 0.74
COLUMN_GAP = 0.3  # between the boxes of neighbouring columns: where edges turn
SLOT_GAP = 0.16  # between slots of one column
LANE = 0.06  # the height a passing edge takes in a column
PART_GAP = 0.4  # between the unconnected parts of a graph
SWEEPS = 12  # barycentre sweeps (each down then up); the best order seen is kept
PLACEMENT_ROUNDS = 30


@dataclass(frozen=True)
class Box:
    """A node's box: its centre and size, in inches."""

    x: float
    y: float
    width: float
    height: float

    @property
    def left(self) -> float:
        return self.x - self.width / 2

    @property
    def right(self) -> float:
        return self.x + self.width / 2

    @property
    def bottom(self) -> float:
        return self.y - self.height / 2

    @property
    def top(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True)
class Edge:
    """An edge from `source` (an input) to `target` (the node it feeds), drawn as the polyline
    through `points`: from the source box's right side to the target box's left side."""

    source: str
    target: str
    points: list[tuple[float, float]]


@dataclass
class GraphLayout:
    layers: dict[str, int]  # each node's layer: the longest path to it from an input
    order: list[list[str]]  # each layer's slots top to bottom ("" marks a passing edge)
    boxes: dict[str, Box]
    edges: list[Edge]
    box_width: float = BOX_WIDTH
    width: float = 0.0  # of the drawing, in inches
    height: float = 0.0
    crossings: int = 0  # edge crossings between neighbouring columns

    def column_x(self, layer: int) -> float:
        """The x of the centre of `layer`'s column."""
        return self.box_width / 2 + layer * (self.box_width + COLUMN_GAP)


def node_layers(nodes: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Each node's layer: 0 for a node with no inputs, else 1 + the largest layer of its inputs.
    Nodes may come in any order; a cycle or an input that is not a node is a ValueError."""
    inputs = {node["name"]: list(node["inputs"]) for node in nodes}
    if len(inputs) != len(nodes):
        raise ValueError("Each node of a compute graph needs a name of its own; names repeat.")
    for name, sources in inputs.items():
        missing = [source for source in sources if source not in inputs]
        if missing:
            raise ValueError(
                f"Node {name!r} has inputs {missing} that are not nodes of the graph; every "
                f"input must be listed as a node (the job's result lists them all)."
            )
    layers: dict[str, int] = {}
    for start in inputs:
        stack = [(start, False)]
        visiting: set[str] = set()
        while stack:  # iterative depth-first: deep graphs must not hit the recursion limit
            name, ready = stack.pop()
            if name in layers:
                continue
            if ready:
                layers[name] = 1 + max((layers[source] for source in inputs[name]), default=-1)
                visiting.discard(name)
                continue
            if name in visiting:
                raise ValueError(f"The compute graph has a cycle through node {name!r}.")
            visiting.add(name)
            stack.append((name, True))
            stack.extend((source, False) for source in inputs[name] if source not in layers)
    return layers


def layout_graph(nodes: Sequence[dict[str, Any]], box_width: float = BOX_WIDTH) -> GraphLayout:
    """Lay out `nodes` (each with `name` and `inputs`) in columns by layer, left to right, in
    boxes `box_width` inches wide."""
    layers = node_layers(nodes)
    count = max(layers.values(), default=-1) + 1
    # Slots: node names, and one dummy per column an edge passes (keyed by edge and layer).
    order: list[list[str]] = [[] for _ in range(count)]
    for node in nodes:
        order[layers[node["name"]]].append(node["name"])
    chains: list[tuple[str, str, list[str]]] = []  # (source, target, slots along the way)
    for node in nodes:
        for index, source in enumerate(node["inputs"]):
            slots = [source]
            for layer in range(layers[source] + 1, layers[node["name"]]):
                dummy = f"\0{source}\0{node['name']}\0{index}\0{layer}"
                order[layer].append(dummy)
                slots.append(dummy)
            chains.append((source, node["name"], [*slots, node["name"]]))
    links = [(a, b) for _, _, slots in chains for a, b in itertools.pairwise(slots)]
    order, y, crossings = _place_components(order, links)
    top = max((y[slot] + _height(slot) / 2 for slot in y), default=0.0)
    bottom = min((y[slot] - _height(slot) / 2 for slot in y), default=0.0)
    layout = GraphLayout(layers=layers, order=[[_name(s) for s in column] for column in order],
                         boxes={}, edges=[], box_width=box_width,
                         crossings=crossings)  # fmt: skip
    for layer, column in enumerate(order):
        for slot in column:
            if not _is_dummy(slot):
                layout.boxes[slot] = Box(layout.column_x(layer), y[slot] - bottom, box_width,
                                         BOX_HEIGHT)  # fmt: skip
    layout.width = layout.column_x(count - 1) + box_width / 2 if count else 0.0
    layout.height = top - bottom
    ports = _ports(chains, y)
    for index, (source, target, slots) in enumerate(chains):
        start, end = ports[(index, "out")], ports[(index, "in")]
        points = [(layout.boxes[source].right, start - bottom)]
        for dummy in slots[1:-1]:
            x, level = layout.column_x(int(dummy.rsplit("\0", 1)[1])), y[dummy] - bottom
            points += [(x - box_width / 2, level), (x + box_width / 2, level)]
        points.append((layout.boxes[target].left, end - bottom))
        layout.edges.append(Edge(source, target, points))
    return layout


def _place_components(
    order: list[list[str]], links: list[tuple[str, str]]
) -> tuple[list[list[str]], dict[str, float], int]:
    """Order and place each connected part of the graph on its own, the parts stacked top to
    bottom in the order of their first node, column by column (a part placed with the others
    would drift as far from them as its own nodes pull each other)."""
    part = {slot: slot for column in order for slot in column}

    def root(slot: str) -> str:
        while part[slot] != slot:
            part[slot] = part[part[slot]]
            slot = part[slot]
        return slot

    for a, b in links:
        part[root(a)] = root(b)
    first_seen: dict[str, int] = {}
    for slot in part:
        first_seen.setdefault(root(slot), len(first_seen))
    merged: list[list[str]] = [[] for _ in order]
    y: dict[str, float] = {}
    crossings, top = 0, 0.0
    for key in sorted(first_seen, key=first_seen.get):
        members = [[slot for slot in column if root(slot) == key] for column in order]
        inside = [(a, b) for a, b in links if root(a) == key]
        members, count = _order_by_barycentres(members, inside)
        placed = _place_vertically(members, inside)
        shift = top - max(placed[slot] + _height(slot) / 2 for slot in placed)
        y.update({slot: value + shift for slot, value in placed.items()})
        top = min(y[slot] - _height(slot) / 2 for slot in placed) - PART_GAP
        crossings += count
        for column, more in zip(merged, members, strict=True):
            column.extend(more)
    return merged, y, crossings


def _is_dummy(slot: str) -> bool:
    return slot.startswith("\0")


def _name(slot: str) -> str:
    return "" if _is_dummy(slot) else slot


def _height(slot: str) -> float:
    return LANE if _is_dummy(slot) else BOX_HEIGHT


def _crossings(order: list[list[str]], links: list[tuple[str, str]]) -> int:
    """Pairs of links between neighbouring columns that cross."""
    position = {slot: index for column in order for index, slot in enumerate(column)}
    total = 0
    by_layer: dict[int, list[tuple[int, int]]] = {}
    layer_of = {slot: layer for layer, column in enumerate(order) for slot in column}
    for a, b in links:
        by_layer.setdefault(layer_of[a], []).append((position[a], position[b]))
    for pairs in by_layer.values():
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                total += (a1 - a2) * (b1 - b2) < 0
    return total


def _order_by_barycentres(
    order: list[list[str]], links: list[tuple[str, str]]
) -> tuple[list[list[str]], int]:
    """Reorder each column by the mean position of its neighbours in the column just swept,
    down then up, keeping the order with the fewest crossings (the first such on a tie)."""
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for a, b in links:
        after.setdefault(a, []).append(b)
        before.setdefault(b, []).append(a)
    best = [list(column) for column in order]
    fewest = _crossings(best, links)
    current = [list(column) for column in best]
    for _ in range(SWEEPS):
        for layers, neighbours in (
            (range(1, len(current)), before),
            (range(len(current) - 2, -1, -1), after),
        ):
            for layer in layers:
                position = {slot: index for column in current for index, slot in enumerate(column)}
                column = current[layer]

                def barycentre(slot: str, index: int, neighbours=neighbours, position=position):
                    linked = neighbours.get(slot, [])
                    if not linked:
                        return index  # no neighbour on that side: stays where it is
                    return sum(position[other] for other in linked) / len(linked)

                keys = {slot: barycentre(slot, index) for index, slot in enumerate(column)}
                column.sort(key=lambda slot: keys[slot])  # stable: ties keep their order
            count = _crossings(current, links)
            if count < fewest:
                best, fewest = [list(column) for column in current], count
        if fewest == 0:
            break
    return best, fewest


def _place_vertically(order: list[list[str]], links: list[tuple[str, str]]) -> dict[str, float]:
    """Each slot's y (up is positive): every column stacked with gaps, then moved, in rounds,
    as close as the order and the gaps allow to the mean y of the slot's neighbours."""
    neighbours: dict[str, list[str]] = {}
    for a, b in links:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    y: dict[str, float] = {}
    for column in order:
        offsets = _offsets(column)
        middle = (offsets[0] + offsets[-1]) / 2 if column else 0.0
        y.update({slot: middle - offset for slot, offset in zip(column, offsets, strict=True)})
    for _ in range(PLACEMENT_ROUNDS):
        for layers in (range(len(order)), range(len(order) - 1, -1, -1)):
            for layer in layers:
                column = order[layer]
                wanted = [
                    sum(y[other] for other in neighbours[slot]) / len(neighbours[slot])
                    if neighbours.get(slot)
                    else y[slot]
                    for slot in column
                ]
                for slot, value in zip(column, _closest_in_order(wanted, _offsets(column)),
                                       strict=True):  # fmt: skip
                    y[slot] = value
    return y


def _offsets(column: list[str]) -> list[float]:
    """Each slot's distance below the first slot's centre, the slots stacked with gaps."""
    offsets = [0.0] if column else []
    for above, below in itertools.pairwise(column):
        offsets.append(offsets[-1] + (_height(above) + _height(below)) / 2 + SLOT_GAP)
    return offsets


def _closest_in_order(wanted: list[float], offsets: list[float]) -> list[float]:
    """The y values, top to bottom, nearest `wanted` (least squares) that keep each slot at
    least its offset below the one above: y_i = z_i - offset_i with z non-increasing, found by
    pooling adjacent violators (isotonic regression)."""
    targets = [value + offset for value, offset in zip(wanted, offsets, strict=True)]
    blocks: list[list[float]] = []  # [mean, count]
    for target in targets:
        blocks.append([target, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:  # z must not increase
            mean, count = blocks.pop()
            blocks[-1] = [
                (blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count),
                blocks[-1][1] + count,
            ]
    z = [mean for mean, count in blocks for _ in range(int(count))]
    return [value - offset for value, offset in zip(z, offsets, strict=True)]


def _ports(
    chains: list[tuple[str, str, list[str]]], y: dict[str, float]
) -> dict[tuple[int, str], float]:
    """Where each edge meets its boxes: a box's outgoing edges spread over its right side and
    its incoming edges over its left side, each side ordered by the y of the slot the edge
    comes from or goes to (so edges do not cross at a box)."""
    sides: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for index, (source, target, slots) in enumerate(chains):
        sides.setdefault((source, "out"), []).append((y[slots[1]], index))
        sides.setdefault((target, "in"), []).append((y[slots[-2]], index))
    ports = {}
    for (name, side), ends in sides.items():
        ends.sort(key=lambda end: -end[0])  # top first (stable: an input used twice keeps order)
        spacing = BOX_HEIGHT * 0.7 / len(ends)
        for rank, (_, index) in enumerate(ends):
            ports[(index, side)] = y[name] + ((len(ends) - 1) / 2 - rank) * spacing
    return ports
