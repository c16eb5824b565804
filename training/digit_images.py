"""Turn a photo, scan or drawing of one handwritten digit into what MNIST looks like.

MNIST digits are white strokes on black, anti-aliased, fitted into a 20x20 box keeping their
aspect ratio and centred by centre of mass in 28x28, with strokes about 2-3 pixels wide. Real
uploads differ in every way: dark ink on light paper or the reverse, uneven light and shadows,
paper texture, specks, paper edges, a small digit off-centre in a large frame, a thin ballpoint
line or a marker stroke. The steps below undo each difference in turn.

An image holding a row of digits is split into digits by `training.digit_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MNIST_SIZE = 28
DIGIT_BOX = 20
WORK_SIZE = 2000  # photos are downscaled to this many pixels on their long side first
SMALL_INPUT = 56  # inputs shorter than this are enlarged (in whole steps) before thresholding
# Stroke widths of MNIST's training digits (pixels above 127, by `stroke_width`, on the first
# 2,000 images): median 2.39 px, 10% below 1.76 and 10% above 3.45. A digit's strokes are
# brought into that range (to its nearer end), so that a digit already in it, like MNIST's own,
# keeps its strokes as they are.
MNIST_STROKE_RANGE = (1.76, 3.45)
MIN_CONTRAST = 0.12  # ink differs from the paper by at least this fraction of its brightness
LOW, HIGH = 0.2, 0.5  # hysteresis thresholds, as fractions of the strongest ink
GREY_PEN_RADIUS = 4  # strokes are adjusted with a round pen up to this radius, an octagon beyond
# Which side of the paper is ink: the side whose reach, this percentile of the differences from
# the paper, goes further; images of more than REACH_PIXELS pixels use the higher one.
REACH_PERCENTILE, LARGE_REACH_PERCENTILE, REACH_PIXELS = 99.0, 99.99, 10_000
STROKE_PEAK_PERCENTILE = 95  # the strokes' grey levels are relative to this percentile of ink


class NoDigitFound(ValueError):
    """The image holds nothing that looks like ink."""


@dataclass(frozen=True)
class PreparedDigit:
    """The 28x28 image the model sees (float32, 0..255, white on black) and where the digit was."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # x, y, width, height in the (possibly downscaled) input


def to_mnist(gray: np.ndarray) -> PreparedDigit:
    """Prepare one digit from a 2-D uint8 grayscale image of any size and polarity."""
    if gray.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got shape {gray.shape}.")
    ink, mask, factor = _ink_of(gray)
    x, y, width, height = _digit_box(mask)
    window = (slice(y, y + height), slice(x, x + width))
    strokes = _normalized_strokes(_strokes(ink[window], mask[window]))
    return PreparedDigit(
        image=_center_by_mass(strokes), box=_unscaled((x, y, width, height), factor)
    )


