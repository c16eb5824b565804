"""Sequences of 10 MNIST digits for the calculator (numpy only: the API imports this)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.mnist import Split

SEQUENCE_LENGTH = 10


@dataclass(frozen=True)
class Sequences:
    """Images (N, 10, 28, 28), their digits (N, 10), running sums (N, 10) and sums (N,)."""

    images: np.ndarray
    digits: np.ndarray

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.digits, axis=1).astype("float32")

    @property
    def sums(self) -> np.ndarray:
        return self.digits.sum(axis=1).astype("float32")


def consecutive_sequences(split: Split) -> Sequences:
    """The split in consecutive groups of ten (the course's fixed test sequences)."""
    count = len(split.labels) // SEQUENCE_LENGTH * SEQUENCE_LENGTH
    shape = (-1, SEQUENCE_LENGTH)
    return Sequences(
        split.images[:count].reshape(*shape, 28, 28), split.labels[:count].reshape(shape)
    )


def random_sequences(split: Split, count: int, rng: np.random.Generator) -> Sequences:
    """`count` sequences of images drawn from the split: each image once per pass, passes
    shuffled anew, so every image is used before any is repeated."""
    needed = count * SEQUENCE_LENGTH
    passes = -(-needed // len(split.labels))
    order = np.concatenate([rng.permutation(len(split.labels)) for _ in range(passes)])[:needed]
    shape = (count, SEQUENCE_LENGTH)
    return Sequences(
        split.images[order].reshape(*shape, 28, 28), split.labels[order].reshape(shape)
    )
