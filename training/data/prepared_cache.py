"""A disk cache of prepared training images, so that jobs on the same MNIST slice (a sweep's
cells, repeated runs, the suite) prepare it once.

Entries are keyed by the raw images' bytes, how they are distorted (fraction and seed), and a
digest of the code that prepares them: a change to preparation or augmentation misses the old
entries instead of serving stale images. Writes are atomic (a temporary file renamed into
place); the oldest entries are removed past `MAX_CACHE_BYTES`. A cache that cannot be read or
written is skipped: preparation never fails because of it. Only datasets use it, never uploads.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "PREPARED_CACHE_DIR"  # "off" (or empty) disables the cache
MAX_CACHE_BYTES = 2 * 1024**3  # the complete MNIST, prepared, is about 220 MB
# The modules whose code decides what a prepared image is.
PREPARATION_MODULES = ("training.digit_images", "training.augmentation", "training.data.prepared")


def default_cache_dir() -> Path | None:
    """PREPARED_CACHE_DIR, else beside Keras' own downloads ($KERAS_HOME/datasets/prepared)."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off") else Path(configured)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return keras_home / "datasets" / "prepared"


@cache
def code_digest() -> str:
    """A digest of the preparation code and the libraries that run it."""
    digest = hashlib.sha256(f"{cv2.__version__} {np.__version__}".encode())
    for name in PREPARATION_MODULES:
        __import__(name)
        digest.update(Path(sys.modules[name].__file__).read_bytes())
    return digest.hexdigest()


class PreparedCache:
    """(N, 28, 28) float32 arrays in a folder, one .npy file per key."""

    def __init__(self, folder: Path, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def key(self, images: np.ndarray, distortion: str) -> str:
        digest = hashlib.sha256(code_digest().encode())
        digest.update(f"{images.shape} {images.dtype} {distortion}".encode())
        digest.update(np.ascontiguousarray(images).data)
        return digest.hexdigest()

    def get_or_prepare(
        self, images: np.ndarray, distortion: str, prepare: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """The cached preparation of `images` distorted as `distortion` says, else
        `prepare()`'s result, stored for next time."""
        path = self.folder / f"{self.key(images, distortion)}.npy"
        cached = self._read(path, expected_count=len(images))
        if cached is not None:
            return cached
        prepared = prepare()
        self._write(path, prepared)
        return prepared

    def _read(self, path: Path, expected_count: int) -> np.ndarray | None:
        try:
            array = np.load(path, allow_pickle=False)
            os.utime(path)  # recently used: pruned last
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as error:  # unreadable or torn: prepared again
            logger.warning("Prepared-image cache entry %s unreadable (%s).", path.name, error)
            return None
        if array.shape != (expected_count, 28, 28) or array.dtype != np.float32:
            return None
        return array

    def _write(self, path: Path, prepared: np.ndarray) -> None:
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                np.save(file, prepared, allow_pickle=False)
            os.replace(temporary, path)
            self._prune()
        except OSError as error:
            logger.warning("Prepared-image cache at %s not written (%s).", self.folder, error)
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Remove the least recently used entries past `max_bytes`."""
        entries = []
        for path in self.folder.glob("*.npy"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process pruned it
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
