"""Plots of real jobs, sweeps and models, as PNG files over HTTP."""

from __future__ import annotations

import io
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from service.plots import figures
from service.plots.graph_layout import Box, Edge, GraphLayout, layout_graph
from service.plots.png import to_png
from tests.conftest import STACK_DB
from tests.photo_like import encode
from tests.stack import ServiceStack, assert_some_busy, wait_for


def segments_crossing_boxes(layout: GraphLayout) -> list[tuple[str, str, str]]:
    """(source, target, box) for every edge segment that enters a box other than its own
    source's and target's: empty for a layout whose edges avoid the boxes."""
    crossed = []
    for edge in layout.edges:
        for start, end in itertools.pairwise(edge.points):
            for name, box in layout.boxes.items():
                if name not in (edge.source, edge.target) and _segment_enters(start, end, box):
                    crossed.append((edge.source, edge.target, name))
    return crossed


def _segment_enters(start: tuple[float, float], end: tuple[float, float], box: Box) -> bool:
    """Whether the segment meets the box's interior (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = start, end
    low, high = 0.0, 1.0
    for delta, distance_low, distance_high in (
        (x1 - x0, x0 - box.left, box.right - x0),
        (y1 - y0, y0 - box.bottom, box.top - y0),
    ):
        if delta == 0:
            if distance_low <= 0 or distance_high <= 0:
                return False  # parallel to this pair of sides and outside (or on) them
            continue
        first, second = -distance_low / delta, distance_high / delta
        if delta < 0:
            first, second = distance_high / delta, -distance_low / delta
        low, high = max(low, first), min(high, second)
    return high - low > 1e-9


def get_png(stack, path: str, **params) -> Image.Image:
    response = stack.client.get(path, params=params, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return _image(response.content)


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.width >= 400 and image.height >= 300
    assert np.asarray(image.convert("L")).std() > 5  # something is drawn
    return image


@pytest.mark.parametrize("plot", ["history", "gradients", "confusion"])
def test_a_job_s_plots_are_pngs(stack, finished_mlp, plot):
    get_png(stack, f"/jobs/{finished_mlp['id']}/plots/{plot}.png")


def test_the_history_figure_says_what_and_which_job(stack, finished_mlp):
    history = stack.client.get(f"/jobs/{finished_mlp['id']}/history").json()
    figure = figures.job_history(finished_mlp["id"], "mlp", history)
    assert finished_mlp["id"] in figure.get_suptitle()
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["loss", "accuracy"]
    for axis in figure.axes:
        assert axis.get_xlabel() == "epoch"
        assert [line.get_label() for line in axis.get_lines()] == ["training", "validation"]
        assert len(axis.get_lines()[0].get_xdata()) == len(history)


@pytest.fixture(scope="module")
def backprop_job(stack):
    job = stack.wait_until_finished(stack.submit("backprop", steps=3)["id"])
    assert job["status"] == "succeeded", job["error"]
    return job


def test_a_backprop_job_has_a_graph_and_no_history(stack, backprop_job):
    job = backprop_job
    get_png(stack, f"/jobs/{job['id']}/plots/graph.png")
    nodes = job["result"]["nodes"]
    figure = figures.compute_graph(job["id"], nodes)
    drawn = [text.get_text() for text in figure.axes[0].texts]
    assert len(drawn) == len(nodes)
    for text, node in zip(drawn, nodes, strict=True):
        name, _, value, grad = text.split("\n")
        assert (name, value, grad) == (node["name"], f"value {node['value']:.4g}",
                                       f"grad {node['grad']:.4g}")  # fmt: skip
    history = stack.client.get(f"/jobs/{job['id']}/plots/history.png")
    assert history.status_code == 404
    assert "graph.png" in history.json()["detail"]
    confusion = stack.client.get(f"/jobs/{job['id']}/plots/confusion.png")
    assert confusion.status_code == 404


def longest_paths(nodes: list[dict]) -> dict[str, int]:
    """Each node's longest path from an input, by relaxing every edge until nothing changes
    (a reference independent of the layout's depth-first search)."""
    layer = {node["name"]: 0 for node in nodes}
    for _ in nodes:
        for node in nodes:
            for source in node["inputs"]:
                layer[node["name"]] = max(layer[node["name"]], layer[source] + 1)
    return layer


def random_graph(seed: int) -> list[dict]:
    """A random DAG with edges that skip layers, listed in a shuffled order."""
    rng = np.random.default_rng(seed)
    nodes = []
    for index in range(int(rng.integers(4, 30))):
        count = int(rng.integers(0, min(index, 3) + 1))
        inputs = [f"n{i}" for i in rng.choice(index, size=count, replace=False)] if count else []
        nodes.append({"name": f"n{index}", "op": "add" if inputs else "constant",
                      "inputs": inputs, "value": 1.0, "grad": 0.5})  # fmt: skip
    return [nodes[i] for i in rng.permutation(len(nodes))]


def assert_readable_layout(nodes: list[dict]) -> None:
    """Columns are layers, boxes do not overlap, and edges run from their source's right side
    to their target's left side without entering any other box."""
    layout = layout_graph(nodes)
    layers = longest_paths(nodes)
    assert layout.layers == layers
    for name, box in layout.boxes.items():
        assert box.x == pytest.approx(layout.column_x(layers[name]))
    xs = sorted({round(box.x, 9) for box in layout.boxes.values()})
    assert len(xs) == max(layers.values()) + 1  # one column per layer, left to right
    width = layout.boxes[nodes[0]["name"]].width
    assert all(right - left > width for left, right in itertools.pairwise(xs))
    boxes = list(layout.boxes.values())
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a.x != b.x or a.bottom >= b.top or b.bottom >= a.top, (a, b)
    assert sorted((edge.source, edge.target) for edge in layout.edges) == sorted(
        (source, node["name"]) for node in nodes for source in node["inputs"]
    )
    for edge in layout.edges:
        (x0, y0), (x1, y1) = edge.points[0], edge.points[-1]
        source, target = layout.boxes[edge.source], layout.boxes[edge.target]
        assert x0 == pytest.approx(source.right) and source.bottom < y0 < source.top
        assert x1 == pytest.approx(target.left) and target.bottom < y1 < target.top
        assert all(b[0] > a[0] for a, b in itertools.pairwise(edge.points))  # left to right
    assert segments_crossing_boxes(layout) == []


def test_the_compute_graph_is_laid_out_in_layers_with_edges_around_the_boxes(backprop_job):
    nodes = backprop_job["result"]["nodes"]
    assert_readable_layout(nodes)
    layout = layout_graph(nodes)
    assert layout.order[0][0] != "" and {layout.layers[name] for name in ("x", "y", "w1")} == {0}
    assert layout.layers["loss"] == max(layout.layers.values())  # the loss alone on the right
    assert layout.crossings <= 1  # w4's edge must cross one of n1's (as drawn by hand)
    figure = figures.compute_graph(backprop_job["id"], nodes)
    for text, node in zip(figure.axes[0].texts, nodes, strict=True):  # drawn where laid out
        box = layout.boxes[node["name"]]
        assert text.get_position() == pytest.approx((box.x, box.y))


@pytest.mark.parametrize("seed", range(8))
def test_any_graph_is_laid_out_in_layers_with_edges_around_the_boxes(seed):
    assert_readable_layout(random_graph(seed))


def test_a_check_that_finds_an_edge_through_a_box():
    layout = layout_graph(random_graph(1))
    name, box = next(iter(layout.boxes.items()))
    through = Edge("a", "b", [(box.left - 1, box.y), (box.right + 1, box.y)])
    grazing = Edge("a", "b", [(box.left - 1, box.top), (box.right + 1, box.top)])
    layout.edges = [through, grazing]
    assert segments_crossing_boxes(layout) == [("a", "b", name)]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([{"name": "a", "inputs": ["b"]}], "not nodes of the graph"),
        ([{"name": "a", "inputs": ["b"]}, {"name": "b", "inputs": ["a"]}], "cycle"),
        ([{"name": "a", "inputs": []}, {"name": "a", "inputs": []}], "names repeat"),
    ],
)
def test_a_graph_that_cannot_be_laid_out_says_why(nodes, message):
    with pytest.raises(ValueError, match=message):
        layout_graph(nodes)


