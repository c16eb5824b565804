"""Job records in Redis.

Layout (all under the `jobs:` / `job:` prefixes, beside Celery's own keys):
- `job:{id}`: a hash with the record's fields (JSON for structured ones, epoch seconds for times);
- `jobs:all`, `jobs:kind:{kind}`, `jobs:status:{status}`: sorted sets of ids scored by creation
  time, for listing newest first with filters;
- `job:{id}:history`, `job:{id}:gradients`: lists of JSON entries, one per epoch, appended while
  the job runs;
- `job:{id}:heartbeat`: a key with a TTL, set when the job starts and refreshed by its worker's
  parent process. A running job whose heartbeat has expired was lost with its worker and is
  marked failed.

Every status change goes through one Lua script, so it is atomic and only happens from the
statuses the caller allows: a job cancelled while queued can never start, and a job failed as
lost can never be overwritten by a late success. Deleting a finished job removes all of the
above in another script, so a job is never half deleted nor deleted while it runs.

Job ids are 32 lowercase hex digits; anything else is unknown before it reaches Redis, so an id
can never name another key (`{id}:history` would name a job's list).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from redis import Redis

from service.errors import ConflictError, NotFoundError
from service.jobs.schemas import FINISHED_STATUSES, JobRecord, JobStatus
from service.redis_pages import newest_first

_TRANSITION = """
local job_key, heartbeat_key = KEYS[1], KEYS[2]
local job_id, new_status = ARGV[1], ARGV[2]
local allowed, fields = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
local heartbeat_ms = tonumber(ARGV[5])
local current = redis.call('HGET', job_key, 'status')
if not current then return false end
local permitted = false
for _, status in ipairs(allowed) do
  if status == current then permitted = true end
end
if not permitted then return {0, current} end
for field, value in pairs(fields) do redis.call('HSET', job_key, field, value) end
if new_status ~= current then
  local score = redis.call('HGET', job_key, 'created_at')
  redis.call('HSET', job_key, 'status', new_status)
  redis.call('ZREM', 'jobs:status:' .. current, job_id)
  redis.call('ZADD', 'jobs:status:' .. new_status, score, job_id)
end
if heartbeat_ms > 0 then
  redis.call('SET', heartbeat_key, '1', 'PX', heartbeat_ms)
elseif heartbeat_ms < 0 then
  redis.call('DEL', heartbeat_key)
end
return {1, current}
"""

# KEYS: the job's hash, then its other keys. Returns false for an unknown job, else
# {deleted, status}: only finished jobs are deleted.
_DELETE = """
local job_key, job_id = KEYS[1], ARGV[1]
local finished = cjson.decode(ARGV[2])
local status = redis.call('HGET', job_key, 'status')
if not status then return false end
local deletable = false
for _, name in ipairs(finished) do
  if name == status then deletable = true end
