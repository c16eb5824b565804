"""A job's TensorBoard logs: the folder its worker writes them into
(`ARTIFACTS_DIR/tensorboard/{job_id}`, so that `tensorboard --logdir ARTIFACTS_DIR/tensorboard`
shows every job side by side), the tar.gz the API sends of it, and its removal with the job.
With an object store, the worker writes them into its local folder and uploads them when the
job ends (`service.worker.runner`); the API downloads them to pack them."""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from service.artifacts import ArtifactStore, ArtifactStoreUnavailable
from service.errors import ConflictError, NotFoundError, ServiceError
from service.gates import Gate
from service.jobs.kinds import JOB_KINDS
from service.jobs.schemas import JobRecord, JobStatus
from service.jobs.store import JOB_ID_PATTERN

logger = logging.getLogger(__name__)

TENSORBOARD_FOLDER = "tensorboard"
# Event files in one download at most: a long run writes a few MB; more means something else
# wrote there, and reading it where it is (tensorboard --logdir) is the better way.
MAX_ARCHIVE_BYTES = 256 << 20
SPOOL_BYTES = 1 << 20  # an archive up to this size stays in memory, a larger one on disk
CHUNK_BYTES = 1 << 16
# gzip's default speed/size trade-off: event files barely shrink more at 9, at several times
# the CPU.
COMPRESS_LEVEL = 6
# Archives packed at once per API process (the endpoint is open to readers); 503 beyond.
PACKING_SLOTS = 2
PACKING = Gate("packing TensorBoard logs", PACKING_SLOTS, "a fixed limit per API process")
# Opening a log file: never through a link; never waiting on a FIFO someone left there.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # (os.open: never inherited)


def logs_key(job_id: str) -> str:
    """The job's log folder in the artifact store; `ValueError` for an id that is not a job's
    (it could name another folder)."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise ValueError(f"Not a job id: {job_id!r}; expected 32 lowercase hexadecimal digits.")
    return f"{TENSORBOARD_FOLDER}/{job_id}"


def log_dir(artifacts: ArtifactStore | Path, job_id: str) -> Path:
    """The folder the job's worker writes its logs into: in the artifacts' folder, or this
    machine's beside an object store (uploaded when the job ends); `ValueError` for a
    malformed id."""
    return ArtifactStore.of(artifacts).local_path(logs_key(job_id))


def remove_logs(artifacts: ArtifactStore | Path, job_id: str) -> None:
    """Remove the job's logs, if it has any; a link in the folder's place is removed, never
    what it points to."""
    artifacts = ArtifactStore.of(artifacts)
    try:
        artifacts.remove(logs_key(job_id))
    except ArtifactStoreUnavailable as error:  # the job is gone: its logs are only litter now
        logger.warning("Job %s's TensorBoard logs are left in the store: %s", job_id, error)


def archive(artifacts: ArtifactStore | Path, record: JobRecord) -> tuple[IO[bytes], int]:
    """A tar.gz of the job's logs as they are now (entries under `{job_id}/`), rewound, and its
    size. When it has none, `NotFoundError` if it never will, `ConflictError` if not yet (each
    saying why); `ConflictError` when they are over `MAX_ARCHIVE_BYTES` or the folder is a
    link; `Busy` (503) when `PACKING_SLOTS` archives are being packed already."""
    artifacts = ArtifactStore.of(artifacts)
    if artifacts.remote:
        return _archive_stored(artifacts, record)
    folder = artifacts.local_path(logs_key(record.id))
    _check_folder(folder)
    files = log_files(folder)
    _check_size(record, [size for _, size in files], str(folder))
    with PACKING.enter():
        return pack(record.id, folder, files)


def _archive_stored(artifacts: ArtifactStore, record: JobRecord) -> tuple[IO[bytes], int]:
    """`archive` of logs in an object store: listed, checked, downloaded, then packed."""
    kind = JOB_KINDS.get(record.kind)
    if record.status == JobStatus.QUEUED or (kind is not None and not kind.uses_tensorflow):
        raise _no_logs_error(record)  # without asking the store
    key = logs_key(record.id)
    names = artifacts.files(key)
    if not names and record.status == JobStatus.RUNNING:
        raise ConflictError(
            f"Job {record.id} is running; its TensorBoard logs reach the artifact store "
            f"({artifacts.url}) when it ends. Try again then (GET /jobs/{record.id} says when)."
        )
    _check_size(record, [size for _, size in names], artifacts.describe(key))
    with PACKING.enter(), tempfile.TemporaryDirectory(prefix="tensorboard-") as scratch:
        folder = Path(scratch) / record.id
        folder.mkdir()
        artifacts.download_folder(key, [name for name, _ in names], folder)
        files = log_files(folder)
        _check_size(record, [size for _, size in files], artifacts.describe(key))  # as fetched
        return pack(record.id, folder, files)


def _check_size(record: JobRecord, sizes: list[int], where: str) -> None:
    """The errors for a job without logs (`_no_logs_error`) or with too many to download."""
    if not sizes:
        raise _no_logs_error(record)
    total = sum(sizes)
    if total > MAX_ARCHIVE_BYTES:
        raise ConflictError(
            f"Job {record.id}'s TensorBoard logs are {total:,} bytes, over the "
            f"{MAX_ARCHIVE_BYTES:,} a download may hold. Read them where they are: tensorboard "
            f"--logdir {where}."
        )


def pack(job_id: str, folder: Path, files: list[tuple[Path, int]]) -> tuple[IO[bytes], int]:
    """A tar.gz of `files` (as `log_files` listed them in `folder`) under `{job_id}/`, rewound,
    and its size. A file gone since it was listed is left out, one cut short is packed as it
    is now; `NotFoundError` when the folder itself is gone, or every file is (the job was
    deleted meanwhile)."""
    # Returned open, for `chunks` to send and close.
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        with tarfile.open(fileobj=spooled, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar:
            packed = sum(
                _add(tar, path, f"{job_id}/{path.relative_to(folder)}", size)
                for path, size in files
            )
        if not packed or not os.path.lexists(folder):
            raise NotFoundError(
                f"Job {job_id}'s TensorBoard logs were removed while they were being packed "
                "(the job was deleted). There is nothing left to download."
            )
    except BaseException:
        spooled.close()
        raise
    size = spooled.tell()
    spooled.seek(0)
    return spooled, size


def chunks(file: IO[bytes]) -> Iterator[bytes]:
    """The file's bytes in chunks, closing it at the end (a response body)."""
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def log_files(folder: Path) -> list[tuple[Path, int]]:
    """The regular files under `folder` and their sizes, in name order: links (to files or to
    folders) are neither listed nor followed, and a file removed while listed is left out."""
    found = []
    for directory, subdirectories, names in os.walk(folder):  # never into linked folders
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((path, info.st_size))
    return found


