"""Distort raw digit images the way real uploads differ from MNIST, before they are prepared.

Preparation (`training.digit_images.to_mnist`) undoes what it can of an upload's differences:
polarity, lighting, position, size, stroke width. What it cannot undo reaches the model: the
slant and rotation of a hand, a squat or tall digit, wobbly strokes, the blocky outline of a
low-resolution scan, the ragged edge of a thin or blurred pen. Training images get these
distortions (numpy and OpenCV on 28x28 images, tens of microseconds each) and are then
prepared exactly as uploads are.
"""

from __future__ import annotations

import cv2
import numpy as np

PAD = 8  # room around the 28x28 digit so that rotating or stretching it never clips it


def augment_digit(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random distortion of a 2-D uint8 image of a digit (white on black), as uint8."""
    canvas = cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=0)
    canvas = _affine(canvas, rng)
    if rng.random() < 0.5:
        canvas = _elastic(canvas, rng)
    if rng.random() < 0.4:
        canvas = _pen_width(canvas, rng)
    if rng.random() < 0.3:
        canvas = _low_resolution(canvas, rng)
    if rng.random() < 0.2:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.2))
    if rng.random() < 0.2:
        noise = rng.normal(0.0, rng.uniform(5, 25), canvas.shape)
        canvas = np.clip(canvas + noise, 0, 255).astype(np.uint8)
    return canvas


def _affine(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation up to 12 degrees, shear up to 0.3, and a squat or tall aspect (0.75-1.3)."""
    size = canvas.shape[0]
    angle = np.deg2rad(rng.uniform(-12, 12))
    shear = rng.uniform(-0.3, 0.3)
    aspect = np.exp(rng.uniform(np.log(0.75), np.log(1.3)))
    scale = rng.uniform(0.9, 1.1)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    stretch = np.array([[scale * np.sqrt(aspect), 0], [0, scale / np.sqrt(aspect)]])
    linear = rotation @ np.array([[1, shear], [0, 1]]) @ stretch
    centre = np.array([size / 2, size / 2])
    matrix = np.hstack([linear, (centre - linear @ centre)[:, None]]).astype(np.float32)
    return cv2.warpAffine(canvas, matrix, (size, size), flags=cv2.INTER_LINEAR)


def _elastic(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Simard et al.'s elastic distortion: a smooth random displacement field (wobbly strokes)."""
    size = canvas.shape[0]
    alpha, sigma = rng.uniform(20, 34), 4.0
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    grid_x, grid_y = np.meshgrid(
        np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32)
    )
    return cv2.remap(canvas, grid_x + alpha * dx, grid_y + alpha * dy, cv2.INTER_LINEAR)


def _pen_width(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thinner or thicker pen, at twice the resolution so that the change is under a pixel."""
    size = canvas.shape[0]
    large = cv2.resize(canvas, (2 * size, 2 * size), interpolation=cv2.INTER_LINEAR)
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(rng.integers(2, 5)),) * 2)
    large = cv2.dilate(large, pen) if rng.random() < 0.5 else cv2.erode(large, pen)
    return cv2.resize(large, (size, size), interpolation=cv2.INTER_AREA)


def _low_resolution(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit scanned at 8 to 16 pixels and scaled back up (blocky or smooth)."""
    rows, columns = np.nonzero(canvas > 40)
    if len(rows) == 0:
        return canvas
    top, bottom = rows.min(), rows.max() + 1
    left, right = columns.min(), columns.max() + 1
    crop = canvas[top:bottom, left:right]
    target = int(rng.integers(8, 17))
    scale = target / max(crop.shape)
    small_size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = cv2.resize(crop, small_size, interpolation=cv2.INTER_AREA)
    upscale = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
    restored = cv2.resize(small, (crop.shape[1], crop.shape[0]), interpolation=upscale)
    result = canvas.copy()
    result[top:bottom, left:right] = restored
    return result
