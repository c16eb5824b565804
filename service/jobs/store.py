"""Job records in Redis.

Layout (key names: `service.redis_keys`):
- `job:{id}`: a hash with the record's fields (JSON for structured ones, epoch seconds for times);
- `jobs:all`, `jobs:kind:{kind}`, `jobs:status:{status}`: sorted sets of ids scored by creation
  time, for listing newest first with filters;
- `job:{id}:history`, `job:{id}:gradients`: lists of JSON entries, one per epoch, appended while
  the job runs;
- `job:{id}:heartbeat`: a key with a TTL, set when the job starts and refreshed by its worker's
  parent process. A running job whose heartbeat has expired was lost with its worker and is
  marked failed.

Every status change is a named transition of `service.jobs.lifecycle`, run by one Lua script
built from its table, so it is atomic and only happens from the statuses that transition allows.
A job's success and the registration of its model are one step: its `model_id` resolves the
moment the job reads `succeeded`. Deleting a finished job removes all of the above in another
script, so a job is never half deleted nor deleted while it runs.

Job ids are 32 lowercase hex digits; anything else is unknown before it reaches Redis, so an id
can never name another key (`{id}:history` would name a job's list).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline

from service import redis_keys
from service.errors import ConflictError, NotFoundError
from service.jobs.lifecycle import ENDINGS, REFRESH_HEARTBEAT_SCRIPT, TRANSITION_SCRIPT
from service.jobs.schemas import FINISHED_STATUSES, JobRecord, JobStatus
from service.models.store import model_fields
from service.redis_pages import newest_first

# KEYS: the job's hash, then its other keys. Returns false for an unknown job, else
# {deleted, status}: only finished jobs are deleted.
_DELETE = f"""
local job_key, job_id = KEYS[1], ARGV[1]
local finished = cjson.decode(ARGV[2])
local status = redis.call('HGET', job_key, 'status')
if not status then return false end
local deletable = false
for _, name in ipairs(finished) do
  if name == status then deletable = true end
end
if not deletable then return {{0, status}} end
local kind = redis.call('HGET', job_key, 'kind')
redis.call('DEL', unpack(KEYS))
redis.call('ZREM', '{redis_keys.JOBS_ALL}', job_id)
redis.call('ZREM', '{redis_keys.JOBS_BY_KIND_PREFIX}' .. kind, job_id)
redis.call('ZREM', '{redis_keys.JOBS_BY_STATUS_PREFIX}' .. status, job_id)
return {{1, status}}
"""

# KEYS: a series' list; ARGV: the index of the first entry given, then the entries. Appends
# those beyond the list's length (an earlier attempt may have written some or all).
_APPEND_FROM = """
local have = redis.call('LLEN', KEYS[1])
for i = math.max(2, have - tonumber(ARGV[1]) + 2), #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
end
"""

JOB_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_JSON_FIELDS = ("params", "progress", "result", "worker")
_TIME_FIELDS = ("created_at", "started_at", "finished_at")
SERIES = redis_keys.JOB_SERIES


@dataclass(frozen=True)
class ModelEntry:
    """A trained model to register with its job's success (its files are already stored)."""

    id: str
    kind: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    files: dict[str, str]


