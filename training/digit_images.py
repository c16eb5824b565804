"""Turn a photo, scan or drawing of one handwritten digit into what MNIST looks like.

MNIST digits are white strokes on black, anti-aliased, fitted into a 20x20 box keeping their
aspect ratio and centred by centre of mass in 28x28, with strokes about 2-3 pixels wide. Real
uploads differ in every way: dark ink on light paper or the reverse, uneven light and shadows,
paper texture, specks, paper edges, a small digit off-centre in a large frame, a thin ballpoint
line or a marker stroke. The steps below undo each difference in turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MNIST_SIZE = 28
DIGIT_BOX = 20
WORK_SIZE = 2000  # photos are downscaled to this many pixels on their long side first
# Median stroke width of MNIST's training digits (pixels above 127, by `stroke_width`, on the
# first 2,000 images): 2.39 px, with 10% below 1.76 and 10% above 3.45.
MNIST_STROKE_WIDTH = 2.39
MIN_CONTRAST = 0.12  # ink differs from the paper by at least this fraction of its brightness
LOW, HIGH = 0.2, 0.5  # hysteresis thresholds, as fractions of the strongest ink


class NoDigitFound(ValueError):
    """The image holds nothing that looks like ink."""


class WrongDigitCount(ValueError):
    """A row of digits held another number of digits than expected."""

    def __init__(self, found: int, expected: int) -> None:
        super().__init__(
            f"found {found} digit{'s' * (found != 1)} in the row, expected {expected}. Write "
            f"the digits side by side with a gap between neighbours, or upload each digit as "
            f"its own image."
        )
        self.found = found
        self.expected = expected


@dataclass(frozen=True)
class PreparedDigit:
    """The 28x28 image the model sees (float32, 0..255, white on black) and where the digit was."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # x, y, width, height in the (possibly downscaled) input


def to_mnist(gray: np.ndarray) -> PreparedDigit:
    """Prepare one digit from a 2-D uint8 grayscale image of any size and polarity."""
    if gray.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got shape {gray.shape}.")
    gray = _downscale(gray)
    ink = _ink_strength(gray)
    mask = _ink_mask(ink)
    x, y, width, height = _digit_box(mask)
    strokes = _normalized_strokes(mask[y : y + height, x : x + width])
    return PreparedDigit(image=_center_by_mass(strokes), box=(x, y, width, height))


def split_row(gray: np.ndarray, expected: int) -> list[PreparedDigit]:
    """Prepare each digit of an image holding a row of digits, left to right.

    The ink is found as for one digit; its parts are grouped into digits by their columns
    (parts that overlap horizontally, like a 5's flag and its body, are one digit). Knowing how
    many digits to expect, the fewest changes are made to reach that count: a small stray part
    joins its nearest neighbour, and the widest group (two digits that touch) is cut at its
    thinnest column. Each digit is then normalised on its own. `WrongDigitCount` when the count
    still differs.
    """
    if gray.ndim != 2:
        raise ValueError(f"Expected a 2-D grayscale image, got shape {gray.shape}.")
    gray = _downscale(gray)
    mask = _ink_mask(_ink_strength(gray))
    columns = _digit_columns(mask)
    found = len(columns)
    columns = _merge_strays(columns, expected)
    columns = _cut_touching(columns, expected)
    if len(columns) != expected:
        raise WrongDigitCount(found, expected)
    digits = []
    for parts in columns:
        x, y, width, height = cv2.boundingRect(parts)
        strokes = _normalized_strokes(parts[y : y + height, x : x + width] * 255)
        digits.append(PreparedDigit(image=_center_by_mass(strokes), box=(x, y, width, height)))
    return digits