def _add(tar: tarfile.TarFile, path: Path, name: str, listed_size: int) -> bool:
    """Add the file at `path` as `name`, at most `listed_size` bytes (the job may be writing to
    it); False, adding nothing, when it is gone or no longer a regular file."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError:  # removed since listed, or replaced by a link (ELOOP)
        return False
    with os.fdopen(descriptor, "rb") as data:
        info = tar.gettarinfo(arcname=name, fileobj=data)  # the open file's, not the path's
        if not info.isreg():
            return False
        # Open, the file stays readable if removed now; cut short since listed, it is packed
        # as it is (nothing in the service truncates a log file while it is read).
        info.size = min(listed_size, info.size)
        info.uid = info.gid = 0  # the worker's account is none of a reader's business
        info.uname = info.gname = ""
        tar.addfile(info, data)
    return True


def _check_folder(folder: Path) -> None:
    """`ConflictError` for a job folder that is a link: the worker never makes one, and
    following it could send any folder on the server. (Its name is a job id, so a folder that
    is not a link lies in the logs' root.)"""
    if folder.is_symlink():
        raise ConflictError(
            f"Job {folder.name}'s TensorBoard log folder {folder} is a link, which the service "
            f"never makes and does not follow (it could lead outside {folder.parent}). Replace "
            f"it with the job's own folder, or remove it with the job (DELETE "
            f"/jobs/{folder.name})."
        )


def _no_logs_error(record: JobRecord) -> ServiceError:
    """404 for a job that will never have logs; 409 for one that may have them later (as for
    plots: `service.plots.sources`)."""
    kind = JOB_KINDS.get(record.kind)
    if kind is not None and not kind.uses_tensorflow:
        writers = ", ".join(name for name, other in JOB_KINDS.items() if other.uses_tensorflow)
        return NotFoundError(
            f"Job {record.id} is a {record.kind} job, which writes no TensorBoard logs; the Keras "
            f"kinds do ({writers})."
        )
    if record.status == JobStatus.QUEUED:
        return ConflictError(
            f"Job {record.id} has no TensorBoard logs yet: it is queued. They appear once it "
            f"starts; GET /jobs/{record.id} says when it runs. Try again then."
        )
    if record.status == JobStatus.RUNNING:
        return ConflictError(
            f"Job {record.id} has no TensorBoard logs yet: it has just started. They appear "
            "before its first epoch; try again in a few seconds."
        )
    return NotFoundError(
        f"Job {record.id} ({record.status.value}) has no TensorBoard logs: none were written (it "
        "ended before training, or ran on a worker that wrote none), or they were removed."
    )
