"""Photo-like uploads made from MNIST test digits, for preprocessing and prediction tests.

Each image: the digit drawn in ink on textured paper under a lighting gradient and a soft
shadow, slightly rotated and seen in perspective, small and off-centre in a large frame, with a
thin or thick pen; some with light ink on a dark field; saved as JPEG (or PNG) bytes.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def photo_of_digit(digit: np.ndarray, rng: np.random.Generator, invert: bool = False) -> np.ndarray:
    """A grayscale uint8 'photo' of the 28x28 MNIST digit (white on black)."""
    frame_height = int(rng.integers(480, 1600))
    frame_width = int(frame_height * rng.uniform(0.7, 1.4))
    digit_size = int(frame_height * rng.uniform(0.12, 0.45))

    ink = cv2.resize(digit, (digit_size, digit_size), interpolation=cv2.INTER_CUBIC)
    ink = cv2.GaussianBlur(ink, (0, 0), digit_size / 120)
    pen = int(rng.integers(-1, 3)) * max(1, digit_size // 60)  # thinner, same or thicker
    if pen:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(pen) * 2 + 1,) * 2)
        ink = cv2.dilate(ink, kernel) if pen > 0 else cv2.erode(ink, kernel)
    coverage = np.zeros((frame_height, frame_width), np.float32)
    top = int(rng.integers(0, frame_height - digit_size))
    left = int(rng.integers(0, frame_width - digit_size))
    coverage[top : top + digit_size, left : left + digit_size] = ink.astype(np.float32) / 255

    center = (left + digit_size / 2, top + digit_size / 2)
    rotation = cv2.getRotationMatrix2D(center, float(rng.uniform(-12, 12)), 1.0)
    coverage = cv2.warpAffine(coverage, rotation, (frame_width, frame_height))
    corners = np.float32([[0, 0], [frame_width, 0], [frame_width, frame_height], [0, frame_height]])
    jitter = rng.uniform(-0.06, 0.06, size=(4, 2)) * [frame_width, frame_height]
    perspective = cv2.getPerspectiveTransform(corners, (corners + jitter).astype(np.float32))
    coverage = cv2.warpPerspective(coverage, perspective, (frame_width, frame_height))

    return _photograph(coverage, rng, invert)


def photo_of_row(digits: np.ndarray, rng: np.random.Generator, invert: bool = False) -> np.ndarray:
    """A grayscale 'photo' of the MNIST digits (N, 28, 28) written side by side on paper,
    each at its own height, with uneven spacing, the row slightly tilted."""
    size = int(rng.integers(60, 160))
    steps = (size * rng.uniform(0.9, 1.15, len(digits))).astype(int)
    margin = size
    width, height = 2 * margin + int(steps.sum()), 2 * margin + size
    coverage = np.zeros((height, width), np.float32)
    left = margin
    for digit, step in zip(digits, steps, strict=True):
        ink = cv2.resize(digit, (size, size), interpolation=cv2.INTER_CUBIC)
        top = margin + int(rng.integers(-size // 10, size // 10 + 1))
        coverage[top : top + size, left : left + size] += ink.astype(np.float32) / 255
        left += step
    rotation = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-3, 3)), 1.0)
    coverage = cv2.warpAffine(np.clip(coverage, 0, 1), rotation, (width, height))
    return _photograph(coverage, rng, invert)


def _photograph(coverage: np.ndarray, rng: np.random.Generator, invert: bool) -> np.ndarray:
    """Ink of the given coverage (0..1) on paper, optionally inverted, with sensor noise."""
    paper = _paper(*coverage.shape, rng)
    ink_level = rng.uniform(20, 90)
    photo = paper * (1 - coverage) + ink_level * coverage
    if invert:
        photo = 255 - photo
    photo += rng.normal(0, 4, photo.shape)  # sensor noise
    return np.clip(photo, 0, 255).astype(np.uint8)


def _paper(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Off-white paper with fibre texture, a lighting gradient and a soft shadow."""
    base = rng.uniform(175, 240)
    fibres = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 2)
    paper = base + 6 * fibres / (fibres.std() + 1e-6)
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * columns / width + np.sin(angle) * rows / height) / 1.5
    paper *= 1.0 - rng.uniform(0.2, 0.45) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    shadow_center = rng.uniform(0, 1, 2) * [width, height]
    distance = np.hypot(columns - shadow_center[0], rows - shadow_center[1])
    paper *= 1.0 - rng.uniform(0.0, 0.3) * np.exp(-((distance / (0.3 * max(height, width))) ** 2))
    return paper


def encode(image: np.ndarray, image_format: str = "JPEG", quality: int = 80) -> bytes:
    """The image as file bytes in `image_format` (JPEG, PNG, ...)."""
    buffer = io.BytesIO()
    options = {"quality": quality} if image_format == "JPEG" else {}
    Image.fromarray(image).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def decode_gray(data: bytes) -> np.ndarray:
    """File bytes back to a grayscale uint8 array, as an upload would arrive."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


def row_of_digits(
    digits: np.ndarray,
    digit_height: int,
    gap: int,
    rng: np.random.Generator,
    upscale: int = 1,
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A scan-like row of the MNIST digits (N, 28, 28): dark ink on white paper, each digit's
    ink `digit_height` pixels tall (as MNIST's 20-pixel box scales), `gap` pixels between the
    ink of neighbours (0: their boxes meet; below 0: they overlap, so strokes may touch), each
    digit a little up or down; then scaled up `upscale` times (a low-resolution scan enlarged).
    Returns the image and each digit's ink columns (first, last + 1) in it."""
    scale = digit_height / 20
    crops = []
    for digit in digits:
        rows, columns = np.nonzero(digit)
        crop = digit[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crops.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    margin = digit_height
    width = 2 * margin + sum(crop.shape[1] for crop in crops) + gap * (len(crops) - 1)
    height = 2 * margin + max(crop.shape[0] for crop in crops)
    ink = np.zeros((height, width), np.uint8)
    spans, left = [], margin
    for crop in crops:
        top = margin + int(rng.integers(-digit_height // 8, digit_height // 8 + 1))
        region = ink[top : top + crop.shape[0], left : left + crop.shape[1]]
        np.maximum(region, crop, out=region)
        spans.append((left * upscale, (left + crop.shape[1]) * upscale))
        left += crop.shape[1] + gap
    if upscale > 1:
        interpolation = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        ink = cv2.resize(ink, (width * upscale, height * upscale), interpolation=interpolation)
    return 255 - ink, spans
