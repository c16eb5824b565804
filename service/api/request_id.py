"""Every request gets an id: the client's `X-Request-ID` when it is a sane one, else a new one.
It is echoed in the response's `X-Request-ID`; an error no handler expected is logged with it and
answered in the API's error shape naming it (and the connection stays usable: Starlette's own
last-resort handler re-raises, and the server then drops the connection)."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import unexpected_error_response

logger = logging.getLogger(__name__)

HEADER = "x-request-id"
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_of(request: Request) -> str:
    """The request's id, as its response's X-Request-ID names it (for errors a route logs)."""
    return getattr(request.state, "request_id", "unknown")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if CLIENT_ID_PATTERN.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id  # `request_id_of`
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("Request %s (%s %s) failed unexpectedly.", request_id,
                             scope["method"], scope["path"])  # fmt: skip
            if started:  # too late for an error response: the server closes the connection
                raise
            await unexpected_error_response(request_id, scope["path"])(scope, receive, send_with_id)
