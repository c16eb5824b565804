"""Preprocessing uploads into MNIST's form: properties that hold for any digit."""

import cv2
import numpy as np
import pytest

from tests.photo_like import decode_gray, encode, photo_of_digit, row_of_digits
from training import digit_images
from training.digit_images import (
    MNIST_STROKE_RANGE,
    NoDigitFound,
    WrongDigitCount,
    split_row,
    stroke_width,
    to_mnist,
)


@pytest.fixture(scope="module")
def digits(mnist_path):
    with np.load(mnist_path) as data:
        return data["x_test"][:40], data["y_test"][:40]


@pytest.fixture(scope="module")
def nearest_neighbour(mnist_path):
    """A 1-nearest-neighbour classifier (cosine similarity) over 2,000 MNIST training digits."""
    with np.load(mnist_path) as data:
        references, labels = data["x_train"][:2000], data["y_train"][:2000]
    flat = references.reshape(len(references), -1).astype(np.float64)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)

    def classify(images: list[np.ndarray]) -> np.ndarray:
        queries = np.array([image.ravel() for image in images], dtype=np.float64)
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-9)
        return labels[np.argmax(queries @ flat.T, axis=1)]

    return classify


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_an_mnist_digit_is_read_as_well_after_preparation(digits, nearest_neighbour):
    images, labels = digits
    clean = np.mean(nearest_neighbour(list(images)) == labels)
    prepared = np.mean(nearest_neighbour([to_mnist(image).image for image in images]) == labels)
    assert prepared >= clean - 0.05


def test_output_is_centred_by_mass_and_fits_mnists_box(digits):
    images, _ = digits
    for image in images[:10]:
        prepared = to_mnist(image).image
        assert prepared.shape == (28, 28) and prepared.dtype == np.float32
        assert prepared.min() >= 0 and prepared.max() <= 255
        rows, columns = np.indices(prepared.shape)
        total = prepared.sum()
        assert (rows * prepared).sum() / total == pytest.approx(13.5, abs=0.5)
        assert (columns * prepared).sum() / total == pytest.approx(13.5, abs=0.5)
        ys, xs = np.nonzero(prepared > 40)
        assert max(np.ptp(ys), np.ptp(xs)) <= 22


def test_a_photo_and_its_negative_give_the_same_digit(digits):
    images, _ = digits
    rng = np.random.default_rng(1)
    for image in images[:8]:
        photo = photo_of_digit(image, rng)
        assert similarity(to_mnist(photo).image, to_mnist(255 - photo).image) > 0.9


def test_photo_like_uploads_are_read_nearly_as_well_as_clean_digits(digits, nearest_neighbour):
    images, labels = digits
    rng = np.random.default_rng(2)
    photos = [
        decode_gray(encode(photo_of_digit(image, rng, invert=index % 4 == 3)))
        for index, image in enumerate(images)
    ]
    clean = np.mean(nearest_neighbour(list(images)) == labels)
    ours = np.mean(nearest_neighbour([to_mnist(photo).image for photo in photos]) == labels)
    # The course's way: the whole photo resized to 28x28 and inverted.
    naive = [255 - cv2.resize(photo, (28, 28), interpolation=cv2.INTER_AREA) for photo in photos]
    course = np.mean(nearest_neighbour(naive) == labels)
    assert ours >= clean - 0.15
    assert ours >= course + 0.4


@pytest.mark.parametrize("pen", [2, 12, 150])
def test_any_pen_ends_up_with_mnists_stroke_width(pen):
    page = np.full((2000, 1600), 235, np.uint8)
    seven = np.array([[500, 500], [1100, 500], [700, 1500]], np.int32)
    cv2.polylines(page, [seven], isClosed=False, color=40, thickness=pen)
    prepared = to_mnist(page).image
    width = stroke_width((prepared > 127).astype(np.uint8))
    # Within MNIST's own range (10th to 90th percentile), allowing for the final downscale.
    assert MNIST_STROKE_RANGE[0] - 0.3 <= width <= MNIST_STROKE_RANGE[1] + 0.3, width


def test_specks_and_a_dark_paper_edge_are_ignored(digits):
    images, _ = digits
    rng = np.random.default_rng(3)
    photo = photo_of_digit(images[0], rng)
    clean = to_mnist(photo).image
    messy = photo.copy()
    messy[:, : messy.shape[1] // 12] = 25  # the table beside the sheet
    for _ in range(30):  # specks of dust
        y, x = rng.integers(0, messy.shape[0]), rng.integers(0, messy.shape[1])
        cv2.circle(messy, (int(x), int(y)), 1, 60, -1)
    assert similarity(to_mnist(messy).image, clean) > 0.9


def test_small_scanned_digits_light_on_dark(digits, nearest_neighbour):
    images, labels = digits
    scans = [cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA) for image in images]
    clean = np.mean(nearest_neighbour(list(images)) == labels)
    prepared = np.mean(nearest_neighbour([to_mnist(scan).image for scan in scans]) == labels)
    assert prepared >= clean - 0.15


