"""Refuse request bodies over MAX_REQUEST_BYTES with the API's error shape: at once when the
declared Content-Length is over, and as soon as a body sent without one passes the limit; and
multipart forms with more parts than MAX_IMAGES_PER_REQUEST allows, as soon as they pass it."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response


class _BodyTooLarge(BaseException):
    """Raised from `receive`. A BaseException, because FastAPI turns any Exception raised
    while it reads a body into a 400 "error parsing the body"."""


class _TooManyParts(BaseException):
    """Raised from `receive` when a multipart body has more parts than any request may."""


class _PartCounter:
    """Counts a multipart body's parts as it arrives, by its boundary, so that a form of a
    thousand files is refused after the first few dozen instead of parsed whole."""

    def __init__(self, boundary: bytes, most: int) -> None:
        self.delimiter = b"--" + boundary
        self.most = most
        self.seen = 0
        self.tail = b""

    @classmethod
    def of(cls, scope: Scope, most: int) -> _PartCounter | None:
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        kind, _, parameters = content_type.partition(b";")
        if kind.strip().lower() != b"multipart/form-data":
            return None
        for parameter in parameters.split(b";"):
            name, _, value = parameter.strip().partition(b"=")
            if name.lower() == b"boundary" and value:
                return cls(value.strip(b'"'), most)
        return None

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk
        self.seen += data.count(self.delimiter)
        self.tail = data[-(len(self.delimiter) - 1) :]  # a delimiter split across chunks
        if self.seen - 1 > self.most:  # the last delimiter closes the form
            raise _TooManyParts


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, max_parts: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_parts = max_parts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(int(declared), scope, receive, send)
            return
        received = 0
        started = False
        parts = _PartCounter.of(scope, self.max_parts)

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    raise _BodyTooLarge
                if parts is not None:
                    parts.feed(chunk)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(received, scope, receive, send)
        except _TooManyParts:
            if started:
                raise
            await self._refuse_parts(scope, receive, send)

    async def _refuse(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "request_too_large",
            f"The request body is over {self.max_bytes:,} bytes (at least {size:,} were sent); "
            f"at most {self.max_bytes:,} are accepted (MAX_REQUEST_BYTES). Send fewer or "
            f"smaller files.",
        )
        await response(scope, receive, send)

    async def _refuse_parts(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "too_many_images",
            f"The form has more than {self.max_parts} parts; a request carries at most "
            f"{self.max_parts} (MAX_IMAGES_PER_REQUEST, plus a few fields). Split it into "
            "several requests.",
        )
        await response(scope, receive, send)
