"""MNIST in Keras' `mnist.npz` layout: from a local file, or Keras' own download."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXPECTED_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}


@dataclass(frozen=True)
class Split:
    """Images (N, 28, 28) uint8 and labels (N,) uint8."""

    images: np.ndarray
    labels: np.ndarray

    def head(self, limit: int | None) -> Split:
        """The first `limit` examples (all of them when limit is None)."""
        if limit is None:
            return self
        return Split(self.images[:limit], self.labels[:limit])


def load_mnist(path: Path | str | None = None) -> tuple[Split, Split]:
    """The (train, test) splits, in their original order.

    `path` is a Keras-format mnist.npz (keys x_train, y_train, x_test, y_test); without one,
    Keras downloads and caches it.
    """
    if path is None:
        from keras.datasets import mnist

        (x_train, y_train), (x_test, y_test) = mnist.load_data()
        return Split(x_train, y_train), Split(x_test, y_test)
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"MNIST_PATH points to {path}, which is not a file. Point it at a Keras-format "
            f"mnist.npz, or unset it to let Keras download MNIST."
        )
    with np.load(path, allow_pickle=False) as arrays:
        missing = sorted(set(EXPECTED_SHAPES) - set(arrays.files))
        if missing:
            raise ValueError(
                f"{path} lacks the arrays {missing}; a Keras-format mnist.npz holds "
                f"{sorted(EXPECTED_SHAPES)}."
            )
        loaded = {key: arrays[key] for key in EXPECTED_SHAPES}
    for key, shape in EXPECTED_SHAPES.items():
        if loaded[key].shape != shape:
            raise ValueError(
                f"{path}: {key} has shape {loaded[key].shape}, expected {shape} as in Keras' "
                f"mnist.npz."
            )
    return (
        Split(loaded["x_train"], loaded["y_train"]),
        Split(loaded["x_test"], loaded["y_test"]),
    )
