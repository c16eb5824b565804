"""The reconciler: what makes every job end, whatever crashed on the way.

It runs in the background of each API process; one pass at a time across them (a Redis lock,
held for the pass and released by its owner; at most one pass a period), and each message sent
again is counted by compare-and-set, so no two passes send one for the same count:
- a running job whose heartbeat expired (its worker is gone) is failed, every heartbeat
  interval;
- a queued job whose message is in no queue (the API crashed between storing and sending it,
  or the send failed), or is held unacknowledged by no live worker (a worker took it and died
  before starting it; each worker lists the jobs it holds in its liveness record), for longer
  than QUEUED_GRACE_SECONDS is sent again: safe, as only a queued job can start. A live
  worker's jobs count as held only until it has held jobs while running none for
  HELD_IDLE_SECONDS (its pool stuck before starting them). After MAX_RESENDS messages it is
  failed, saying why;
- then `after_pass` runs (the API queues default models missing again, service.bootstrap).

It reads Celery's Redis transport as kombu lays it out: a list per queue (and per priority
step), each message a JSON envelope with a base64 body `[args, kwargs, embed]`; messages a
worker has taken but not acknowledged in the hash `unacked` (tag -> [message, exchange,
routing key]) and the sorted set `unacked_index` (tag -> when it was taken).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from redis.exceptions import RedisError

from service import redis_keys
from service.jobs.schemas import JobStatus
from service.jobs.store import JobStore
from service.jobs.task_names import RUN_JOB_TASK
from service.worker.registry import live_workers

logger = logging.getLogger(__name__)

PAGE = 1000  # messages read from Redis at once
LOCK_SECONDS = 60.0  # the longest a pass holds the lock (a process that died in it)
# The counts can say no message is missing when one is (a cancelled job's message still in
# the queue stands for a lost one's): every this many passes, the queue is read anyway.
READ_QUEUE_EVERY = 6

# KEYS: the lock; ARGV: the owner's token, ms to keep it (<= 0: delete it). Only its owner's.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""
PRIORITY_SEPARATOR, PRIORITY_STEPS = "\x06\x16", (0, 3, 6, 9)


@dataclass
class Pass:
    """What one pass did."""

    resent: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        jobs: JobStore,
        celery: Celery,
        queue: str,
        grace_seconds: float,
        max_resends: int,
        period_seconds: float,
        held_idle_seconds: float,
        after_pass: Callable[[], Any] | None = None,
        batch: int = 500,
    ) -> None:
        self.jobs = jobs
        self.redis = jobs.redis
        self.celery = celery
        self.queue = queue
        self.grace_seconds = grace_seconds
        self.max_resends = max_resends
        self.period_seconds = period_seconds
        self.after_pass = after_pass
        self.batch = batch  # overdue jobs looked at in one pass
        self.held_idle_seconds = held_idle_seconds
        self._offset = 0
        self._passes = 0
        self._token = uuid.uuid4().hex
        self._release = self.redis.register_script(_RELEASE_LOCK)

    def fail_lost_jobs(self) -> list[str]:
        """Fail running jobs whose worker is gone (safe from any number of processes at once)."""
        lost = self.jobs.fail_lost_jobs()
        for job_id in lost:
            logger.warning("Job %s lost its worker; marked failed.", job_id)
        return lost

    def run_pass(self) -> Pass | None:
        """One pass over queued jobs and then `after_pass`, unless another API process is doing
        one or did one less than a period ago (None then).

        The lock is held for the whole pass (up to LOCK_SECONDS, should its process die in
        it), then kept by its owner only until a period after the pass began; it is released
        by its token, so a pass never ends another's lock. Should a pass outlast the lock
        anyway, the resend counter's compare-and-set still sends one message per count.
        """
        began = time.monotonic()
        lock_ms = int(max(LOCK_SECONDS, 3 * self.period_seconds) * 1000)
        if not self.redis.set(redis_keys.RECONCILER_LOCK, self._token, nx=True, px=lock_ms):
            return None
        try:
            done = Pass()
            self._requeue(done)
            if self.after_pass is not None:
                self.after_pass()
            return done
        finally:
            spacing_ms = int((0.9 * self.period_seconds - (time.monotonic() - began)) * 1000)
            try:
                self._release(keys=[redis_keys.RECONCILER_LOCK], args=[self._token, spacing_ms])
            except RedisError:
                logger.warning("Could not release the reconciler's lock; it expires by itself.")

    def _requeue(self, done: Pass) -> None:
        """Send again the messages of overdue queued jobs, looking at most at `batch` of them a
        pass (the next ones at the next pass), and reading the queue only when the counts say
        a message may be missing, or every READ_QUEUE_EVERY passes (the counts can be fooled): a
        backlog of any size costs most passes little."""
        now = time.time()
        overdue = self._overdue(now)
        if not overdue:
            return
        held = self._held()
        # Counts first: when there are as many messages as queued jobs, none is missing.
        queued_index = redis_keys.jobs_by_status(JobStatus.QUEUED)
        held_ids = sorted(held)
        pipe = self.redis.pipeline(transaction=False)
        for name in self._queue_lists():
            pipe.llen(name)
        pipe.zcard(queued_index)
        pipe.hlen(redis_keys.CELERY_UNACKED)
        for job_id in held_ids:
            pipe.zscore(queued_index, job_id)
        replies = pipe.execute()
        steps = len(PRIORITY_STEPS)
        lengths, (queued, unacked) = replies[:steps], replies[steps : steps + 2]
        held_queued = sum(score is not None for score in replies[steps + 2 :])
        self._passes += 1
        if queued <= sum(lengths) + held_queued and self._passes % READ_QUEUE_EVERY:
            return  # a message waits, or a live worker holds one, for every queued job
        messages = self._messages(set(overdue), lengths, unacked)
        if messages is None:
            return
        waiting, taken = messages
        for job_id, resends in overdue.items():
            if job_id in waiting or job_id in held:
                continue  # waiting for a worker, or taken by a live one (busy, or starting it)
            tag, taken_at = taken.get(job_id, (None, None))
            if taken_at is not None and now - taken_at < self.grace_seconds:
                continue  # just taken: its worker has not listed it yet
            if not self._send_again(job_id, resends, tag, done):
                break  # the broker refuses messages now: the next pass tries again

    def _held(self) -> set[str]:
        """Ids of the jobs live workers hold, but for workers that have held jobs while running
        none for HELD_IDLE_SECONDS: their pool is stuck before starting them, and those jobs
        are sent again like lost ones (the stuck worker may still start its copy: only a queued
        job starts, so it runs once)."""
        held = set()
        for worker in live_workers(self.redis):
            idle = float(worker.get("holding_idle_seconds") or 0)
            if idle < self.held_idle_seconds:
                held.update(worker.get("holding", []))
            else:
                logger.warning(
                    "Worker %s has held jobs %s for %.0f s without running any "
                    "(HELD_IDLE_SECONDS=%g); they are treated as not held.",
                    worker.get("hostname"), worker.get("holding", []), idle,
                    self.held_idle_seconds,
                )  # fmt: skip
        return held

    def _overdue(self, now: float) -> dict[str, int]:
        """Job id -> messages sent again, of at most `batch` jobs queued (or last sent) longer
        than the grace ago; each pass takes the next ones, in order of their creation."""
        queued = self.redis.zrangebyscore(
            redis_keys.jobs_by_status(JobStatus.QUEUED), "-inf", now - self.grace_seconds,
            start=self._offset, num=self.batch,
        )  # fmt: skip
        self._offset = self._offset + len(queued) if len(queued) == self.batch else 0
        pipe = self.redis.pipeline(transaction=False)
        for job_id in queued:
            pipe.hmget(redis_keys.job_key(job_id), ["created_at", "sent_at", "resends"])
        return {
            job_id: int(resends or 0)
            for job_id, (created_at, sent_at, resends) in zip(queued, pipe.execute(), strict=True)
            if created_at is not None and now - float(sent_at or created_at) >= self.grace_seconds
        }

    def _send_again(self, job_id: str, resends: int, tag: str | None, done: Pass) -> bool:
        """Send the job's message again, or fail the job past MAX_RESENDS; False when the
        broker refused the message."""
        where = "taken by a worker that never started it" if tag else "in no queue"
        if resends >= self.max_resends:
            error = (
                f"The job's message was lost ({where}), and so were the {resends} sent again "
                f"by the service's reconciler (MAX_RESENDS={self.max_resends}); the workers may "
                "be unable to take it: check their logs, then submit it again."
            )
            fields = {"finished_at": repr(time.time()), "error": error}
            if self.jobs.transition(job_id, "abandon", fields)[0]:
                done.abandoned.append(job_id)
                logger.error("Job %s failed: %s", job_id, error)
            return True
        if not self.jobs.resend(job_id, resends + 1):
            return True  # it started or was cancelled meanwhile, or another pass sent it
        if tag is not None:  # a dead worker's; a live one acknowledging it later is harmless
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(redis_keys.CELERY_UNACKED, tag)
            pipe.zrem(redis_keys.CELERY_UNACKED_INDEX, tag)
            pipe.execute()
        try:
            self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=self.queue)
        except Exception as error:  # counted as sent: MAX_RESENDS bounds the tries
            logger.warning("Could not send job %s again: %s", job_id, error)
            return False
        done.resent.append(job_id)
        logger.warning("Job %s was queued with its message %s; sent it again.", job_id, where)
        return True

    def _queue_lists(self) -> list[str]:
        return [
            self.queue + (f"{PRIORITY_SEPARATOR}{step}" if step else "") for step in PRIORITY_STEPS
        ]

    def _messages(
        self, wanted: set[str], lengths: list[int], unacked: int
    ) -> tuple[set[str], dict[str, tuple[str, float]]] | None:
        """Which of the `wanted` jobs have a message waiting in the queue; job id -> (tag, when
        taken) for messages a worker took and has not acknowledged. Read a page at a time, so
        memory stays bounded. None (logged) when there are messages and none of them decodes
        (another serializer, compression): every job would look lost then."""
        waiting, decoded = set(), 0
        for name, length in zip(self._queue_lists(), lengths, strict=True):
            for first in range(0, length, PAGE):
                for raw in self.redis.lrange(name, first, first + PAGE - 1):
                    job_id = _job_id(_loads(raw))
                    decoded += job_id is not None
                    if job_id in wanted:
                        waiting.add(job_id)
        taken_at = dict(self.redis.zrange(redis_keys.CELERY_UNACKED_INDEX, 0, -1, withscores=True))
        taken = {}
        for tag, raw in self.redis.hscan_iter(redis_keys.CELERY_UNACKED, count=PAGE):
            entry = _loads(raw)
            job_id = _job_id(entry[0] if isinstance(entry, list) and entry else None)
            decoded += job_id is not None
            if job_id:
                taken[job_id] = (tag, float(taken_at.get(tag, time.time())))
        if sum(lengths) + unacked and not decoded:
            logger.error(
                "The reconciler cannot read any of the %d messages in queue %r (a serializer "
                "other than JSON, or compression?); skipping its pass so that no job is taken "
                "for lost. Check task_serializer in service/worker/celery_app.py.",
                sum(lengths) + unacked, self.queue,
            )  # fmt: skip
            return None
        return waiting, taken


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _job_id(message: Any) -> str | None:
    """The job id a run-job message carries, or None for anything else."""
    if not isinstance(message, dict):
        return None
    if (message.get("headers") or {}).get("task") != RUN_JOB_TASK:
        return None
    body = message.get("body", "")
    try:
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return args[0] if args and isinstance(args[0], str) else None
    except (ValueError, TypeError, IndexError, KeyError):
        return None
