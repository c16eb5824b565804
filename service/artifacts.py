"""Where stored models and TensorBoard logs live: a local folder, or an object store by URL.

`ARTIFACTS_DIR=/data` keeps them in that folder, which every machine then has to mount.
`ARTIFACTS_DIR=s3://bucket/prefix` (or any URL fsspec knows: gs://, az://, ...) keeps them in
the object store: a worker trains into its local folder (`LOCAL_DIR`) and uploads; an API
process downloads a model's files once into its own, keyed by model id (a model's files never
change), bounded by `ARTIFACTS_CACHE_BYTES`. A model is registered in Redis only after its
upload has completed, so no reader ever finds one whose files are partial.

Keys are relative paths built by the stores from validated ids: `models/{id}/model.keras`,
`tensorboard/{job_id}/...`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.errors import UnavailableError

logger = logging.getLogger(__name__)

# In a local model folder when it is a complete copy of the object store's: the cache may
# evict it. A folder without it is a worker's model still being trained or uploaded.
CACHED_MARKER = ".cached"
MODELS_FOLDER = "models"
# A cached folder used more recently than this is never evicted (another process may be
# loading the model it just found there), even when that leaves the cache over its bound.
RECENT_USE_SECONDS = 60.0
DOWNLOADS_FOLDER = ".downloads"  # files being downloaded, renamed into place when whole
UPLOAD_ATTEMPTS = 3  # per file, beside the retries of the store's own client


def is_url(location: str) -> bool:
    """Whether ARTIFACTS_DIR names an object store rather than a local folder."""
    return "://" in location


class ArtifactStoreUnavailable(UnavailableError):
    """The object store did not answer or refused (503: the request may be tried again)."""

    code = "artifacts_unavailable"


class ArtifactStore:
    """The artifacts' location, local or remote, and this machine's local folder beside it."""

    def __init__(
        self,
        location: str | Path,
        local_root: Path,
        cache_bytes: int = 4_000_000_000,
        options: dict[str, Any] | None = None,
    ) -> None:
        location = str(location)
        self.url = location.rstrip("/") if is_url(location) else None
        # A folder ARTIFACTS_DIR is the store itself, wherever this machine keeps the rest.
        self.local_root = Path(local_root if self.url else location).resolve()
        self.cache_bytes = cache_bytes
        self._fs: Any = None
        self._root = ""
        if self.url is not None:
            self._fs, self._root = _filesystem(self.url, options or {})

    @classmethod
    def local(cls, folder: Path) -> ArtifactStore:
        """Artifacts in a local folder only (as before object stores)."""
        return cls(folder, folder)

    @classmethod
    def of(cls, artifacts: ArtifactStore | Path) -> ArtifactStore:
        """`artifacts` itself, or the local store of a folder (tests and scripts pass one)."""
        return artifacts if isinstance(artifacts, ArtifactStore) else cls.local(artifacts)

    @property
    def remote(self) -> bool:
        return self.url is not None

    def local_path(self, key: str) -> Path:
        """Where `key` lies (local store) or is kept on this machine (object store)."""
        return self.local_root / key

    def describe(self, key: str) -> str:
        """Where `key` is kept, for messages."""
        return f"{self.url}/{key}" if self.url else str(self.local_path(key))

    def check_writable(self) -> None:
        """Write and remove a small object, so that a job learns before it trains for hours
        that its model could not be stored. `ArtifactStoreUnavailable` saying why."""
        if self._fs is None:
            return
        probe = f"{self._root}/.probes/{uuid.uuid4().hex}"
        try:
            self._fs.pipe_file(probe, b"")
            self._fs.rm_file(probe)
        except Exception as error:
            raise self._unavailable("write to", error) from None

    def upload(
        self,
        key: str,
        names: list[str] | None = None,
        on_file: Callable[[], None] | None = None,
    ) -> None:
        """Copy the files `names` (default: every file) of the local folder `key` to the object
        store, each tried `UPLOAD_ATTEMPTS` times, calling `on_file` before each (nothing to do
        for a local store). `FileNotFoundError` for a named file that is not there;
        `ArtifactStoreUnavailable` when the store refuses."""
        if self._fs is None:
            return
        folder = self.local_path(key)
        if names is None:
            names = sorted(
                path.relative_to(folder).as_posix()
                for path in folder.rglob("*")
                if path.is_file() and path.name != CACHED_MARKER
            )
        for name in names:
            path = folder / name
            if not _plain_relative(name) or not path.is_file():
                raise FileNotFoundError(f"No file {name!r} in {folder} to upload.")
            for attempt in range(1, UPLOAD_ATTEMPTS + 1):
                if on_file is not None:
                    on_file()
                try:
                    self._fs.put_file(str(path), f"{self._root}/{key}/{name}")
                    break
                except Exception as error:
                    if attempt == UPLOAD_ATTEMPTS:
                        raise self._unavailable("upload to", error, key) from None
                    logger.warning("Upload of %s/%s failed (%s); trying again.", key, name, error)
                    time.sleep(attempt)

    def mark_cached(self, key: str) -> None:
        """Say that the local folder `key` is a complete copy the cache may evict, and keep
        the cache within its bound (a worker's uploads are copies too)."""
        if self._fs is not None:
            _mark_used(self.local_path(key) / CACHED_MARKER)
            self._evict(keep=self.local_path(key))

    def fetch_file(self, key: str) -> Path | None:
        """A local path holding the file `key`: downloaded once from an object store (atomic:
        a reader never sees part of it), then kept in the bounded cache. None when the store
        has no such file."""
        path = self.local_path(key)
        if self._fs is None:
            return path if path.is_file() else None
        marker = path.parent / CACHED_MARKER
        if path.is_file():
            with contextlib.suppress(OSError):
                _mark_used(marker)  # recently used: evicted last
            return path
        downloads = self.local_root / DOWNLOADS_FOLDER  # outside any folder the cache evicts
        downloads.mkdir(parents=True, exist_ok=True)
        partial = downloads / f"{uuid.uuid4().hex}.partial"
        try:
            try:
                self._fs.get_file(f"{self._root}/{key}", str(partial))
            except FileNotFoundError:
                self._check_root(key)  # a missing bucket is the store's fault, not the file's
                return None
            except Exception as error:
                raise self._unavailable("download from", error, key) from None
            for _ in range(2):  # the folder may be evicted by another process meanwhile
                path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    os.replace(partial, path)
                    _mark_used(marker)
                    break
        finally:
            partial.unlink(missing_ok=True)
        self._evict(keep=path.parent)
        return path if path.is_file() else None

    def files(self, key: str) -> list[tuple[str, int]]:
        """The files under the folder `key` in the object store, relative names and sizes."""
        if self._fs is None:
            raise ValueError("files() lists an object store; a local folder is read in place.")
        folder = f"{self._root}/{key}"
        try:
            self._fs.invalidate_cache(folder)  # s3fs keeps listings: a job's logs may be new
            found = self._fs.find(folder, detail=True)
        except FileNotFoundError:
            found = {}
        except Exception as error:
            raise self._unavailable("list", error, key) from None
        if not found:
            self._check_root(key)
        listed = (
            (name[len(folder) + 1 :], int(info.get("size") or 0))
            for name, info in found.items()
            if info.get("type") == "file"
        )
        # Only names that stay inside a folder they are downloaded into.
        return sorted((name, size) for name, size in listed if _plain_relative(name))

    def download_folder(self, key: str, names: list[str], into: Path) -> None:
        """Download the files `names` of the folder `key` into the folder `into`."""
        if self._fs is None:
            raise ValueError("download_folder() reads an object store.")
        for name in names:
            if not _plain_relative(name):
                raise ValueError(f"Not a plain relative file name: {name!r}")
            target = into / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self._fs.get_file(f"{self._root}/{key}/{name}", str(target))
            except (FileNotFoundError, NotADirectoryError, FileExistsError):
                continue  # removed meanwhile, or a name that is also a folder's: left out
            except Exception as error:
                raise self._unavailable("download from", error, key) from None

    def remove(self, key: str) -> None:
        """Remove the folder `key`, here and in the object store; a link in its place is
        removed, never what it points to. `ArtifactStoreUnavailable` when the store refuses."""
        folder = self.local_path(key)
        if folder.is_symlink():
            folder.unlink(missing_ok=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        if self._fs is None:
            return
        try:
            self._fs.rm(f"{self._root}/{key}", recursive=True)
        except FileNotFoundError:
            pass
        except Exception as error:
            raise self._unavailable("remove from", error, key) from None

    def check_reachable(self) -> None:
        """`ArtifactStoreUnavailable` unless the object store answers and its bucket exists
        (before a deletion: nothing is deleted in Redis while files could not be)."""
        if self._fs is not None:
            self._check_root("")

    def _check_root(self, key: str) -> None:
        """`ArtifactStoreUnavailable` when the store's bucket (the URL's first part) is missing
        or the store does not answer."""
        bucket = self._root.split("/", 1)[0]
        try:
            found = self._fs.exists(bucket)
        except Exception as error:
            raise self._unavailable("reach", error, key) from None
        if not found:
            raise self._unavailable("find the bucket of", FileNotFoundError(bucket), key)

    def _evict(self, keep: Path) -> None:
        """Remove the least recently used cached model folders beyond `cache_bytes`."""
        cached = []
        for marker in (self.local_root / MODELS_FOLDER).glob(f"*/{CACHED_MARKER}"):
            folder = marker.parent
            with contextlib.suppress(OSError):
                used = marker.stat().st_mtime
                size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
                cached.append((used, size, folder))
        total = sum(size for _, size, _ in cached)
        recent = time.time() - RECENT_USE_SECONDS
        for used, size, folder in sorted(cached, key=lambda entry: entry[0]):
            if total <= self.cache_bytes:
                break
            # A folder used just now may be being read by another process: kept for now.
            if folder != keep and used < recent and _last_use(folder) < recent:
                shutil.rmtree(folder, ignore_errors=True)
                total -= size
                logger.info("Removed the local copy of %s (ARTIFACTS_CACHE_BYTES).", folder.name)

    def _unavailable(self, what: str, error: Exception, key: str = "") -> ArtifactStoreUnavailable:
        where = f"{self.url}/{key}" if key else self.url
        return ArtifactStoreUnavailable(
            f"Could not {what} the artifact store at {where}: {type(error).__name__}: {error}. "
            "Check ARTIFACTS_DIR, that the bucket exists and the credentials (the usual "
            "variables of its SDK, e.g. AWS_ACCESS_KEY_ID, or ARTIFACTS_STORAGE_OPTIONS) allow "
            "reading and writing there."
        )


def _plain_relative(name: str) -> bool:
    """Whether an object's name within a folder is a plain relative path (no `..`, not
    absolute, nothing empty)."""
    parts = name.split("/")
    return bool(name) and all(part not in ("", ".", "..") for part in parts)


def _last_use(folder: Path) -> float:
    """When the cached folder was last used (now, if that cannot be read: kept)."""
    try:
        return (folder / CACHED_MARKER).stat().st_mtime
    except OSError:
        return time.time()


def _mark_used(marker: Path) -> None:
    """Record now as the folder's last use (to the nanosecond: coarse file-system clocks would
    tie uses a few milliseconds apart)."""
    marker.touch()
    now = time.time_ns()
    os.utime(marker, ns=(now, now))


def check_location(location: str) -> str:
    """`location` if it is a folder or a URL whose store fsspec can open here; else a
    `ValueError` saying what to install (read with the settings: a worker or an API with a
    store it cannot use refuses to start)."""
    if not is_url(location):
        return location
    try:
        import fsspec

        fsspec.get_filesystem_class(location.split("://", 1)[0])
    except (ImportError, ValueError) as error:
        raise ValueError(
            f"ARTIFACTS_DIR={location} is an object-store URL that fsspec cannot open here "
            f"({error}). For s3:// install the s3 extra (pip install 'digit-service[s3]'); "
            "other stores need their fsspec package (gcsfs, adlfs)."
        ) from None
    return location


def _filesystem(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """fsspec's filesystem for `url` and the root path within it."""
    import fsspec

    check_location(url)
    # An instance of its own: fsspec's cache could hand back one made earlier in the process
    # with other endpoint or credential variables.
    filesystem, root = fsspec.core.url_to_fs(url, skip_instance_cache=True, **options)
    return filesystem, root.rstrip("/")