end
if not deletable then return {0, status} end
local kind = redis.call('HGET', job_key, 'kind')
redis.call('DEL', unpack(KEYS))
redis.call('ZREM', 'jobs:all', job_id)
redis.call('ZREM', 'jobs:kind:' .. kind, job_id)
redis.call('ZREM', 'jobs:status:' .. status, job_id)
return {1, status}
"""

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_JSON_FIELDS = ("params", "progress", "result", "worker")
_TIME_FIELDS = ("created_at", "started_at", "finished_at")
_KEEP_HEARTBEAT, _DELETE_HEARTBEAT = 0, -1


class JobStore:
    """Creates, reads, lists and moves job records through their statuses."""

    def __init__(self, redis: Redis, heartbeat_ttl_seconds: float) -> None:
        self.redis = redis
        self.heartbeat_ttl_ms = max(1, int(heartbeat_ttl_seconds * 1000))
        self._transition_script = redis.register_script(_TRANSITION)
        self._delete_script = redis.register_script(_DELETE)

    # Reading and writing records

    def create(self, kind: str, params: dict[str, Any]) -> JobRecord:
        """Store a new queued job and return its record."""
        job_id = uuid.uuid4().hex
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(
            _job_key(job_id),
            mapping={
                "id": job_id,
                "kind": kind,
                "status": JobStatus.QUEUED.value,
                "params": json.dumps(params),
                "cancel_requested": "0",
                "created_at": repr(now),
            },
        )
        for index in ("jobs:all", f"jobs:kind:{kind}", f"jobs:status:{JobStatus.QUEUED}"):
            pipe.zadd(index, {job_id: now})
        pipe.execute()
        return self.get(job_id)

    def get(self, job_id: str) -> JobRecord:
        """The job's record, or `NotFoundError`."""
        raw = self.redis.hgetall(_job_key(_known_form(job_id)))
        if not raw:
            raise _not_found(job_id)
        return _decode(raw)

    def list(
        self,
        kind: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """One page of jobs, newest first, and how many match in all."""
        indexes = [f"jobs:kind:{kind}"] if kind else []
        if status:
            indexes.append(f"jobs:status:{status}")
        if len(indexes) <= 1:
            index = indexes[0] if indexes else "jobs:all"
            return newest_first(self.redis, index, _job_key, _decode, limit, offset)
        matching = list(reversed(self.redis.zinter(indexes, aggregate="MAX")))
        return self.get_many(matching[offset : offset + limit]), len(matching)

    def get_many(self, ids: Iterable[str]) -> list[JobRecord]:
        """The records of the jobs that exist among `ids`, in that order."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            if JOB_ID_PATTERN.fullmatch(job_id):
                pipe.hgetall(_job_key(job_id))
        return [_decode(raw) for raw in pipe.execute() if raw]

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.redis.hset(_job_key(job_id), "progress", json.dumps(progress))

    def append_entry(self, job_id: str, series: str, entry: dict[str, Any]) -> None:
        """Append one entry to the job's `history` or `gradients` series."""
        self.redis.rpush(_series_key(job_id, series), json.dumps(entry))

    def last_entries(self, job_ids: Iterable[str], series: str) -> list[dict[str, Any] | None]:
        """The newest entry of each job's series (None where it has none)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.lindex(_series_key(job_id, series), -1)
        return [json.loads(raw) if raw else None for raw in pipe.execute()]

    def entries(self, job_id: str, series: str) -> list[dict[str, Any]]:
        """The job's `history` or `gradients` series so far; `NotFoundError` for unknown jobs."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(_job_key(_known_form(job_id)))
        pipe.lrange(_series_key(job_id, series), 0, -1)
        exists, raw = pipe.execute()
        if not exists:
            raise _not_found(job_id)
        return [json.loads(item) for item in raw]

    def is_cancel_requested(self, job_id: str) -> bool:
        return self.redis.hget(_job_key(job_id), "cancel_requested") == "1"

    def heartbeat(self, job_id: str) -> None:
        """Tell the store the job's worker is still alive.

        Only refreshes a heartbeat that `start` created and no status change has removed, so a
        late beat can never make a finished or lost job look alive again.
        """
        self.redis.set(_heartbeat_key(job_id), "1", px=self.heartbeat_ttl_ms, xx=True)

    # Status changes

    def start(self, job_id: str, hostname: str, pid: int) -> JobRecord | None:
        """Move a queued job to running; None when it is no longer queued (e.g. cancelled)."""
        worker = json.dumps({"hostname": hostname, "pid": pid})
        fields = {"started_at": repr(time.time()), "worker": worker}
        moved, _ = self._transition(
            job_id, [JobStatus.QUEUED], JobStatus.RUNNING, fields, self.heartbeat_ttl_ms
        )
        return self.get(job_id) if moved else None

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: Any = None,
        error: str | None = None,
    ) -> bool:
        """Move a running job to a finished status; False if it was no longer running."""
        if not status.is_finished:
            raise ValueError(f"finish() needs a finished status, got {status!r}.")
        fields = {"finished_at": repr(time.time())}
        if result is not None:
            fields["result"] = json.dumps(result)
        if error is not None:
            fields["error"] = error
        moved, _ = self._transition(job_id, [JobStatus.RUNNING], status, fields, _DELETE_HEARTBEAT)
        return moved

    def mark_failed(self, job_id: str, error: str) -> None:
        """Fail a job that is queued or running, e.g. one that could not be queued."""
        fields = {"finished_at": repr(time.time()), "error": error}
        self._transition(
            job_id,
            [JobStatus.QUEUED, JobStatus.RUNNING],
            JobStatus.FAILED,
            fields,
            _DELETE_HEARTBEAT,
        )

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop at its next step.

        Raises `NotFoundError` for an unknown id and `ConflictError` for a finished job.
        """
        _known_form(job_id)
        cancelled, current = self._transition(
            job_id,
            [JobStatus.QUEUED],
            JobStatus.CANCELLED,
            {"finished_at": repr(time.time()), "cancel_requested": "1"},
            _DELETE_HEARTBEAT,
        )
        if not cancelled and current == JobStatus.RUNNING:
            cancelled, current = self._transition(
                job_id, [JobStatus.RUNNING], JobStatus.RUNNING, {"cancel_requested": "1"}
            )
        if not cancelled and current is not None:
            record = self.get(job_id)
            raise ConflictError(
                f"Job {job_id!r} already {record.status.value} at "
                f"{record.finished_at.isoformat() if record.finished_at else 'an earlier time'}; "
                f"only queued or running jobs can be cancelled."
            )
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove a finished job at once: its record, history, gradients, heartbeat and index
        entries (not the model it trained). `NotFoundError` for an unknown id;
        `ConflictError` for a queued or running job."""
        keys = [_job_key(_known_form(job_id)), _heartbeat_key(job_id)]
        keys += [_series_key(job_id, series) for series in SERIES]
        finished = json.dumps(sorted(status.value for status in FINISHED_STATUSES))
        outcome = self._delete_script(keys=keys, args=[job_id, finished])
        if outcome is None:
            raise _not_found(job_id)
        deleted, status = outcome
        if not deleted:
            raise ConflictError(
                f"Job {job_id!r} is {status}; only finished jobs (succeeded, failed or "
                f"cancelled) can be deleted. Cancel it first with POST /jobs/{job_id}/cancel, "
                "wait until it has stopped (a running job stops at its next step), then delete "
                "it."
            )

    def fail_lost_jobs(self) -> list[str]:
        """Fail every running job whose heartbeat expired: its worker died or was cut off."""
        lost = []
        for job_id in self.redis.zrange(f"jobs:status:{JobStatus.RUNNING}", 0, -1):
            if self.redis.exists(_heartbeat_key(job_id)):
                continue
            error = (
                "The worker running this job stopped responding (no heartbeat for "
                f"{self.heartbeat_ttl_ms / 1000:g} s): it was killed, crashed or lost its "
                "connection. Submit the job again."
            )
            fields = {"finished_at": repr(time.time()), "error": error}
            moved, _ = self._transition(
                job_id, [JobStatus.RUNNING], JobStatus.FAILED, fields, _DELETE_HEARTBEAT
            )
            if moved:
                lost.append(job_id)
        return lost

    def _transition(
        self,
        job_id: str,
        allowed: list[JobStatus],
        new_status: JobStatus,
        fields: dict[str, str],
        heartbeat_ms: int = _KEEP_HEARTBEAT,
    ) -> tuple[bool, str | None]:
        """Atomically set `fields` and `new_status` if the job's status is in `allowed`.

        Returns (whether it moved, the status it had); (False, None) for an unknown job.
        """
        outcome = self._transition_script(
            keys=[_job_key(job_id), _heartbeat_key(job_id)],
            args=[
                job_id,
                new_status.value,
                json.dumps([status.value for status in allowed]),
                json.dumps(fields),
                heartbeat_ms,
            ],
        )
        if outcome is None:
            return False, None
        moved, previous = outcome
        return bool(moved), previous