def test_graph_of_a_keras_job_and_plots_of_unknown_jobs(stack, finished_mlp):
    graph = stack.client.get(f"/jobs/{finished_mlp['id']}/plots/graph.png")
    assert graph.status_code == 404  # that plot never exists for its kind
    assert graph.json()["code"] == "not_plottable"
    assert stack.client.get(f"/jobs/{'0' * 32}/plots/history.png").status_code == 404


@pytest.mark.parametrize("plot", ["history", "metric", "gradients"])
def test_a_sweep_s_plots_are_pngs(stack, replicated_sweep, plot):
    get_png(stack, f"/sweeps/{replicated_sweep['id']}/plots/{plot}.png")


def test_the_sweep_figures_hold_every_cell(stack, replicated_sweep):
    from service.jobs.store import JobStore
    from service.plots import sources
    from service.sweeps.schemas import SweepRecord

    jobs = JobStore(stack.redis, 10)
    answer = stack.client.get(f"/sweeps/{replicated_sweep['id']}")
    record = SweepRecord.model_validate(answer.json())
    cells = sources.sweep_histories(jobs, record)
    history = figures.sweep_history(record.id, cells, "accuracy")
    labels = {line.get_label() for line in history.axes[0].get_lines()}
    assert {label for label, _ in cells} <= labels  # a training curve per cell
    metric, rows = sources.sweep_final_metrics(jobs, record, None)
    assert metric == "test_accuracy"
    assert len(rows) == 2 and all(count == 2 for *_, count in rows)
    panels = sources.sweep_gradient_panels(jobs, record)
    assert sorted(panels) == ["depth=1", "depth=3"]
    gradients = figures.sweep_gradients(record.id, panels)
    assert len(gradients.axes) == 2
    assert len(gradients.axes[1].get_lines()) == 2  # untrained and trained


