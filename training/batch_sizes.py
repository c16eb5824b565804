"""Batch sizes that suit the size of a training set, and how many examples Keras trains on
(no TensorFlow: the API imports it)."""

import math


def fit_examples(count: int, validation_split: float) -> int:
    """The examples `fit` trains on when it holds out `validation_split` of `count`: Keras
    keeps the first floor(count x (1 - validation_split)) (`train_validation_split`)."""
    return math.floor(count * (1.0 - validation_split))


def default_batch_size(
    examples: int, largest: int = 128, smallest: int = 16, min_steps: int = 250
) -> int:
    """`largest`, or a smaller power of two (down to `smallest`) that gives an epoch at least
    `min_steps` gradient steps: 1 epoch on 5,000 images in batches of 128 was 36 steps, too few
    for a network to learn from (a cnn read 57% of the test digits; docs/training.md)."""
    batch_size = largest
    while batch_size > smallest and examples / batch_size < min_steps:
        batch_size //= 2
    return batch_size
