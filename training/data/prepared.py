"""MNIST as the service serves it: every image prepared by `to_mnist`, as uploads are.

A model trained on raw MNIST sees something else at serving time: an upload, even one that
is an MNIST digit, goes through `to_mnist` first (a cnn that read 99.43% of raw test digits
read 98.6% of the same digits uploaded, with an earlier preparation). Models learn from, and
are tested on, the prepared images instead, so a job's test metrics are what the service
answers; training images may be distorted first (`training.augmentation`) to cover what real
uploads add.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.augmentation import augment_digit
from training.data.mnist import Split, load_mnist
from training.data.prepared_cache import PreparedCache, default_cache_dir
from training.digit_images import MNIST_SIZE, NoDigitFound, to_mnist

CHUNK = 2000  # images per cache entry: a slice's head reuses a longer slice's entries


def prepare_images(
    images: np.ndarray,
    augment_fraction: float = 0.0,
    seed: int | np.random.SeedSequence | None = None,
) -> np.ndarray:
    """(N, H, W) uint8 digits -> (N, 28, 28) float32 as the model sees uploads of them.

    `augment_fraction` of the images (chosen at random) are distorted before they are
    prepared; a distortion that leaves no digit falls back to the undistorted image.
    """
    rng = np.random.default_rng(seed)
    distorted = rng.random(len(images)) < augment_fraction
    prepared = np.empty((len(images), MNIST_SIZE, MNIST_SIZE), np.float32)
    for index, image in enumerate(images):
        candidates = [augment_digit(image, rng), image] if distorted[index] else [image]
        prepared[index] = _first_prepared(candidates)
    return prepared


def _first_prepared(candidates: list[np.ndarray]) -> np.ndarray:
    for candidate in candidates:
        try:
            return to_mnist(candidate).image
        except NoDigitFound:
            continue
    # Nothing to prepare (no ink): the model sees the image as it is, at its size.
    return cv2.resize(candidates[-1], (MNIST_SIZE, MNIST_SIZE)).astype(np.float32)


def load_prepared_mnist(
    path: Path | str | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    augment_fraction: float = 0.0,
    seed: int | None = None,
) -> tuple[Split, Split]:
    """The (train, test) splits prepared as uploads are; only training images are distorted.

    Prepared in chunks of `CHUNK` images, each cached on disk (`training.data.prepared_cache`,
    at `default_cache_dir()`); a chunk's distortions are seeded by `seed` and its position.
    """
    train, test = load_mnist(path)
    train, test = train.head(train_limit), test.head(test_limit)
    folder = default_cache_dir()
    cache = PreparedCache(folder) if folder is not None else None
    return (
        Split(prepare_dataset(train.images, augment_fraction, seed, cache), train.labels),
        Split(prepare_dataset(test.images, cache=cache), test.labels),
    )


def prepare_dataset(
    images: np.ndarray,
    augment_fraction: float = 0.0,
    seed: int | None = None,
    cache: PreparedCache | None = None,
) -> np.ndarray:
    """`prepare_images` chunk by chunk, each through `cache` when its result is repeatable
    (no distortion, or a seed)."""
    repeatable = augment_fraction == 0 or seed is not None
    prepared = np.empty((len(images), MNIST_SIZE, MNIST_SIZE), np.float32)
    for index, start in enumerate(range(0, len(images), CHUNK)):
        chunk = images[start : start + CHUNK]
        chunk_seed = None if seed is None else np.random.SeedSequence([seed, index])

        def prepare(chunk: np.ndarray = chunk, chunk_seed=chunk_seed) -> np.ndarray:
            return prepare_images(chunk, augment_fraction, chunk_seed)

        if cache is None or not repeatable:
            prepared[start : start + CHUNK] = prepare()
        else:
            distortion = f"{augment_fraction} {seed} {index}" if augment_fraction else "none"
            prepared[start : start + CHUNK] = cache.get_or_prepare(chunk, distortion, prepare)
    return prepared