def _ink_of(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The ink strength of a grayscale image (0..1), the ink as a 0/255 mask, and how many
    times larger than the input (after `_downscale`) both are.

    Ink is found at the input's resolution, then small inputs (a 28x28 digit, a scanned row)
    are enlarged before thresholding: the mask's outline falls between the input's pixels, so
    that stroke widths are adjusted in fractions of a pixel and the final downscale
    anti-aliases the strokes as MNIST's are. (Thresholded at 28x28, strokes moved in steps of
    2 pixels and came out jagged and binary, unlike anything MNIST holds.)
    """
    gray = _downscale(gray)
    ink = _ink_strength(gray)
    factor = max(1, min(-(-SMALL_INPUT // min(ink.shape)), WORK_SIZE // max(ink.shape)))
    if factor > 1:
        size = (ink.shape[1] * factor, ink.shape[0] * factor)
        ink = cv2.resize(ink, size, interpolation=cv2.INTER_LINEAR)
    return ink, _ink_mask(ink), factor


def _strokes(ink: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """The digit's strokes in grey levels (0..255): the ink's own strength within its parts,
    relative to the strongest ink. Strokes keep their anti-aliased edges, so an MNIST digit
    comes out as it went in."""
    inside = ink * (parts > 0)
    peak = _percentile(inside[inside > 0], STROKE_PEAK_PERCENTILE) if inside.any() else 1.0
    return np.clip(inside / max(peak, 1e-6), 0.0, 1.0).astype(np.float32) * 255


def _percentile(values: np.ndarray, q: float) -> float:
    """`np.percentile(values, q)` (linear interpolation, the same float) from one partition:
    np.percentile's own overhead was a fifth of a 28x28 upload's preparation."""
    index = q / 100 * (values.size - 1)
    below = int(index)
    above = min(below + 1, values.size - 1)
    low, high = np.partition(values, [below, above])[[below, above]]
    fraction = index - below
    step = high - low
    # numpy's own interpolation: from the nearer side, so that q=100 gives the maximum exactly.
    return float(high - step * (1 - fraction) if fraction >= 0.5 else low + step * fraction)


def _unscaled(box: tuple[int, int, int, int], factor: int) -> tuple[int, int, int, int]:
    x, y, width, height = box
    return x // factor, y // factor, -(-width // factor), -(-height // factor)


def _downscale(gray: np.ndarray) -> np.ndarray:
    longest = max(gray.shape)
    if longest <= WORK_SIZE:
        return gray
    scale = WORK_SIZE / longest
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _ink_strength(gray: np.ndarray) -> np.ndarray:
    """How much darker (or lighter) than the paper around it each pixel is, 0..1, ink high.

    The paper's brightness is estimated by a median over windows a sixth of the image wide,
    where ink is a minority, computed on a downscaled copy; measuring against it cancels
    lighting gradients and shadows. Which side is ink is decided after that, in grey levels: the
    side, darker or lighter than the paper, that reaches further. (Before it, the skew of the
    brightness comes from the lighting, not from the few pixels of ink.) Tiny images (scanned
    16x16 digits) have one background: the median of their border.
    """
    longest = max(gray.shape)
    image = gray.astype(np.float32)
    if longest >= 200:  # photos: sensor noise and paper texture (a small scan has neither)
        image = cv2.GaussianBlur(image, (0, 0), max(0.5, longest / 2000))
    background = _background(image)
    # Each side is measured against its headroom: dark ink against the paper's brightness,
    # light ink against what is left above the field's (at least half the scale, or the
    # texture of bright paper would pass for light ink). Both cancel uneven light: measured
    # against the full scale, light digits on the lighter side of a dark field under a
    # gradient fell below the hysteresis threshold.
    difference = background - image  # grey levels darker than the paper
    reach = LARGE_REACH_PERCENTILE if image.size > REACH_PIXELS else REACH_PERCENTILE
    # The darker side's reach is the reach-th percentile; the lighter side's, minus the
    # (100 - reach)th. Both from one partition (np.percentile costs several times more).
    flat = difference.ravel()
    high = round(reach / 100 * (flat.size - 1))
    low = flat.size - 1 - high
    lighter, darker = np.partition(flat, [low, high])[[low, high]]
    if darker >= -lighter:
        return np.clip(difference / np.maximum(background, 1.0), 0.0, 1.0)
    return np.clip(-difference / np.maximum(255.0 - background, 128.0), 0.0, 1.0)


def _background(image: np.ndarray) -> np.ndarray:
    if min(image.shape) < 64:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        middle = len(border) // 2  # the median by partition: np.median costs 5x more here
        return np.full_like(image, float(np.partition(border, middle)[middle]))
    scale = 200 / max(image.shape)
    small_size = (max(8, round(image.shape[1] * scale)), max(8, round(image.shape[0] * scale)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA).astype(np.uint8)
    window = max(3, (min(small.shape) // 6) | 1)
    background = cv2.medianBlur(small, window).astype(np.float32)
    size = (image.shape[1], image.shape[0])
    return cv2.resize(background, size, interpolation=cv2.INTER_LINEAR)


def _ink_mask(ink: np.ndarray) -> np.ndarray:
    """Ink pixels, by hysteresis relative to the strongest ink: regions above LOW of the peak
    that hold pixels above HIGH of it. Shading, paper texture and the blurred halo around
    strokes cross a low absolute threshold in places but stay far below the ink's peak."""
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise NoDigitFound(
            "no digit found: nothing in the image stands out from the paper. Photograph a "
            "digit in dark ink on light paper (or light on dark), filling part of the frame."
        )
    low, high = max(MIN_CONTRAST, LOW * peak), HIGH * peak
    count, labels = cv2.connectedComponents((ink > low).astype(np.uint8), connectivity=8)
    strong = np.zeros(count, bool)
    strong[labels[ink >= high]] = True  # the regions holding a pixel at least `high`
    strong[0] = False  # label 0 is the background
    return strong[labels].astype(np.uint8) * 255


