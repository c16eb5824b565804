"""Figures of jobs, sweeps and models, built from their stored records (no TensorFlow here).

Each function takes plain data and returns a matplotlib `Figure`; `service.plots.png` renders
it. Figures are made with the object-oriented API, never pyplot, so nothing is shared between
requests served by different threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path as MplPath
from matplotlib.textpath import TextToPath
from matplotlib.ticker import MaxNLocator

from service.plots.graph_layout import BOX_WIDTH, layout_graph

NOT_METRICS = {"epoch", "seconds", "learning_rate"}


def history_metrics(history: Sequence[dict[str, Any]]) -> list[str]:
    """The metric names of a history (loss, accuracy, ...), without their `val_` twins."""
    names: list[str] = []
    for entry in history:
        for name, value in entry.items():
            base = name.removeprefix("val_")
            if name in NOT_METRICS or not isinstance(value, int | float) or base in names:
                continue
            names.append(base)
    return sorted(names, key=lambda name: name != "loss")  # the loss first, then as recorded


def job_history(job_id: str, kind: str, history: Sequence[dict[str, Any]]) -> Figure:
    """Training and validation curves, one subplot per metric."""
    metrics = history_metrics(history)
    figure, axes = _grid(len(metrics))
    epochs = [entry["epoch"] for entry in history]
    for axis, metric in zip(axes, metrics, strict=False):
        for name, label, style in (
            (metric, "training", "-o"),
            (f"val_{metric}", "validation", "--s"),
        ):
            values = [entry.get(name) for entry in history]
            if any(value is not None for value in values):
                axis.plot(epochs, _floats(values), style, label=label, markersize=3)
        _label(axis, "epoch", metric, metric)
        axis.legend()
    figure.suptitle(f"Training history of {kind} job {job_id}")
    return figure


def sweep_history(
    sweep_id: str, cells: list[tuple[str, list[list[dict[str, Any]]]]], metric: str
) -> Figure:
    """One curve per cell (mean over its replicates, with a band of +- one std), training
    solid and validation dashed, all in one axes."""
    figure = Figure(figsize=(9, 5.5), layout="constrained")
    axis = figure.add_subplot()
    for color, (label, histories) in zip(_colors(len(cells)), cells, strict=True):
        for name, style, suffix in ((metric, "-", ""), (f"val_{metric}", "--", " (validation)")):
            epochs, mean, std = _mean_curve(histories, name)
            if len(epochs):
                axis.plot(epochs, mean, style, color=color, label=label + suffix)
                axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
    _label(axis, "epoch", metric, f"{metric} per epoch, mean over replicates (band: +- 1 std)")
    axis.legend(fontsize="small", ncols=2)
    figure.suptitle(f"Sweep {sweep_id}")
    return figure


def sweep_metric(sweep_id: str, cells: list[tuple[str, float, float, int]], metric: str) -> Figure:
    """The final metric of every cell: mean with +- std error bars over replicates."""
    figure = Figure(figsize=(max(6, 1.1 * len(cells) + 2), 5), layout="constrained")
    axis = figure.add_subplot()
    positions = np.arange(len(cells))
    means = [mean for _, mean, _, _ in cells]
    stds = [std for _, _, std, _ in cells]
    axis.errorbar(positions, means, yerr=stds, fmt="o", capsize=5)
    crowded = len(cells) > 4
    labels = [f"{label}\n(n={count})" for label, _, _, count in cells]
    axis.set_xticks(positions, labels, rotation=30 if crowded else 0,
                    ha="right" if crowded else "center")  # fmt: skip
    _label(axis, "cell", metric, f"Final {metric} per cell, mean +- std over replicates")
    figure.suptitle(f"Sweep {sweep_id}")
    return figure


def job_gradients(job_id: str, kind: str, gradients: Sequence[dict[str, Any]]) -> Figure:
    """Largest gradient per layer, by depth, before training and after each epoch."""
    figure = Figure(figsize=(8, 5), layout="constrained")
    axis = figure.add_subplot()
    shown = _untrained_and_trained(gradients)
    for color, entry in zip(_colors(len(shown)), shown, strict=True):
        depths, values = max_gradient_by_depth(entry)
        style = "--o" if entry["epoch"] == 0 else "-o"
        label = "untrained" if entry["epoch"] == 0 else f"after epoch {entry['epoch']}"
        axis.plot(depths, values, style, color=color, label=label, markersize=4)
    axis.set_yscale("log")
    _label(axis, "layer depth", "max |gradient|", "Largest gradient of each layer's weights")
    axis.legend()
    figure.suptitle(f"Gradients of {kind} job {job_id}")
    return figure


def sweep_gradients(
    sweep_id: str, panels: dict[str, dict[str, list[Sequence[dict[str, Any]]]]]
) -> Figure:
    """One subplot per panel (network depth), one colour per line (activation): the largest
    gradient per layer, mean over replicates, untrained dashed and trained solid."""
    figure, axes = _grid(len(panels), width=5.5, height=4.2)
    for axis, (panel, lines) in zip(axes, panels.items(), strict=False):
        for color, (label, runs) in zip(_colors(len(lines)), lines.items(), strict=True):
            for trained, style in ((False, "--"), (True, "-")):
                curves = [
                    max_gradient_by_depth(run[-1] if trained else run[0]) for run in runs if run
                ]
                if curves:
                    depths = curves[0][0]
                    mean = np.mean(
                        [values for _, values in curves if len(values) == len(depths)], axis=0
                    )
                    name = f"{label}, {'trained' if trained else 'untrained'}"
                    axis.plot(depths, mean, style, color=color, label=name)
        axis.set_yscale("log")
        _label(axis, "layer depth", "max |gradient|", panel)
        axis.legend(fontsize="x-small")
    figure.suptitle(f"Largest gradient per layer, sweep {sweep_id} (untrained dashed)")
    return figure


def confusion(job_id: str, kind: str, matrix: Sequence[Sequence[int]]) -> Figure:
    """The confusion matrix with the count in every cell."""
    counts = np.asarray(matrix)
    figure = Figure(figsize=(7, 6), layout="constrained")
    axis = figure.add_subplot()
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, label="test images")
    threshold = counts.max() / 2 if counts.size else 0
    for (row, column), count in np.ndenumerate(counts):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")  # fmt: skip
    classes = range(len(counts))
    axis.set_xticks(classes)
    axis.set_yticks(classes)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    _label(axis, "predicted", "true", f"Test set: {counts.sum()} images, accuracy {accuracy:.2%}")
    axis.grid(False)  # the cells are the grid
    figure.suptitle(f"Confusion matrix of {kind} job {job_id}")
    return figure


def feature_maps(model_id: str, layers: list[tuple[str, np.ndarray]], image: np.ndarray) -> Figure:
    """Every convolutional filter's output for one image: the input, then one mosaic per layer
    (an image of all its maps side by side, each scaled to its own range)."""
    mosaics = [mosaic(maps) for _, maps in layers]
    widths = [2.0, *[4.0 * tiles.shape[1] / max(tiles.shape) for tiles in mosaics]]
    figure = Figure(figsize=(sum(widths) + 1, 4.6), layout="constrained")
    axes = figure.subplots(1, len(layers) + 1, width_ratios=widths, squeeze=False)[0]
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input, as the model saw it (28x28)", fontsize="small")
    palette = colormaps["viridis"].with_extremes(bad="white")  # the gaps between maps
    for axis, (name, maps), tiles in zip(axes[1:], layers, mosaics, strict=True):
        axis.imshow(tiles, cmap=palette, vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(f"layer {name}: {maps.shape[-1]} filters, {maps.shape[0]}x{maps.shape[1]}",
                       fontsize="small")  # fmt: skip
    for axis in axes:
        axis.set(xticks=[], yticks=[])  # no tick objects to lay out (most of the render time)
        axis.set_axis_off()
    figure.suptitle(f"Feature maps of model {model_id} (each map scaled to its own range)")
    return figure


def mosaic(maps: np.ndarray) -> np.ndarray:
    """The maps (height, width, filters) as one image: a grid, filter by filter along the rows,
    each map scaled to 0..1 (a constant map is 0), NaN in the one-pixel gaps and empty cells.
    Columns: the smallest power of two at least the square root of the count, so a grid is as
    wide as tall or twice as wide (32 filters: 8 columns x 4 rows, 64: 8x8, 128: 16x8)."""
    height, width, count = maps.shape
    columns = 2 ** int(np.ceil(np.log2(np.sqrt(count)))) if count > 1 else 1
    rows = -(-count // columns)
    low = maps.min(axis=(0, 1))
    span = maps.max(axis=(0, 1)) - low
    scaled = (maps - low) / np.where(span > 0, span, 1)
    tiles = np.full((rows * columns, height + 1, width + 1), np.nan, np.float32)
    tiles[:count, :height, :width] = np.moveaxis(scaled, -1, 0)
    grid = tiles.reshape(rows, columns, height + 1, width + 1).transpose(0, 2, 1, 3)
    return grid.reshape(rows * (height + 1), columns * (width + 1))[:-1, :-1]


def compute_graph(job_id: str, nodes: Sequence[dict[str, Any]]) -> Figure:
    """The backprop job's compute graph: each node's box with its operation, value and
    gradient, in columns by layer (the longest path from the inputs: inputs on the left, the
    loss on the right), edges routed between the columns (`graph_layout.layout_graph`)."""
    labels = [_node_label(node) for node in nodes]
    widest = max((_text_inches(line) for label in labels for line in label.split("\n")),
                 default=0.0)  # fmt: skip
    layout = layout_graph(nodes, box_width=max(BOX_WIDTH, widest + 0.14))
    margin, header, footer = 0.25, 0.75, 0.45
    figure_width = max(layout.width + 2 * margin, 6.0)
    height = layout.height + header + footer
    figure = Figure(figsize=(figure_width, height))
    left = (figure_width - layout.width) / 2
    axis = figure.add_axes((left / figure_width, footer / height, layout.width / figure_width,
                            layout.height / height))  # fmt: skip
    axis.set_xlim(0, layout.width)  # one unit of data is one inch: boxes are laid out in inches
    axis.set_ylim(0, layout.height)
    axis.set_axis_off()
    for edge in layout.edges:
        axis.add_patch(FancyArrowPatch(path=MplPath(edge.points), arrowstyle="-|>",
                                       mutation_scale=9, color="#6b7785", linewidth=0.9,
                                       shrinkA=0, shrinkB=0, zorder=1))  # fmt: skip
    consumers = {source for node in nodes for source in node["inputs"]}
    roles = [_graph_role(node, consumers) for node in nodes]
    for node, role, label in zip(nodes, roles, labels, strict=True):
        box = layout.boxes[node["name"]]
        face, line = GRAPH_COLORS[role]
        axis.add_patch(FancyBboxPatch((box.left, box.bottom), box.width, box.height,
                                      boxstyle="round,pad=0,rounding_size=0.07", facecolor=face,
                                      edgecolor=line, linewidth=1.2, zorder=2))  # fmt: skip
        axis.text(box.x, box.y, label, ha="center", va="center", fontsize=GRAPH_FONT_SIZE,
                  linespacing=1.25, zorder=3)  # fmt: skip
    handles = [Patch(facecolor=face, edgecolor=line, label=role)
               for role, (face, line) in GRAPH_COLORS.items() if role in roles]  # fmt: skip
    figure.legend(handles=handles, loc="lower center", ncols=len(handles), frameon=False,
                  fontsize=GRAPH_FONT_SIZE)  # fmt: skip
    figure.suptitle(f"Compute graph of backprop job {job_id} (first step)\n"
                    "value: forward pass; grad: d loss / d node, by backpropagation",
                    fontsize=11, y=1 - 0.08 / height, va="top")  # fmt: skip
    return figure


GRAPH_FONT_SIZE = 9  # points: 12.5 pixels at the PNGs' 100 dpi
# Operations shown by their symbol as well (narrower boxes, read at a glance).
OPERATION_LABELS = {
    "mul": "\N{MULTIPLICATION SIGN} mul",
    "add": "+ add",
    "squared_error": "\N{VULGAR FRACTION ONE HALF}(a - b)\N{SUPERSCRIPT TWO}",
}
# Fill and outline of a node's box, by its role in the graph.
GRAPH_COLORS = {
    "input": ("#eceff3", "#5b6b7c"),
    "weight": ("#fff3d6", "#a86e00"),
    "operation": ("#e8f0fc", "#2f5fae"),
    "loss": ("#fde8e6", "#b3261e"),
}


def _node_label(node: dict[str, Any]) -> str:
    """A node's name, operation, value and gradient, one per line."""
    grad = "-" if node["grad"] is None else f"{node['grad']:.4g}"
    operation = OPERATION_LABELS.get(node["op"], node["op"] or "input")
    return f"{node['name']}\n{operation}\nvalue {node['value']:.4g}\ngrad {grad}"