def _job_key(job_id: str) -> str:
    return f"job:{job_id}"


def _known_form(job_id: str) -> str:
    """The id, or `NotFoundError` when it cannot be a job's (it never reaches Redis then)."""
    if not JOB_ID_PATTERN.fullmatch(job_id):
        raise _not_found(job_id)
    return job_id


def _not_found(job_id: str) -> NotFoundError:
    return NotFoundError(
        f"No job with id {job_id!r}. List existing jobs with GET /jobs; ids are the 'id' field "
        "that POST /jobs returned (32 hexadecimal digits)."
    )


def _heartbeat_key(job_id: str) -> str:
    return f"job:{job_id}:heartbeat"


SERIES = ("history", "gradients")


def _series_key(job_id: str, series: str) -> str:
    if series not in SERIES:
        raise ValueError(f"Unknown series {series!r}; expected one of {SERIES}.")
    return f"job:{job_id}:{series}"


def _decode(raw: dict[str, str]) -> JobRecord:
    values: dict[str, Any] = dict(raw)
    for field in _JSON_FIELDS:
        if field in values:
            values[field] = json.loads(values[field])
    for field in _TIME_FIELDS:
        if field in values:
            values[field] = datetime.fromtimestamp(float(values[field]), tz=UTC)
    values["cancel_requested"] = values.get("cancel_requested") == "1"
    return JobRecord.model_validate(values)
