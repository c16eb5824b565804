"""Prepare many 28x28 digits at once, giving what `prepare_images` (`to_mnist`, image by
image) gives, to the bit.

`to_mnist` on one small image spends most of its time in per-call overhead: some forty numpy
operations and OpenCV calls on arrays of a few thousand pixels. Here each step that can runs
once for the whole batch, with the same float32 arithmetic: the ink's strength, its
thresholds, the labelling of ink regions and the outlines of the strokes (all images stacked in
one tall image, so one OpenCV call serves them all), the strokes' grey levels; and the centres
of mass, whose float64 sums land on OpenCV's float32 shift (checked image by image, see
SHIFT_ERROR). What is left per image are OpenCV's resizing and shifting, whose
arithmetic only OpenCV knows (run on stacked channels, its resizing rounds some pixels
differently): those are the very calls `to_mnist` makes, on the same arrays. So are the rarer
ways, for the images that take them: ink in several regions (`_digit_box`), strokes thickened
or thinned (`_normalized_strokes`), a centre of mass too near a float32 rounding boundary for
numpy's sums to be sure of OpenCV's (`cv2.moments`).

Images of another size or type, and those in which `to_mnist` finds no digit, go through
`prepare_images` itself.
"""

from __future__ import annotations

import cv2
import numpy as np

from training.data.prepared import prepare_images
from training.digit_images import (
    DIGIT_BOX,
    HIGH,
    LOW,
    MIN_CONTRAST,
    MNIST_SIZE,
    MNIST_STROKE_RANGE,
    REACH_PERCENTILE,  # a 28x28 image is under REACH_PIXELS: `_ink_strength`'s small reach
    SMALL_INPUT,
    STROKE_PEAK_PERCENTILE,
    _digit_box,
    _normalized_strokes,
)

