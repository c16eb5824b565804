"""A small HTTP/1.1 load generator: N keep-alive connections, each sending its next request as
soon as the previous answer arrives. Requests are built once up front and sent as raw bytes,
so the generator spends little CPU per request (it shares the machine with the server)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Load:
    """What one run of a load generator measured (this one's or wrk's, bench/wrk.py)."""

    concurrency: int
    seconds: float
    requests: int
    throughput: float  # requests/s
    p50_ms: float
    p99_ms: float
    errors: int  # answers other than 200 (wrk: other than 2xx or 3xx) and socket errors


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")

    def summary(self) -> Load:
        return Load(
            concurrency=self.concurrency,
            seconds=self.seconds,
            requests=self.requests,
            throughput=self.throughput,
            p50_ms=self.percentile_ms(50),
            p99_ms=self.percentile_ms(99),
            errors=self.errors,
        )


def multipart_body(name: str, data: bytes, boundary: str) -> bytes:
    """A multipart/form-data body uploading `data` as the field `file`."""
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


def post_request(host: str, port: int, path: str, content_type: str, body: bytes) -> bytes:
    """A complete POST request."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def multipart_request(host: str, port: int, path: str, name: str, data: bytes) -> bytes:
    """A complete POST request uploading `data` as the multipart field `file`."""
    boundary = uuid.uuid4().hex
    body = multipart_body(name, data, boundary)
    return post_request(host, port, path, f"multipart/form-data; boundary={boundary}", body)


async def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    seconds: float | None = None,
    total: int | None = None,
) -> LoadResult:
    """Send `requests` round-robin over `concurrency` connections, for `seconds` or until
    `total` requests were answered, whichever comes first."""
    if seconds is None and total is None:
        raise ValueError("Give seconds, total or both.")
    result = LoadResult(concurrency, 0.0)
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")
    remaining = itertools.count()
    cycle = itertools.cycle(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline and (total is None or next(remaining) < total):
                started = time.perf_counter()
                writer.write(next(cycle))
                status = await _read_response(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.errors += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status
