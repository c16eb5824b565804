"""Concurrency limits for costly work (preparing large images, rendering plots): when every slot
is taken, a request is refused at once with 503 and `Retry-After` instead of queueing without
end behind the others."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import ClassVar

from service.errors import ServiceError


class Busy(ServiceError):
    status_code = 503
    code = "busy"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class Gate:
    """At most `slots` holders at a time; `enter` raises `Busy` when all are held. Thread-safe,
    so it guards work on the event loop and in the thread pool alike."""

    def __init__(self, name: str, slots: int, setting: str) -> None:
        if slots < 1:
            raise ValueError(f"A gate needs at least 1 slot, got {slots}.")
        self.name = name
        self.slots = slots
        self.setting = setting
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        if not self._semaphore.acquire(blocking=False):
            raise Busy(
                f"The service is busy {self.name} ({self.slots} at a time, {self.setting}); "
                "nothing was done. Retry in a second."
            )
        try:
            yield
        finally:
            self._semaphore.release()