class JobStore:
    """Creates, reads, lists and moves job records through their lifecycle."""

    def __init__(self, redis: Redis, heartbeat_ttl_seconds: float) -> None:
        self.redis = redis
        self.heartbeat_ttl_seconds = heartbeat_ttl_seconds
        self.heartbeat_ttl_ms = max(1, int(heartbeat_ttl_seconds * 1000))
        self._transition_script = redis.register_script(TRANSITION_SCRIPT)
        self._refresh_heartbeat = redis.register_script(REFRESH_HEARTBEAT_SCRIPT)
        self._delete_script = redis.register_script(_DELETE)
        self._append_from = redis.register_script(_APPEND_FROM)

    # Reading and writing records

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(self, kind: str, params: dict[str, Any]) -> JobRecord:
        """Store a new queued job and return its record."""
        job_id = self.new_id()
        pipe = self.redis.pipeline(transaction=True)
        self.add_create(pipe, job_id, kind, params, time.time())
        pipe.execute()
        return self.get(job_id)

    @staticmethod
    def add_create(
        pipe: Pipeline, job_id: str, kind: str, params: dict[str, Any], now: float
    ) -> None:
        """Add the commands that store a new queued job to `pipe` (a transaction), so that a
        caller can store it together with other records, all or nothing."""
        pipe.hset(
            redis_keys.job_key(job_id),
            mapping={
                "id": job_id,
                "kind": kind,
                "status": JobStatus.QUEUED.value,
                "params": json.dumps(params),
                "cancel_requested": "0",
                "created_at": repr(now),
            },
        )
        indexes = (
            redis_keys.JOBS_ALL,
            redis_keys.jobs_by_kind(kind),
            redis_keys.jobs_by_status(JobStatus.QUEUED),
        )
        for index in indexes:
            pipe.zadd(index, {job_id: now})

    def get(self, job_id: str) -> JobRecord:
        """The job's record, or `NotFoundError`."""
        raw = self.redis.hgetall(redis_keys.job_key(_known_form(job_id)))
        if not raw:
            raise _not_found(job_id)
        return _decode(raw)

    def get_raw(self, job_id: str, *fields: str) -> list[str | None]:
        """Fields of the job's hash as stored (None where absent), e.g. the lifecycle's own."""
        return self.redis.hmget(redis_keys.job_key(job_id), list(fields))

    def list(
        self,
        kind: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """One page of jobs, newest first, and how many match in all."""
        indexes = [redis_keys.jobs_by_kind(kind)] if kind else []
        if status:
            indexes.append(redis_keys.jobs_by_status(status))
        if len(indexes) <= 1:
            index = indexes[0] if indexes else redis_keys.JOBS_ALL
            return newest_first(self.redis, index, redis_keys.job_key, _decode, limit, offset)
        matching = list(reversed(self.redis.zinter(indexes, aggregate="MAX")))
        return self.get_many(matching[offset : offset + limit]), len(matching)

    def ids_with_status(self, status: JobStatus) -> list[str]:
        """Every job id with this status, oldest first."""
        return self.redis.zrange(redis_keys.jobs_by_status(status), 0, -1)

    def get_many(self, ids: Iterable[str]) -> list[JobRecord]:
        """The records of the jobs that exist among `ids`, in that order."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            if JOB_ID_PATTERN.fullmatch(job_id):
                pipe.hgetall(redis_keys.job_key(job_id))
        return [_decode(raw) for raw in pipe.execute() if raw]

    def report_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        self.redis.hset(redis_keys.job_key(job_id), "progress", json.dumps(progress))

    def append_entry(self, job_id: str, series: str, entry: dict[str, Any]) -> None:
        """Append one entry to the job's `history` or `gradients` series."""
        self.redis.rpush(redis_keys.job_series_key(job_id, series), json.dumps(entry))

    def append_from(
        self, job_id: str, series: str, first_index: int, entries: list[dict[str, Any]]
    ) -> None:
        """Write `entries` as the series' entries from `first_index` on, skipping those already
        there: a retry after a reply lost in a Redis outage never appends one twice."""
        key = redis_keys.job_series_key(job_id, series)
        self._append_from(keys=[key], args=[first_index, *(json.dumps(e) for e in entries)])

    def last_entries(self, job_ids: Iterable[str], series: str) -> list[dict[str, Any] | None]:
        """The newest entry of each job's series (None where it has none)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.lindex(redis_keys.job_series_key(job_id, series), -1)
        return [json.loads(raw) if raw else None for raw in pipe.execute()]

    def entries(self, job_id: str, series: str) -> list[dict[str, Any]]:
        """The job's `history` or `gradients` series so far; `NotFoundError` for unknown jobs."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(redis_keys.job_key(_known_form(job_id)))
        pipe.lrange(redis_keys.job_series_key(job_id, series), 0, -1)
        exists, raw = pipe.execute()
        if not exists:
            raise _not_found(job_id)
        return [json.loads(item) for item in raw]

    def is_cancel_requested(self, job_id: str) -> bool:
        return self.redis.hget(redis_keys.job_key(job_id), "cancel_requested") == "1"

    def heartbeat(self, job_id: str) -> bool:
        """Tell the store the job's worker is still alive; False when the job is not running.

        Only refreshes the heartbeat of a running job, so a late beat can never make a finished
        or lost job look alive again; recreates one that a Redis restart let expire.
        """
        keys = [redis_keys.job_key(job_id), redis_keys.job_heartbeat_key(job_id)]
        return bool(self._refresh_heartbeat(keys=keys, args=[self.heartbeat_ttl_ms]))

    # Status changes (service.jobs.lifecycle)

    def start(self, job_id: str, hostname: str, pid: int) -> JobRecord | None:
        """Move a queued job to running; None when it is no longer queued (e.g. cancelled)."""
        worker = json.dumps({"hostname": hostname, "pid": pid})
        fields = {"started_at": repr(time.time()), "worker": worker}
        moved, _ = self.transition(job_id, "start", fields)
        return self.get(job_id) if moved else None

    def finish(
        self,
        job_id: str,
        status: JobStatus,
        result: Any = None,
        error: str | None = None,
        model: ModelEntry | None = None,
    ) -> bool:
        """Move a running job to a finished status, registering `model` (on success) in the
        same step; False if it was no longer running (then nothing changed)."""
        if not status.is_finished:
            raise ValueError(f"finish() needs a finished status, got {status!r}.")
        now = time.time()
        fields = {"finished_at": repr(now)}
        if result is not None:
            fields["result"] = json.dumps(result)
        if error is not None:
            fields["error"] = error
        moved, _ = self.transition(job_id, ENDINGS[status], fields, model, now)
        return moved

    def mark_failed(self, job_id: str, error: str) -> bool:
        """Fail a job that is queued (e.g. one that could not be queued) or running."""
        fields = {"finished_at": repr(time.time()), "error": error}
        moved, current = self.transition(job_id, "abandon", fields)
        if not moved and current == JobStatus.RUNNING:
            moved, _ = self.transition(job_id, "fail", fields)
        return moved

    def resend(self, job_id: str, resends: int) -> bool:
        """Record that a queued job's message is sent again (the `resends`-th time), only if it
        was sent again `resends - 1` times so far (compare-and-set): of two passes that both
        read the same count, one sends. False when it did not move (started, cancelled, or
        another pass counted it first)."""
        fields = {"resends": str(resends), "sent_at": repr(time.time())}
        expected = {"resends": str(resends - 1) if resends > 1 else ""}
        moved, _ = self.transition(job_id, "resend", fields, expected=expected)
        return moved

    def request_cancel(self, job_id: str) -> JobRecord:
        """Cancel a queued job now, or ask a running one to stop at its next step.

        Raises `NotFoundError` for an unknown id and `ConflictError` for a finished job.
        """
        _known_form(job_id)
        cancelled, current = self.transition(
            job_id, "cancel", {"finished_at": repr(time.time()), "cancel_requested": "1"}
        )
        if not cancelled and current == JobStatus.RUNNING:
            fields = {"cancel_requested": "1"}
            cancelled, current = self.transition(job_id, "request_cancel", fields)
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
        keys = [redis_keys.job_key(_known_form(job_id)), redis_keys.job_heartbeat_key(job_id)]
        keys += [redis_keys.job_series_key(job_id, series) for series in SERIES]
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
        """Fail every running job whose heartbeat expired: its worker died or was cut off.

        Not within a heartbeat TTL of Redis starting: heartbeats that expired while Redis was
        down (restarted from its append-only file) get that long to come back first.
        """
        uptime = self.redis.info("server").get("uptime_in_seconds", 0)
        if uptime < self.heartbeat_ttl_seconds + 1:
            return []
        running = self.ids_with_status(JobStatus.RUNNING)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in running:
            pipe.exists(redis_keys.job_heartbeat_key(job_id))
        lost = []
        for job_id, alive in zip(running, pipe.execute(), strict=True):
            if alive:
                continue
            error = (
                "The worker running this job stopped responding (no heartbeat for "
                f"{self.heartbeat_ttl_ms / 1000:g} s): it was killed, crashed or lost its "
                "connection. Submit the job again."
            )
            fields = {"finished_at": repr(time.time()), "error": error}
            if self.transition(job_id, "fail", fields)[0]:
                lost.append(job_id)
        return lost

    def transition(
        self,
        job_id: str,
        name: str,
        fields: dict[str, str],
        model: ModelEntry | None = None,
        now: float | None = None,
        expected: dict[str, str] | None = None,
    ) -> tuple[bool, str | None]:
        """Run the lifecycle's transition `name` atomically, setting `fields` (and registering
        `model`) only if the job's status allows it and its fields have the `expected` values
        ('' for absent).

        Returns (whether it moved, the status it had); (False, None) for an unknown job.
        """
        keys = [redis_keys.job_key(job_id), redis_keys.job_heartbeat_key(job_id)]
        registration = ""
        if model is not None:
            keys.append(redis_keys.model_key(model.id))
            registration = json.dumps(_model_registration(job_id, model, now or time.time()))
        outcome = self._transition_script(
            keys=keys,
            args=[
                job_id,
                name,
                json.dumps(fields),
                self.heartbeat_ttl_ms,
                registration,
                json.dumps(expected) if expected else "",
            ],
        )
        if outcome is None:
            return False, None
        moved, previous = outcome
        return bool(moved), previous


def _model_registration(job_id: str, model: ModelEntry, now: float) -> dict[str, Any]:
    """The model's record as `service.models.store.ModelStore.register` writes it."""
    fields = model_fields(
        model.id, model.kind, job_id, model.params, model.metrics, model.files, now
    )
    return {"id": model.id, "kind": model.kind, "created_at": repr(now), "fields": fields}


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
