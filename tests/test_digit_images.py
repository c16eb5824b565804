"""Preprocessing uploads into MNIST's form: properties that hold for any digit."""

import cv2
import numpy as np
import pytest

from tests.photo_like import decode_gray, encode, photo_of_digit
from training import digit_images
from training.digit_images import MNIST_STROKE_RANGE, NoDigitFound, stroke_width, to_mnist


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


@pytest.mark.parametrize("pen", [1, 3, 150])
def test_a_large_pen_adjustment_matches_the_grey_pen(pen, monkeypatch):
    """Strokes far from MNIST's width at the crop's scale are adjusted with an octagonal pen
    (its cost grows with its radius, a round pen's with its area); the digit comes out as a
    round pen makes it (each pen here needs a radius of tens of pixels)."""
    page = np.full((2000, 2000), 235, np.uint8)
    cv2.polylines(page, [np.array([[60, 60], [1940, 60], [900, 1940]], np.int32)], False, 40, pen)
    cv2.circle(page, (1000, 900), 500, 40, pen)
    by_octagon = to_mnist(page).image
    monkeypatch.setattr(digit_images, "GREY_PEN_RADIUS", 10_000)
    by_round_pen = to_mnist(page).image
    assert similarity(by_octagon, by_round_pen) > 0.98
    assert abs(float(by_octagon.sum()) / float(by_round_pen.sum()) - 1) < 0.05


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