def _text_inches(text: str) -> float:
    """How wide `text` is drawn at the graph's font size, in inches (measured on the font's
    outlines: no renderer needed)."""
    width, _, _ = _TEXT_TO_PATH.get_text_width_height_descent(
        text, FontProperties(size=GRAPH_FONT_SIZE), ismath=False
    )
    return width / 72


_TEXT_TO_PATH = TextToPath()


def _graph_role(node: dict[str, Any], consumers: set[str]) -> str:
    if node["op"] == "variable":
        return "weight"
    if not node["inputs"]:
        return "input"
    return "operation" if node["name"] in consumers else "loss"


def max_gradient_by_depth(entry: dict[str, Any]) -> tuple[list[int], list[float]]:
    """Per layer depth, the largest |gradient| over its kernels (else any parameter)."""
    largest: dict[int, float] = {}
    kernels = [layer for layer in entry["layers"] if layer["parameter"] == "kernel"]
    for layer in kernels or entry["layers"]:
        largest[layer["depth"]] = max(largest.get(layer["depth"], 0.0), layer["max_abs"])
    depths = sorted(largest)
    return depths, [largest[depth] for depth in depths]


def _untrained_and_trained(gradients: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The untrained entry, a few in between and the last one (a figure of 40 lines reads
    like none)."""
    if len(gradients) <= 6:
        return list(gradients)
    picks = np.linspace(0, len(gradients) - 1, 6).round().astype(int)
    return [gradients[i] for i in sorted(set(picks))]


def _mean_curve(histories: list[list[dict[str, Any]]], name: str):
    runs = [[entry.get(name) for entry in history] for history in histories]
    runs = [_floats(run) for run in runs if run and all(v is not None for v in run)]
    if not runs:
        return np.array([]), np.array([]), np.array([])
    length = min(len(run) for run in runs)
    values = np.array([run[:length] for run in runs])
    return np.arange(1, length + 1), values.mean(axis=0), values.std(axis=0)


def _grid(count: int, width: float = 5.0, height: float = 3.8):
    columns = min(3, max(1, count))
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(width * columns, height * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for axis in list(axes)[count:]:
        axis.set_visible(False)
    return figure, figure.axes[:count] if count else figure.axes[:1]


def _label(axis, xlabel: str, ylabel: str, title: str) -> None:
    if xlabel in ("epoch", "layer depth"):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)


def _colors(count: int) -> list:
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


def _floats(values: Sequence[Any]) -> list[float]:
    return [float("nan") if value is None else float(value) for value in values]