def _digit_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box of the digit: the largest ink component and those near it, ignoring
    specks and, when anything else is there, components that touch the border."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = mask.shape
    components = []
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        touches_border = x == 0 or y == 0 or x + w >= width or y + h >= height
        components.append((area, touches_border, index))
    if not components:
        raise NoDigitFound("no digit found: no ink in the image.")
    inside = [c for c in components if not c[1]] or components
    largest_area = max(area for area, _, _ in inside)
    minimum = max(4, 0.05 * largest_area)
    kept = [index for area, _, index in inside if area >= minimum]
    # Keep parts near the largest (a 5's flag, a 4's stroke) but not a far-away mark.
    main = max(inside)[2]
    x, y, w, h, _ = stats[main]
    reach = 0.6 * max(w, h)
    box = [x, y, x + w, y + h]
    for index in kept:
        cx, cy, cw, ch, _ = stats[index]
        if (
            cx <= box[2] + reach
            and cx + cw >= box[0] - reach
            and (cy <= box[3] + reach and cy + ch >= box[1] - reach)
        ):
            box = [min(box[0], cx), min(box[1], cy), max(box[2], cx + cw), max(box[3], cy + ch)]
    return box[0], box[1], box[2] - box[0], box[3] - box[1]


def _normalized_strokes(crop: np.ndarray) -> np.ndarray:
    """The digit (grey levels 0..255) with strokes in MNIST's range of widths, fitted in the
    20x20 box, as float32 0..255.

    The stroke width is measured on the crop; when it is outside the range MNIST's would have
    at the crop's scale, the strokes are dilated or eroded to the range's nearer end; scaling
    down to the box with area averaging anti-aliases them as MNIST's digits are.
    """
    scale = DIGIT_BOX / max(crop.shape)
    width = stroke_width((crop > 127).astype(np.uint8))
    low, high = (limit / scale for limit in MNIST_STROKE_RANGE)
    radius = round((min(max(width, low), high) - width) / 2)
    if radius:
        pad = max(radius, 0)
        padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        adjusted = _pen_adjusted(padded, radius)
        if cv2.countNonZero(adjusted) >= 0.2 * cv2.countNonZero(padded):  # never erase it
            crop = adjusted
    scale = DIGIT_BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _pen_adjusted(strokes: np.ndarray, radius: int) -> np.ndarray:
    """The strokes (grey levels) dilated (radius > 0) or eroded (radius < 0) by a round pen.

    A round pen costs its area per pixel: a thin line across a 2000x2000 drawing needs a pen of
    tens of pixels, and took 1.3-1.9 s. Beyond GREY_PEN_RADIUS the pen is an octagon instead,
    made of steps of a 3x3 cross and a 3x3 square in turn, which costs its radius.
    """
    grow = cv2.dilate if radius > 0 else cv2.erode
    if abs(radius) <= GREY_PEN_RADIUS:
        return grow(
            strokes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
        )
    adjusted = strokes
    for step in range(round(abs(radius) * OCTAGON_STEPS_PER_RADIUS)):
        adjusted = grow(adjusted, _CROSS if step % 2 == 0 else _SQUARE)
    return adjusted


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)
# n steps make an octagon of perimeter (4 + 2 sqrt 2) n; a round pen of radius r, 2 pi r. As
# wide on average (perimeter / pi) as the round pen it stands for:
OCTAGON_STEPS_PER_RADIUS = 2 * np.pi / (4 + 2 * np.sqrt(2))


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary image: a stroke's area is its length times its width and
    its outline is twice its length, so width = 2 * area / outline."""
    contours, _ = cv2.findContours(
        (mask > 0).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE
    )
    outline = sum(cv2.arcLength(contour, True) for contour in contours)
    return 2.0 * cv2.countNonZero(mask) / max(outline, 1.0)


def _center_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place the digit in 28x28 with its centre of mass at the centre, as MNIST does."""
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    height, width = digit.shape
    top, left = (MNIST_SIZE - height) // 2, (MNIST_SIZE - width) // 2
    canvas[top : top + height, left : left + width] = digit
    moments = cv2.moments(canvas)
    total = moments["m00"]
    if total <= 0:
        raise NoDigitFound("no digit found: nothing left after cleaning the image.")
    shift_y = MNIST_SIZE / 2 - 0.5 - moments["m01"] / total
    shift_x = MNIST_SIZE / 2 - 0.5 - moments["m10"] / total
    matrix = np.float32([[1, 0, shift_x], [0, 1, shift_y]])
    return cv2.warpAffine(canvas, matrix, (MNIST_SIZE, MNIST_SIZE), flags=cv2.INTER_LINEAR)
