"""Rendered plots kept in memory, keyed by an ETag derived from what each plot shows.

A plot's ETag is a digest of the figure's name, the data it is drawn from and the code that
draws it, so it is the same in every API process and changes exactly when the picture would
(a running job's history gets an epoch, a job finishes, figure code is deployed). Only a
miss renders; a client holding the current ETag gets a 304 without any rendering at all.

The cache lives in each process's memory, bounded by bytes, rather than in files under
ARTIFACTS_DIR: a running job's plot changes every epoch, so files would pile up stale versions
needing a sweeper, a disk bound and atomic writes shared between processes, while a render
per process (API_WORKERS of them) is cheap next to that. ETags agree between processes anyway.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import matplotlib

DEFAULT_MAX_BYTES = 32_000_000  # hundreds of plots (PNG: 30-300 kB each)


def _renderer_version() -> str:
    """A digest of the drawing code: a deploy that draws differently changes every ETag."""
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256(matplotlib.__version__.encode())
    for name in ("figures.py", "png.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


RENDERER_VERSION = _renderer_version()


def plot_etag(plot: str, *inputs: Any) -> str:
    """A strong ETag (quoted) for `plot` drawn from `inputs` (JSON-able data)."""
    text = json.dumps([RENDERER_VERSION, plot, inputs], sort_keys=True, default=str)
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names `etag` (weak comparison, as RFC 9110 asks)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


class PngCache:
    """A thread-safe LRU of PNG bytes by ETag, holding at most `max_bytes` in all."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"The plot cache needs a positive size in bytes, got {max_bytes}.")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            png = self._entries.get(etag)
            if png is not None:
                self._entries.move_to_end(etag)
            return png

    def put(self, etag: str, png: bytes) -> None:
        """Keep `png`, evicting the least recently used; one larger than the bound is not kept."""
        if len(png) > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(etag, None)
            if previous is not None:
                self._bytes -= len(previous)
            self._entries[etag] = png
            self._bytes += len(png)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)
