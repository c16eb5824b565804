"""Sequences of 10 MNIST digits for the calculator (numpy only: the API imports this)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.mnist import Split

SEQUENCE_LENGTH = 10
# A sum is flagged uncertain when a digit in it was read with less probability than this;
# precision and recall on the course's test sequences: bench/accuracy.py, docs/serving.md.
DOUBTFUL_BELOW = 0.9


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


@dataclass(frozen=True)
class SequenceReading:
    """What a reader makes of sequences: the most likely digit at each position (N, 10) and
    its probability; the sums and running sums are theirs, so they never contradict them."""

    digits: np.ndarray
    confidences: np.ndarray

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.digits, axis=-1)

    @property
    def sums(self) -> np.ndarray:
        return self.digits.sum(axis=-1)


def read_sequences(probabilities: np.ndarray) -> SequenceReading:
    """(..., 10 positions, 10 digits) probabilities -> the reading of each sequence."""
    probabilities = np.asarray(probabilities)
    return SequenceReading(
        digits=np.argmax(probabilities, axis=-1), confidences=probabilities.max(axis=-1)
    )


def sum_metrics(probabilities: np.ndarray, digits: np.ndarray) -> dict[str, float]:
    """How right the readings of sequences (N, 10, 10 probabilities) are against their true
    digits (N, 10), read as the service reads them: digit accuracy, sum MAE and exact sums,
    running sums' MAE and exact rate per position and per sequence (all 10 right)."""
    reading = read_sequences(probabilities)
    cumulative = np.cumsum(digits, axis=-1)
    exact_running = reading.cumulative == cumulative
    return {
        "test_digit_accuracy": float(np.mean(reading.digits == digits)),
        "test_sum_mae": float(np.mean(np.abs(reading.sums - digits.sum(axis=-1)))),
        "test_exact_sum_accuracy": float(np.mean(reading.sums == digits.sum(axis=-1))),
        "test_cumulative_mae": float(np.mean(np.abs(reading.cumulative - cumulative))),
        "test_exact_cumulative_accuracy": float(np.mean(exact_running)),
        "test_all_cumulative_exact": float(np.mean(exact_running.all(axis=-1))),
        "test_sequences": len(digits),
    }
