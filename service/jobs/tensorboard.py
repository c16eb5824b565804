"""A job's TensorBoard logs on disk: the folder its worker writes them into
(`ARTIFACTS_DIR/tensorboard/{job_id}`, so that `tensorboard --logdir ARTIFACTS_DIR/tensorboard`
shows every job side by side), the tar.gz the API sends of it, and its removal with the job."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from service.errors import ConflictError, NotFoundError, ServiceError
from service.jobs.kinds import JOB_KINDS
from service.jobs.schemas import JobRecord, JobStatus
from service.jobs.store import JOB_ID_PATTERN

TENSORBOARD_FOLDER = "tensorboard"
# Event files in one download at most: a long run writes a few MB; more means something else
# wrote there, and reading it where it is (tensorboard --logdir) is the better way.
MAX_ARCHIVE_BYTES = 1 << 30
SPOOL_BYTES = 1 << 20  # an archive up to this size stays in memory, a larger one on disk
CHUNK_BYTES = 1 << 16


def logs_root(artifacts_dir: Path) -> Path:
    """The folder to give `tensorboard --logdir`: every job's logs are in it."""
    return Path(artifacts_dir).resolve() / TENSORBOARD_FOLDER


def log_dir(artifacts_dir: Path, job_id: str) -> Path:
    """The job's log folder; `ValueError` for an id that is not a job's (it could name another
    folder)."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise ValueError(f"Not a job id: {job_id!r}; expected 32 lowercase hexadecimal digits.")
    return logs_root(artifacts_dir) / job_id


def remove_logs(artifacts_dir: Path, job_id: str) -> None:
    """Remove the job's logs, if it has any."""
    shutil.rmtree(log_dir(artifacts_dir, job_id), ignore_errors=True)


def archive(artifacts_dir: Path, record: JobRecord) -> tuple[IO[bytes], int]:
    """A tar.gz of the job's logs as they are now (entries under `{job_id}/`), rewound, and its
    size. When it has none, `NotFoundError` if it never will, `ConflictError` if not yet (each
    saying why); `ConflictError` when they are over `MAX_ARCHIVE_BYTES`."""
    folder = log_dir(artifacts_dir, record.id)
    files = _log_files(folder)
    if not files:
        raise _no_logs_error(record)
    total = sum(size for _, size in files)
    if total > MAX_ARCHIVE_BYTES:
        raise ConflictError(
            f"Job {record.id}'s TensorBoard logs are {total:,} bytes, over the "
            f"{MAX_ARCHIVE_BYTES:,} a download may hold. Read them where they are: tensorboard "
            f"--logdir {folder}."
        )
    # Returned open, for `chunks` to send and close.
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        with tarfile.open(fileobj=spooled, mode="w:gz") as tar:
            for path, size in files:
                name = f"{record.id}/{path.relative_to(folder)}"
                info = tar.gettarinfo(str(path), arcname=name)
                info.size = size  # as listed: a file the job is writing may have grown since
                with path.open("rb") as data:
                    tar.addfile(info, data)
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


def _log_files(folder: Path) -> list[tuple[Path, int]]:
    """The regular files under `folder` (links not followed) and their sizes, in name order."""
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                found.append((path, path.stat().st_size))
    return found


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