def _digit_columns(mask: np.ndarray) -> list[np.ndarray]:
    """A 0/1 image of each digit's parts, left to right: ink components, without specks or
    (when anything else is there) edges, grouped while they overlap horizontally.

    In a row cropped tightly, digits touch the top and bottom; an edge is a component along
    the border: wider than a third of the row, or against a side and nearly as tall as it.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    height, width = mask.shape
    components = []
    for index in range(1, count):
        x, y, w, h, area = (int(value) for value in stats[index])
        on_side = x == 0 or x + w >= width
        on_top_or_bottom = y == 0 or y + h >= height
        is_edge = ((on_side or on_top_or_bottom) and w > width / 3) or (
            on_side and h > 0.8 * height
        )
        components.append((x, w, area, is_edge, index))
    inside = [c for c in components if not c[3]] or components
    if not inside:
        raise NoDigitFound("no digit found: no ink in the image.")
    minimum = max(4, 0.05 * max(c[2] for c in inside))
    groups: list[list[int]] = []  # each: [left, right, component index, ...]
    for x, w, _, _, index in sorted(c for c in inside if c[2] >= minimum):
        if groups and x < groups[-1][1] - 0.3 * w:  # overlaps the previous digit's columns
            groups[-1][1] = max(groups[-1][1], x + w)
            groups[-1].append(index)
        else:
            groups.append([x, x + w, index])
    return [np.isin(labels, indices).astype(np.uint8) for _, _, *indices in groups]


def _merge_strays(columns: list[np.ndarray], expected: int) -> list[np.ndarray]:
    """While there are too many groups, join the one with the least ink (a stray part of a
    digit, far less ink than a digit) to its nearer neighbour."""
    columns = list(columns)
    while len(columns) > expected:
        areas = [int(parts.sum()) for parts in columns]
        smallest = int(np.argmin(areas))
        if areas[smallest] > 0.3 * float(np.median(areas)):
            break
        centre = _centre_x(columns[smallest])
        neighbours = [i for i in (smallest - 1, smallest + 1) if 0 <= i < len(columns)]
        nearest = min(neighbours, key=lambda i: abs(_centre_x(columns[i]) - centre))
        columns[nearest] = columns[nearest] | columns.pop(smallest)
        if nearest > smallest:
            nearest -= 1
    return columns


def _cut_touching(columns: list[np.ndarray], expected: int) -> list[np.ndarray]:
    """While there are too few groups, cut the widest one at its thinnest column in its
    middle half, if it is as wide as two digits: wider than tall and half again as wide as
    the median group (single digits are taller than wide)."""
    columns = list(columns)
    while len(columns) < expected:
        boxes = [cv2.boundingRect(parts) for parts in columns]
        widths = [w for _, _, w, _ in boxes]
        widest = int(np.argmax([w / max(h, 1) for _, _, w, h in boxes]))
        x, _, width, height = boxes[widest]
        if width < 1.1 * height or width < 1.5 * float(np.median(widths)) or width < 4:
            break
        profile = columns[widest][:, x : x + width].sum(axis=0)
        middle = slice(width // 4, max(width // 4 + 1, 3 * width // 4))
        cut = x + middle.start + int(np.argmin(profile[middle]))
        left, right = columns[widest].copy(), columns[widest].copy()
        left[:, cut:] = 0
        right[:, :cut] = 0
        columns[widest : widest + 1] = [left, right]
    return columns


def _centre_x(parts: np.ndarray) -> float:
    return float(np.mean(np.nonzero(parts)[1]))


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
    image = cv2.GaussianBlur(gray, (0, 0), max(0.5, longest / 2000)).astype(np.float32)
    background = _background(image)
    # Each side is measured against its headroom: dark ink against the paper's brightness,
    # light ink against what is left above the field's (at least half the scale, or the
    # texture of bright paper would pass for light ink). Both cancel uneven light: measured
    # against the full scale, light digits on the lighter side of a dark field under a
    # gradient fell below the hysteresis threshold.
    difference = background - image  # grey levels darker than the paper
    reach = 99.99 if image.size > 10_000 else 99.0
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
    count, labels, _, _ = cv2.connectedComponentsWithStats(
        (ink > low).astype(np.uint8), connectivity=8
    )
    peaks = np.zeros(count, np.float32)
    np.maximum.at(peaks, labels.ravel(), ink.ravel())
    strong = peaks >= high
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
    """The digit with MNIST's stroke width, fitted in the 20x20 box, as float32 0..255.

    The stroke width is measured on the crop, then the strokes are dilated or eroded to the
    width MNIST's would have at the crop's scale; scaling down to the box with area averaging
    anti-aliases them as MNIST's digits are.
    """
    scale = DIGIT_BOX / max(crop.shape)
    radius = round((MNIST_STROKE_WIDTH / scale - stroke_width(crop)) / 2)
    if radius:
        pad = max(radius, 0)
        padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
        adjusted = cv2.dilate(padded, pen) if radius > 0 else cv2.erode(padded, pen)
        if cv2.countNonZero(adjusted) >= 0.2 * cv2.countNonZero(padded):  # never erase it
            crop = adjusted
    scale = DIGIT_BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.float32)


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