@pytest.mark.parametrize(
    "image",
    [
        np.full((300, 400), 200, np.uint8),
        np.random.default_rng(0).normal(200, 3, (300, 400)).clip(0, 255).astype(np.uint8),
        np.zeros((16, 16), np.uint8),
    ],
    ids=["blank", "paper-noise", "black"],
)
def test_an_image_without_ink_has_no_digit(image):
    with pytest.raises(NoDigitFound, match="no digit found"):
        to_mnist(image)


def test_non_grayscale_input_is_explained():
    with pytest.raises(ValueError, match="2-D grayscale"):
        to_mnist(np.zeros((10, 10, 3), np.uint8))


def test_an_mnist_digit_comes_out_nearly_as_it_went_in(mnist_path):
    """The models learn from prepared images; an upload already in MNIST's form should lose
    nothing to preparation (before grey strokes and clamped widths, every digit was re-drawn
    at the median width: correlation 0.8 with the original)."""
    with np.load(mnist_path) as data:
        images = data["x_test"][:200]
    prepared = np.stack([to_mnist(image).image for image in images])
    correlations = [similarity(a, b) for a, b in zip(prepared, images, strict=True)]
    assert np.median(correlations) > 0.85
    # Strokes keep their width: thin ones stay thin, thick ones thick.
    widths = [stroke_width((image > 127).astype(np.uint8)) for image in images]
    kept = [stroke_width((image > 127).astype(np.uint8)) for image in prepared]
    assert np.corrcoef(widths, kept)[0, 1] > 0.8


def _row_is_split_right(image: np.ndarray, spans: list[tuple[int, int]]) -> bool:
    boxes = [digit.box for digit in split_row(image, 10)]
    return all(lo <= x + w / 2 < hi for (x, _, w, _), (lo, hi) in zip(boxes, spans, strict=True))


@pytest.mark.parametrize("shape", [(12, 4), (16, 3), (28, 1), (56, 1), (112, 1)])
def test_rows_are_split_at_any_resolution_with_gaps_down_to_a_pixel(mnist_path, shape):
    """Rows of 10 MNIST test digits side by side: each digit's piece lies on that digit."""
    with np.load(mnist_path) as data:
        images = data["x_test"]
    rng = np.random.default_rng(sum(shape))
    height, upscale = shape
    results = []
    for gap in (1, 2, 4):
        for _ in range(6):
            start = int(rng.integers(0, len(images) - 10))
            row, spans = row_of_digits(images[start : start + 10], height, gap, rng, upscale)
            results.append(_row_is_split_right(row, spans))
    assert np.mean(results) >= 17 / 18


def test_rows_of_touching_digits_are_split_at_several_scales(mnist_path):
    """Rows of 10 MNIST test digits whose boxes meet (gap 0, strokes often touching): the
    splitter cut 21 of these 30 rows right with straight cuts, 30 with seams."""
    with np.load(mnist_path) as data:
        images = data["x_test"]
    rng = np.random.default_rng(0)
    results = []
    for height, upscale in ((16, 3), (28, 1), (56, 1)):
        for _ in range(10):
            start = int(rng.integers(0, len(images) - 10))
            row, spans = row_of_digits(images[start : start + 10], height, 0, rng, upscale)
            results.append(_row_is_split_right(row, spans))
    assert sum(results) >= 29


@pytest.mark.parametrize(("height", "first"), [(28, 0), (56, 10)])
def test_touching_1s_in_a_row_are_told_apart(mnist_path, height, first):
    """Ten MNIST 1s side by side, touching: pairs of them are narrower than two digits were
    required to be (0.6 heights each), so they were never cut (WrongDigitCount)."""
    with np.load(mnist_path) as data:
        ones = data["x_test"][data["y_test"] == 1][first : first + 10]
    row, spans = row_of_digits(ones, height, 0, np.random.default_rng(0))
    assert _row_is_split_right(row, spans)


