"""`Idempotency-Key` on POST /jobs and POST /sweeps: a client that retries a request (its answer
lost to a timeout, say) with the same key gets what the first one created, never a second one.

The key is recorded in the same Redis transaction as the records the request creates (WATCH on
the key, then MULTI), so a request either created its records and the key together or nothing;
two requests racing with one key create one set of records. Keys are kept 24 hours. A request is
its body as the client sent it (no server defaults), and the key is looked up before the request
is validated. The same key with a different request is a conflict (409), as it is most likely a
client's mistake; a key whose record was deleted since creates a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from service import redis_keys
from service.errors import ConflictError

TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255


def create_once(
    redis: Redis,
    scope: str,
    client_key: str | None,
    request: Any,
    create: Callable[[Pipeline], str],
    record_key: Callable[[str], str],
) -> tuple[str, bool]:
    """Queue the commands of `create(pipe)` (which returns the new record's id) on a
    transaction, with the client's key when there is one. Returns (the id, True) when this call
    created it, (the id the key names, False) for a request made before with that key, unless
    its record (`record_key(id)`) has been deleted since: then it is created again."""
    if client_key is None:
        pipe = redis.pipeline(transaction=True)
        record_id = create(pipe)
        pipe.execute()
        return record_id, True
    key = redis_keys.idempotency_key(scope, client_key)
    fingerprint = request_fingerprint(request)
    with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(key)
                earlier = pipe.get(key)
                if earlier is not None:
                    earlier_id = _earlier_id(json.loads(earlier), fingerprint, scope)
                    if pipe.exists(record_key(earlier_id)):
                        return earlier_id, False
                pipe.multi()
                record_id = create(pipe)
                pipe.set(key, json.dumps({"id": record_id, "request": fingerprint}), ex=TTL_SECONDS)
                pipe.execute()
                return record_id, True
            except WatchError:
                continue  # another request with this key got in first: read what it made


def request_fingerprint(request: Any) -> str:
    """A digest of the request as the client sent it (canonical JSON: sorted keys, no spaces),
    so that a retry matches whatever defaults the server fills in meanwhile."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def replayed(
    redis: Redis,
    scope: str,
    client_key: str | None,
    request: Any,
    record_key: Callable[[str], str],
) -> str | None:
    """The id the first request with this key created, while its record exists; None when the
    key is new (or its record deleted); `ConflictError` for a different request with it. Asked
    before the request is validated, so a retry gets its answer even when validation would now
    refuse it (a default changed by a deploy, a referenced model deleted since)."""
    if client_key is None:
        return None
    earlier = redis.get(redis_keys.idempotency_key(scope, client_key))
    if earlier is None:
        return None
    earlier_id = _earlier_id(json.loads(earlier), request_fingerprint(request), scope)
    return earlier_id if redis.exists(record_key(earlier_id)) else None


def _earlier_id(earlier: dict[str, str], fingerprint: str, scope: str) -> str:
    if earlier["request"] != fingerprint:
        raise ConflictError(
            f"This Idempotency-Key was used before with a different request to POST /{scope} "
            f"(it created {earlier['id']}). Use a new key for a new request, or repeat the "
            "first request exactly to get its answer again."
        )
    return earlier["id"]
