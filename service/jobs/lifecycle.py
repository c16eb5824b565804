"""A job's lifecycle: its statuses and every allowed transition, in one table.

The job store's Lua scripts are built from this table, so a status changes only along a row of
it, atomically, and only from the statuses that row names: a job cancelled while queued can never
start, a job failed as lost can never be overwritten by a late success, and a finished job never
changes again.

    transition        from       -> to          heartbeat  who
    start             queued     -> running     start      the worker's child, on receiving it
    resend            queued     -> queued      keep       the reconciler, its message lost
    cancel            queued     -> cancelled   stop       POST /jobs/{id}/cancel
    abandon           queued     -> failed      stop       the API (cannot queue), the reconciler
    request_cancel    running    -> running     keep       POST /jobs/{id}/cancel (flag only)
    succeed           running    -> succeeded   stop       the child; its model registered too
    fail              running    -> failed      stop       the child, the worker's parent
                                                           (stalled, time limit), the reconciler
                                                           (heartbeat expired)
    end_cancelled     running    -> cancelled   stop       the child (it stopped), the parent
                                                           (killed after the cancel grace)

Heartbeat actions: `start` sets `job:{id}:heartbeat` with its TTL, `stop` deletes it, `keep`
leaves it; while a job runs, its worker's parent refreshes it (`REFRESH_HEARTBEAT_SCRIPT`, which
only ever refreshes a running job's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from service import redis_keys
from service.jobs.schemas import JobStatus

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED


class Heartbeat(StrEnum):
    """What a transition does to the job's heartbeat key."""

    START = "start"
    KEEP = "keep"
    STOP = "stop"


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[JobStatus, ...]
    target: JobStatus
    heartbeat: Heartbeat
    registers_model: bool = False  # the job's model is registered in the same atomic step


TRANSITIONS: dict[str, Transition] = {
    transition.name: transition
    for transition in (
        Transition("start", (QUEUED,), RUNNING, Heartbeat.START),
        Transition("resend", (QUEUED,), QUEUED, Heartbeat.KEEP),
        Transition("cancel", (QUEUED,), CANCELLED, Heartbeat.STOP),
        Transition("abandon", (QUEUED,), FAILED, Heartbeat.STOP),
        Transition("request_cancel", (RUNNING,), RUNNING, Heartbeat.KEEP),
        Transition("succeed", (RUNNING,), SUCCEEDED, Heartbeat.STOP, registers_model=True),
        Transition("fail", (RUNNING,), FAILED, Heartbeat.STOP),
        Transition("end_cancelled", (RUNNING,), CANCELLED, Heartbeat.STOP),
    )
}

# How a running job ends, by the finished status it ends with.
ENDINGS = {SUCCEEDED: "succeed", FAILED: "fail", CANCELLED: "end_cancelled"}


def allowed_moves() -> dict[JobStatus, set[JobStatus]]:
    """Each status -> the statuses it may move to (finished statuses: none)."""
    moves: dict[JobStatus, set[JobStatus]] = {status: set() for status in JobStatus}
    for transition in TRANSITIONS.values():
        for source in transition.sources:
            if transition.target != source:
                moves[source].add(transition.target)
    return moves


def _table_json() -> str:
    return json.dumps(
        {
            name: {
                "from": [status.value for status in transition.sources],
                "to": transition.target.value,
                "heartbeat": transition.heartbeat.value,
                "registers_model": transition.registers_model,
            }
            for name, transition in TRANSITIONS.items()
        }
    )


# KEYS: the job's hash, its heartbeat key, and (only with a model) the model's hash.
# ARGV: job id, transition name, fields to set (JSON), heartbeat TTL in ms, the model (JSON:
# {"id", "kind", "created_at", "fields"}) or '', and optionally the values some fields must
# still have (JSON {field: value}, '' for absent; a compare-and-set, e.g. a resend counter).
# Returns false for an unknown job, else {moved, the status it had}.
TRANSITION_SCRIPT = f"""
local transitions = cjson.decode([[{_table_json()}]])
local job_key, heartbeat_key = KEYS[1], KEYS[2]
local job_id, name = ARGV[1], ARGV[2]
local fields, heartbeat_ms = cjson.decode(ARGV[3]), ARGV[4]
local transition = transitions[name]
if not transition then return redis.error_reply('unknown job transition ' .. name) end
local current = redis.call('HGET', job_key, 'status')
if not current then return false end
local permitted = false
for _, status in ipairs(transition['from']) do
  if status == current then permitted = true end
end
if not permitted then return {{0, current}} end
if ARGV[6] and ARGV[6] ~= '' then
  for field, value in pairs(cjson.decode(ARGV[6])) do
    if (redis.call('HGET', job_key, field) or '') ~= value then return {{0, current}} end
  end
end
-- Checked before any write: an error reply does not roll back what the script wrote.
if ARGV[5] ~= '' and not transition['registers_model'] then
  return redis.error_reply('job transition ' .. name .. ' registers no model')
end
for field, value in pairs(fields) do redis.call('HSET', job_key, field, value) end
local target = transition['to']
if target ~= current then
  local score = redis.call('HGET', job_key, 'created_at')
  redis.call('HSET', job_key, 'status', target)
  redis.call('ZREM', '{redis_keys.JOBS_BY_STATUS_PREFIX}' .. current, job_id)
  redis.call('ZADD', '{redis_keys.JOBS_BY_STATUS_PREFIX}' .. target, score, job_id)
end
if transition['heartbeat'] == 'start' then
  redis.call('SET', heartbeat_key, '1', 'PX', heartbeat_ms)
elseif transition['heartbeat'] == 'stop' then
  redis.call('DEL', heartbeat_key)
end
if ARGV[5] ~= '' then
  local model = cjson.decode(ARGV[5])
  for field, value in pairs(model['fields']) do redis.call('HSET', KEYS[3], field, value) end
  redis.call('ZADD', '{redis_keys.MODELS_ALL}', model['created_at'], model['id'])
  redis.call('ZADD', '{redis_keys.MODELS_BY_KIND_PREFIX}' .. model['kind'],
             model['created_at'], model['id'])
  redis.call('PUBLISH', '{redis_keys.MODELS_CHANGED_CHANNEL}', model['id'])
end
return {{1, current}}
"""

# KEYS: the job's hash, its heartbeat key; ARGV: the TTL in ms. Refreshes (or, after a Redis
# restart that outlived it, recreates) the heartbeat of a running job, and of no other: a late
# beat can never make a finished job look alive. Returns 1 when refreshed.
REFRESH_HEARTBEAT_SCRIPT = f"""
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING.value}' then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"""
