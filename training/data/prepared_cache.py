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
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CACHE_DIR_VARIABLE = "PREPARED_CACHE_DIR"  # "off" (or empty) disables the cache
CACHE_BYTES_VARIABLE = "PREPARED_CACHE_BYTES"
MAX_CACHE_BYTES = 2 * 1024**3  # the complete MNIST, prepared, is about 220 MB
STALE_TEMPORARY_SECONDS = 3600  # a write's temporary file this old was left by a killed job
# The modules whose code decides what a prepared image is.
PREPARATION_MODULES = ("training.digit_images", "training.augmentation", "training.data.prepared")


def default_cache_dir() -> Path | None:
    """PREPARED_CACHE_DIR, else beside Keras' own downloads ($KERAS_HOME/datasets/prepared);
    None when turned off or when there is no home folder to put it in."""
    configured = os.environ.get(CACHE_DIR_VARIABLE)
    if configured is not None:
        return None if configured.strip().lower() in ("", "off") else Path(configured)
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home is None:
        try:
            keras_home = Path.home() / ".keras"
        except RuntimeError:  # no HOME and a user without a passwd entry
            return None
    return Path(keras_home) / "datasets" / "prepared"


def default_cache_bytes() -> int:
    """PREPARED_CACHE_BYTES, else MAX_CACHE_BYTES."""
    configured = os.environ.get(CACHE_BYTES_VARIABLE, "").strip()
    try:
        return int(configured) if configured else MAX_CACHE_BYTES
    except ValueError:
        logger.warning("%s=%r is not a number of bytes; using %d.", CACHE_BYTES_VARIABLE,
                       configured, MAX_CACHE_BYTES)  # fmt: skip
        return MAX_CACHE_BYTES


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

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = default_cache_bytes() if max_bytes is None else max_bytes

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
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as error:  # unreadable or torn: prepared again
            logger.warning("Prepared-image cache entry %s unreadable (%s).", path.name, error)
            return None
        if array.shape != (expected_count, 28, 28) or array.dtype != np.float32:
            return None
        with contextlib.suppress(OSError):  # a cache this process may only read
            os.utime(path)  # recently used: pruned last
        return array

    def _write(self, path: Path, prepared: np.ndarray) -> None:
        temporary = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # A name no other writer (another process, container or host) can share.
            descriptor, name = tempfile.mkstemp(dir=self.folder, prefix=path.stem, suffix=".tmp")
            temporary = Path(name)
            with os.fdopen(descriptor, "wb") as file:
                np.save(file, prepared, allow_pickle=False)
                file.flush()
                os.fsync(file.fileno())  # complete on disk before it is renamed into place
            os.replace(temporary, path)
            self._prune()
        except OSError as error:
            logger.warning("Prepared-image cache at %s not written (%s).", self.folder, error)
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Remove the least recently used entries past `max_bytes`, and temporary files that
        a killed writer left behind."""
        entries = []
        now = time.time()
        for path in self.folder.iterdir():
            try:
                stat = path.stat()
            except FileNotFoundError:  # another process pruned it
                continue
            if path.suffix == ".tmp" and now - stat.st_mtime > STALE_TEMPORARY_SECONDS:
                path.unlink(missing_ok=True)
            elif path.suffix == ".npy":
                entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