# `to_mnist` enlarges an input this many times before thresholding (`_ink_of`): 28x28 -> 56x56.
FACTOR = -(-SMALL_INPUT // MNIST_SIZE)
WORK = MNIST_SIZE * FACTOR
GAP = 1  # empty rows below each image in the stacked ones: regions never cross them
BORDER_MIDDLE = 2 * MNIST_SIZE  # `_background`'s median: of 4 * 28 border values
# How far numpy's centre of mass may be from OpenCV's: both add 784 float32 values (times
# their column or row) in float64, each sum within 784 * 2**-53 (about 1e-13) of the exact
# one, so the centres (at most 27 px) differ by at most about 2 * 1e-13 * 27 = 5e-12 px.
SHIFT_ERROR = 2e-11
CHUNK = 64  # images prepared together: larger batches leave the processor's caches


def prepare_batch(images: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 digits -> (N, 28, 28) float32, equal to `prepare_images(images)`."""
    prepared = np.empty((len(images), MNIST_SIZE, MNIST_SIZE), np.float32)
    rest = np.ones(len(images), bool)
    if images.shape[1:] == (MNIST_SIZE, MNIST_SIZE) and images.dtype == np.uint8:
        for start in range(0, len(images), CHUNK):
            part = slice(start, start + CHUNK)
            rest[part] = ~_prepare_small(images[part], prepared[part])
    if rest.any():
        prepared[rest] = prepare_images(images[rest])
    return prepared


def _prepare_small(images: np.ndarray, prepared: np.ndarray) -> np.ndarray:
    """Prepare 28x28 digits into `prepared`, as `to_mnist` does; which ones were prepared
    (the others take a way of `to_mnist` not repeated here)."""
    ink = _enlarged(_ink_strength(images))
    peak = ink.reshape(len(ink), -1).max(axis=1)
    parts, boxes = _ink_parts(ink, peak)
    # `_ink_mask` compares the peak as a Python float: float32's 0.12 is below 0.12.
    done = (peak.astype(np.float64) >= MIN_CONTRAST) & (boxes[:, 2] > 0)
    window = _windows(boxes)
    strokes = _strokes(ink * parts, window)
    radius = _pen_radii(strokes, window, boxes)
    canvases = _canvases(strokes, boxes, done & (radius == 0))
    for index in np.flatnonzero(done & (radius != 0)).tolist():
        x, y, width, height = boxes[index].tolist()
        crop = np.ascontiguousarray(strokes[index, y : y + height, x : x + width])
        digit = _normalized_strokes(crop)  # strokes thickened or thinned: `to_mnist`'s way
        top, left = ((MNIST_SIZE - size) // 2 for size in digit.shape)
        canvases[index, top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    shift, mass = _mass_shifts(canvases)
    done &= mass
    matrix = np.zeros((2, 3), np.float32)
    matrix[0, 0] = matrix[1, 1] = 1
    for index in np.flatnonzero(done).tolist():
        matrix[:, 2] = shift[index]  # `_center_by_mass`'s warp
        cv2.warpAffine(
            canvases[index], matrix, (MNIST_SIZE, MNIST_SIZE), dst=prepared[index],
            flags=cv2.INTER_LINEAR,
        )  # fmt: skip
    return done


def _ink_strength(images: np.ndarray) -> np.ndarray:
    """`digit_images._ink_strength` of each 28x28 image (no blur; the paper is the median of
    its border), in the same float32 arithmetic."""
    image = images.astype(np.float32)
    border = np.concatenate([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], axis=1)
    background = np.partition(border, BORDER_MIDDLE, axis=1)[:, BORDER_MIDDLE]
    background = background[:, np.newaxis, np.newaxis]
    difference = background - image
    flat = difference.reshape(len(image), -1)
    high = round(REACH_PERCENTILE / 100 * (flat.shape[1] - 1))
    low = flat.shape[1] - 1 - high
    ordered = np.partition(flat, [low, high], axis=1)
    darker = (ordered[:, high] >= -ordered[:, low])[:, np.newaxis, np.newaxis]
    # Light ink's -difference / d, as difference / -d: IEEE division is the same either way.
    divisor = np.where(darker, np.maximum(background, 1.0), -np.maximum(255.0 - background, 128.0))
    ink = np.divide(difference, divisor, out=difference)
    return np.clip(ink, 0.0, 1.0, out=ink)


def _enlarged(ink: np.ndarray) -> np.ndarray:
    """Each image enlarged FACTOR times, as `_ink_of` does it: one OpenCV call an image."""
    enlarged = np.empty((len(ink), WORK, WORK), np.float32)
    for index, image in enumerate(ink):
        cv2.resize(image, (WORK, WORK), dst=enlarged[index], interpolation=cv2.INTER_LINEAR)
    return enlarged


def _ink_parts(ink: np.ndarray, peak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_ink_mask` of each image (bool) and `_digit_box` of those that have ink (zeros for
    the others), with one labelling of all images stacked."""
    count = len(ink)
    peak = peak.astype(np.float64)  # `float(ink.max())`: the thresholds in Python's floats,
    low = np.maximum(MIN_CONTRAST, LOW * peak).astype(np.float32)  # compared in float32
    high = (HIGH * peak).astype(np.float32)[:, np.newaxis, np.newaxis]
    stacked = np.zeros((count, WORK + GAP, WORK), bool)
    parts = stacked[:, :WORK]
    np.greater(ink, low[:, np.newaxis, np.newaxis], out=parts)
    _, labels = cv2.connectedComponents(
        stacked.view(np.uint8).reshape(-1, WORK), connectivity=8, ltype=cv2.CV_32S
    )
    labels = labels.reshape(count, -1)
    # Labels are at most the image's largest: they are all that one only if they add up to it
    # times the ink's pixels.
    largest = labels.max(axis=1)
    several = labels.sum(axis=1, dtype=np.int64) < largest * np.count_nonzero(stacked, axis=(1, 2))
    # One region holds the peak (above `low`, so in it), which is above `high`: it is the ink.
    boxes = _boxes(stacked)
    for index in np.flatnonzero(several):
        image_labels = labels[index].reshape(WORK + GAP, WORK)[:WORK]
        strong = np.zeros(image_labels.max() + 1, bool)
        strong[image_labels[ink[index] >= high[index]]] = True
        strong[0] = False
        parts[index] = strong[image_labels]
        if parts[index].any():
            boxes[index] = _digit_box(parts[index].view(np.uint8) * np.uint8(255))
    return parts, boxes


def _boxes(stacked: np.ndarray) -> np.ndarray:
    """The (x, y, width, height) box of each image's ink (stacked: images and the rows below
    them): `_digit_box` where it is one region; zeros where there is none."""
    rows, columns = stacked.any(axis=2)[:, :WORK], stacked.any(axis=1)
    top, left = rows.argmax(axis=1), columns.argmax(axis=1)
    bottom = WORK - rows[:, ::-1].argmax(axis=1)
    right = WORK - columns[:, ::-1].argmax(axis=1)
    inked = rows.any(axis=1)
    return np.stack([left, top, right - left, bottom - top], axis=1) * inked[:, np.newaxis]


def _windows(boxes: np.ndarray) -> np.ndarray:
    """Each image's digit box as a (N, WORK, WORK) mask."""
    x, y, width, height = (boxes[:, i, np.newaxis, np.newaxis] for i in range(4))
    rows = np.arange(WORK)[np.newaxis, :, np.newaxis]
    columns = np.arange(WORK)[np.newaxis, np.newaxis, :]
    return (rows >= y) & (rows < y + height) & (columns >= x) & (columns < x + width)


def _strokes(inside: np.ndarray, window: np.ndarray) -> np.ndarray:
    """`digit_images._strokes` over each image's box (outside it: what the same arithmetic
    gives, never read), the ink relative to the 95th percentile of the box's."""
    peak = _percentiles(inside, window & (inside > 0), STROKE_PEAK_PERCENTILE)
    scale = np.maximum(peak, 1e-6).astype(np.float32)[:, np.newaxis, np.newaxis]
    strokes = np.divide(inside, scale)
    # In place: each fresh array this large is mapped and faulted in page by page.
    np.clip(strokes, 0.0, 1.0, out=strokes)
    return np.multiply(strokes, 255, out=strokes)


def _percentiles(values: np.ndarray, chosen: np.ndarray, q: float) -> np.ndarray:
    """`digit_images._percentile(values[i][chosen[i]], q)` of each image as float64 (1.0
    where none is chosen), in the same float32 arithmetic. The values are ordered from the
    largest down only as far as the percentile reaches (q near 100: a few)."""
    counts = chosen.reshape(len(chosen), -1).sum(axis=1)
    last = np.maximum(counts - 1, 0)
    index = q / 100 * last
    below = index.astype(np.int64)
    above = np.minimum(below + 1, last)
    # Ranks from the largest: values negated, padded with +inf after each image's own.
    negated = np.full((len(values), max(1, counts.max())), np.inf, np.float32)
    negated[np.arange(negated.shape[1]) < counts[:, np.newaxis]] = -values[chosen]
    reach = int((last - below).max())
    if reach + 1 < negated.shape[1]:
        negated = np.partition(negated, reach, axis=1)[:, : reach + 1]
    negated.sort(axis=1)
    every = np.arange(len(values))
    low, high = -negated[every, last - below], -negated[every, last - above]
    low[counts == 0] = high[counts == 0] = 1.0  # none chosen: 1.0, as `_strokes` takes it
    fraction = index - below
    step = high - low
    from_above = high - step * (1 - fraction).astype(np.float32)
    from_below = low + step * fraction.astype(np.float32)
    return np.where(fraction >= 0.5, from_above, from_below).astype(np.float64)


def _pen_radii(strokes: np.ndarray, window: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """`_normalized_strokes`' pen radius for each image's strokes in its box: their width by
    `stroke_width`, the outlines of all images found by one OpenCV call on them stacked."""
    count = len(strokes)
    stacked = np.zeros((count, WORK + 1, WORK), bool)  # an empty row between images
    mask = np.greater(strokes, 127, out=stacked[:, :WORK])
    mask &= window
    contours, _ = cv2.findContours(
        stacked.view(np.uint8).reshape(-1, WORK), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
    )
    outline = np.zeros(count)
    for contour in contours:
        # Each length is a sum of float32 steps (1 and sqrt 2) in float64, exact, and so is
        # their sum: in any order, the same outline as the image's own contours give.
        outline[contour[0, 0, 1] // (WORK + 1)] += cv2.arcLength(contour, True)
    width = 2.0 * stacked.reshape(count, -1).sum(axis=1) / np.maximum(outline, 1.0)
    scale = DIGIT_BOX / np.maximum(boxes[:, 2:].max(axis=1), 1)
    low, high = (limit / scale for limit in MNIST_STROKE_RANGE)
    return np.round((np.minimum(np.maximum(width, low), high) - width) / 2)


def _canvases(strokes: np.ndarray, boxes: np.ndarray, done: np.ndarray) -> np.ndarray:
    """`_normalized_strokes` (radius 0: the box's strokes scaled to fit 20x20) placed in the
    middle of 28x28 as `_center_by_mass` places them, for the images `done`."""
    canvases = np.zeros((len(strokes), MNIST_SIZE, MNIST_SIZE), np.float32)
    scale = DIGIT_BOX / np.maximum(boxes[:, 2:].max(axis=1), 1)
    fitted = np.maximum(1, np.round(boxes[:, 2:] * scale[:, np.newaxis])).astype(np.int64)
    corner = (MNIST_SIZE - fitted) // 2
    places = np.concatenate([boxes, fitted, corner], axis=1)[done].tolist()
    for index, (x, y, width, height, fit_width, fit_height, left, top) in zip(
        np.flatnonzero(done).tolist(), places, strict=True
    ):
        cv2.resize(
            strokes[index, y : y + height, x : x + width], (fit_width, fit_height),
            dst=canvases[index, top : top + fit_height, left : left + fit_width],
            interpolation=cv2.INTER_AREA,
        )  # fmt: skip
    return canvases


def _mass_shifts(canvases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_center_by_mass`'s float32 (x, y) shift of each canvas, and whether it has mass.
    Where numpy's sums and OpenCV's could round to different float32 shifts, OpenCV's."""
    cells = canvases.astype(np.float64)
    total = cells.sum(axis=(1, 2))
    positions = np.arange(MNIST_SIZE, dtype=np.float64)
    mass_x = (cells.sum(axis=1) * positions).sum(axis=1)
    mass_y = (cells.sum(axis=2) * positions).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = MNIST_SIZE / 2 - 0.5 - np.stack([mass_x, mass_y], axis=1) / total[:, np.newaxis]
    shift = exact.astype(np.float32)
    sure = np.all(
        ((exact - SHIFT_ERROR).astype(np.float32) == shift)
        & ((exact + SHIFT_ERROR).astype(np.float32) == shift),
        axis=1,
    )
    mass = total > 0
    for index in np.flatnonzero(mass & ~sure).tolist():
        moments = cv2.moments(canvases[index])
        center = np.array([moments["m10"], moments["m01"]]) / moments["m00"]
        shift[index] = MNIST_SIZE / 2 - 0.5 - center
    return shift, mass