def test_an_unknown_metric_is_refused_with_the_ones_there_are(stack, replicated_sweep):
    response = stack.client.get(f"/sweeps/{replicated_sweep['id']}/plots/metric.png",
                                params={"metric": "happiness"})  # fmt: skip
    assert response.status_code == 404
    assert "test_accuracy" in response.json()["detail"]


def test_feature_maps_of_an_uploaded_digit(stack, digit_model, test_digits, finished_mlp):
    files = [("file", ("digit.png", encode(test_digits[0][0], "PNG"), "image/png"))]
    response = stack.client.post(f"/models/{digit_model['id']}/plots/feature-maps.png",
                                 files=files, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    _image(response.content)
    mlp = stack.client.post(f"/models/{finished_mlp['result']['model_id']}/plots/feature-maps.png",
                            files=files)  # fmt: skip
    assert mlp.status_code == 404
    assert "cnn" in mlp.json()["detail"]


def test_feature_maps_are_one_mosaic_per_convolution_layer(stack, digit_model, test_digits):
    files = {"file": ("digit.png", encode(test_digits[0][1], "PNG"), "image/png")}
    path = f"/models/{digit_model['id']}/plots/feature-maps.png"
    first = stack.client.post(path, files=files, timeout=60)
    assert first.status_code == 200, first.text
    again = stack.client.post(path, files=files, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 200  # a POST always gets its image (304 is for GET)
    assert again.headers["etag"] == first.headers["etag"] and again.content == first.content
    assert first.headers["cache-control"] == "private, no-cache"
    other = {"file": ("digit.png", encode(test_digits[0][2], "PNG"), "image/png")}
    assert stack.client.post(path, files=other, timeout=60).headers["etag"] != first.headers["etag"]

    rng = np.random.default_rng(0)
    layers = [("conv_1", rng.normal(size=(28, 28, 16))), ("conv_2", rng.normal(size=(14, 14, 32)))]
    figure = figures.feature_maps("model", layers, np.zeros((28, 28)))
    assert len(figure.axes) == 1 + len(layers)  # the input, then one axes per layer
    for axis, (name, maps) in zip(figure.axes[1:], layers, strict=True):
        assert axis.get_title().startswith(f"layer {name}: {maps.shape[-1]} filters")
        [image] = axis.get_images()
        assert np.array_equal(image.get_array().filled(np.nan), figures.mosaic(maps),
                              equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("count, grid", [(1, (1, 1)), (16, (4, 4)), (32, (4, 8)), (128, (8, 16))])
def test_a_mosaic_holds_each_map_scaled_in_its_own_cell(count, grid):
    rng = np.random.default_rng(count)
    maps = rng.normal(size=(5, 7, count))
    maps[..., 0] = 3.0  # a constant map
    tiles = figures.mosaic(maps)
    rows, columns = grid
    assert tiles.shape == (rows * 6 - 1, columns * 8 - 1)
    for index in range(rows * columns):
        row, column = divmod(index, columns)
        cell = tiles[row * 6 : row * 6 + 5, column * 8 : column * 8 + 7]
        if index >= count:
            assert np.isnan(cell).all()
            continue
        values = maps[..., index]
        span = values.max() - values.min()
        expected = np.zeros_like(values) if span == 0 else (values - values.min()) / span
        np.testing.assert_allclose(cell, expected, rtol=1e-6, atol=1e-6)
    if rows > 1:
        assert np.isnan(tiles[5, :]).all()  # the gap between rows
    if columns > 1:
        assert np.isnan(tiles[:, 7]).all()  # and between columns


def test_a_plot_is_rendered_once_and_then_revalidated(stack, finished_mlp):
    path = f"/jobs/{finished_mlp['id']}/plots/history.png"
    first = stack.client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "no-cache"
    unchanged = stack.client.get(path, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    weak_among_others = stack.client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak_among_others.status_code == 304
    cached = stack.client.get(path, headers={"If-None-Match": '"other"'})
    assert cached.status_code == 200 and cached.headers["etag"] == etag
    history = stack.client.get(f"/jobs/{finished_mlp['id']}/history").json()
    fresh = to_png(figures.job_history(finished_mlp["id"], "mlp", history))
    assert cached.content == first.content == fresh
    confusion = stack.client.get(f"/jobs/{finished_mlp['id']}/plots/confusion.png")
    assert confusion.headers["etag"] != etag


def test_a_running_job_s_plot_changes_with_each_epoch_and_when_it_finishes(stack, mnist_path):
    job = stack.submit("mlp", depth=2, width=64, epochs=6, train_limit=6000, test_limit=500,
                       seed=1)  # fmt: skip
    path = f"/jobs/{job['id']}/plots/history.png"

    def plot_while_running(more_than: int) -> tuple[str, int] | None:
        """The plot's ETag and its number of epochs, when it held more than `more_than` and
        the job ran before and after (so the plot showed exactly that state)."""
        before = stack.client.get(f"/jobs/{job['id']}/history").json()
        if len(before) <= more_than or stack.job(job["id"])["status"] != "running":
            return None
        plot = stack.client.get(path, timeout=30)
        after = stack.client.get(f"/jobs/{job['id']}/history").json()
        running = stack.job(job["id"])["status"] == "running"
        return (plot.headers["etag"], len(after)) if running and after == before else None

    first, epochs = wait_for(lambda: plot_while_running(0), 120, "a first epoch", interval=0.2)
    second, _ = wait_for(lambda: plot_while_running(epochs), 120, "another epoch", interval=0.2)
    assert second != first
    stale = stack.client.get(path, headers={"If-None-Match": first})
    assert stale.status_code == 200 and stale.headers["etag"] != first
    finished = stack.wait_until_finished(job["id"], timeout=180)
    assert finished["status"] == "succeeded", finished["error"]
    final = stack.client.get(path)
    assert final.status_code == 200 and final.headers["etag"] not in (first, second)
    revalidated = stack.client.get(path, headers={"If-None-Match": final.headers["etag"]})
    assert revalidated.status_code == 304


@pytest.fixture(scope="module")
def one_plot_slot(stack, tmp_path_factory):
    """A second API on the session stack's Redis DB and models, rendering one plot at a time."""
    api = ServiceStack(
        STACK_DB, tmp_path_factory.mktemp("one-plot-slot"),
        ARTIFACTS_DIR=stack.env["ARTIFACTS_DIR"], PLOT_SLOTS="1", PRELOAD_MODELS="false",
    )  # fmt: skip
    api.start_api()  # not `start`: that would empty the shared DB
    yield api
    api.client.close()
    api.api.stop()
    api.redis.close()


def test_renders_beyond_the_plot_slots_answer_503_and_cached_plots_still_answer(
    one_plot_slot, digit_model, test_digits, finished_mlp
):
    client = one_plot_slot.client
    path = f"/models/{digit_model['id']}/plots/feature-maps.png"
    page = cv2.resize(255 - test_digits[0][3], (3000, 3000), interpolation=cv2.INTER_CUBIC)
    cached_upload = {"file": ("small.png", encode(test_digits[0][4], "PNG"), "image/png")}
    assert client.post(path, files=cached_upload, timeout=60).status_code == 200
    history = f"/jobs/{finished_mlp['id']}/plots/history.png"
    etag = client.get(history, timeout=60).headers["etag"]
    start = threading.Barrier(7)

    def render(index: int):
        page[0, index] = 128  # a different image each: nothing is cached
        upload = encode(page, "PNG")
        start.wait()
        return client.post(path, files={"file": ("page.png", upload, "image/png")}, timeout=60)

    def from_cache(_: int) -> list[int]:
        start.wait()
        return [
            client.post(path, files=cached_upload, timeout=60).status_code,
            client.get(history, headers={"If-None-Match": etag}, timeout=60).status_code,
        ]

    with ThreadPoolExecutor(7) as pool:
        renders = [pool.submit(render, index) for index in range(6)]
        cached = pool.submit(from_cache, 0)
        answers = [future.result() for future in renders]
    assert_some_busy(answers, "PLOT_SLOTS")
    assert cached.result() == [200, 304]