def test_a_stray_mark_beside_the_last_digit_joins_it():
    """A fragment next to the row's last digit once made the splitter index past the end
    (HTTP 500) or merge into the wrong neighbour."""
    rng = np.random.default_rng(0)
    digits = np.zeros((10, 28, 28), np.uint8)
    for index, digit in enumerate(digits):
        cv2.putText(digit, str(index), (5, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    row, spans = row_of_digits(digits, 28, 6, rng)
    last_right = spans[-1][1]
    middle = row.shape[0] // 2
    cv2.circle(row, (last_right + 2, middle - 10), 1, 0, -1)  # a small dot right of the last
    assert _row_is_split_right(row, spans)
    prepared = split_row(row, 10)
    assert len(prepared) == 10


def _scribbles(height: int, width: int) -> np.ndarray:
    """One ink group: 400 strokes between random points, drawn as one line."""
    rng = np.random.default_rng(0)
    page = np.full((height, width), 235, np.uint8)
    points = np.stack(
        [rng.integers(20, width - 20, 400), rng.integers(20, height - 20, 400)], axis=1
    )
    cv2.polylines(page, [points.astype(np.int32)], isClosed=False, color=30, thickness=6)
    return page


def _slab(height: int, width: int) -> np.ndarray:
    page = np.full((height, width), 235, np.uint8)
    page[height // 10 : -height // 10, width // 20 : -width // 20] = 0
    return page


@pytest.mark.parametrize(
    "image",
    [_scribbles(2000, 2000), _scribbles(400, 2000), _slab(2000, 2000), _slab(300, 2000)],
    ids=["scribbles-2000x2000", "scribbles-400x2000", "slab-2000x2000", "slab-300x2000"],
)
def test_a_large_image_of_one_ink_group_is_cut_on_a_small_copy(monkeypatch, image):
    """The seams' time grows with the ink's area and a group's width squared: such an image
    took 0.6 to 1.2 s where a row of digits takes milliseconds. The cut finder now works on a
    copy at most CUT_HEIGHT tall with groups at most CUT_WIDTH wide, and the answer is ten
    pieces covering the ink, or a refusal."""
    seen = {"rows": [], "group widths": []}

    class RecordingSeams(digit_images._Seams):
        def __init__(self, cost: np.ndarray, allowed: np.ndarray) -> None:
            seen["rows"].append(cost.shape[0])
            super().__init__(cost, allowed)

    real_seam_cuts = digit_images._seam_cuts

    def recording_seam_cuts(profile, ink_left_of, box, *args):
        seen["group widths"].append(box[2])
        return real_seam_cuts(profile, ink_left_of, box, *args)

    monkeypatch.setattr(digit_images, "_Seams", RecordingSeams)
    monkeypatch.setattr(digit_images, "_seam_cuts", recording_seam_cuts)
    try:
        boxes = [digit.box for digit in split_row(image, 10)]
    except WrongDigitCount:
        boxes = None
    assert seen["rows"] and max(seen["rows"]) <= digit_images.CUT_HEIGHT
    assert max(seen["group widths"]) <= digit_images.CUT_WIDTH
    if boxes is not None:  # ten pieces, left to right, within the ink and covering it
        ys, xs = np.nonzero(image < 128)
        centres = [x + w / 2 for x, _, w, _ in boxes]
        assert len(boxes) == 10 and centres == sorted(centres)
        assert sum(w for _, _, w, _ in boxes) >= np.ptp(xs)
        for x, y, w, h in boxes:  # the ink's outline, blurred, may reach a pixel or two out
            assert xs.min() - 3 <= x and x + w <= xs.max() + 4
            assert ys.min() - 3 <= y and y + h <= ys.max() + 4


def test_tall_rows_are_cut_on_a_small_copy_as_well_as_at_full_size(mnist_path, monkeypatch):
    """Rows of touching MNIST digits 180 pixels tall (more than CUT_HEIGHT with their ups and
    downs): cut on a copy half as large, the seams scaled back still split them right."""
    with np.load(mnist_path) as data:
        images = data["x_test"]
    rows_seen = []

    class RecordingSeams(digit_images._Seams):
        def __init__(self, cost: np.ndarray, allowed: np.ndarray) -> None:
            rows_seen.append(cost.shape[0])
            super().__init__(cost, allowed)

    monkeypatch.setattr(digit_images, "_Seams", RecordingSeams)
    rng = np.random.default_rng(5)
    results = []
    for _ in range(6):
        start = int(rng.integers(0, len(images) - 10))
        row, spans = row_of_digits(images[start : start + 10], 180, 0, rng)
        results.append(_row_is_split_right(row, spans))
    assert rows_seen and max(rows_seen) <= digit_images.CUT_HEIGHT
    assert sum(results) >= 5


@pytest.mark.parametrize(("start", "seed"), [(1935, 1), (5704, 2)])
def test_a_fragment_counted_as_a_digit_is_swapped_for_a_cut_pair(mnist_path, start, seed):
    """Touching rows where a 5's flag stands apart from its body: flag and body made the
    right count of groups with two touching digits left as one (41, 78), so nothing was
    cut. The flag is now joined to its body when another group cuts convincingly in two."""
    with np.load(mnist_path) as data:
        images = data["x_test"][start : start + 10]
    row, spans = row_of_digits(images, 28, 0, np.random.default_rng(seed))
    assert _row_is_split_right(row, spans)
