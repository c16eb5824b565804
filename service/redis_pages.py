"""Reading a page of records that are Redis hashes indexed by a sorted set of ids."""

from collections.abc import Callable
from typing import TypeVar

from redis import Redis

Record = TypeVar("Record")


def newest_first(
    redis: Redis,
    index: str,
    key_of: Callable[[str], str],
    decode: Callable[[dict[str, str]], Record],
    limit: int,
    offset: int,
) -> tuple[list[Record], int]:
    """One page of the records in `index` (scored by creation time), newest first, and how
    many there are in all. `key_of(id)` names a record's hash."""
    total = redis.zcard(index)
    ids = redis.zrevrange(index, offset, offset + limit - 1)
    pipe = redis.pipeline(transaction=False)
    for record_id in ids:
        pipe.hgetall(key_of(record_id))
    return [decode(raw) for raw in pipe.execute() if raw], total
