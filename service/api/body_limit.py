"""Refuse request bodies over their limit with the API's error shape: at once when the declared
Content-Length is over, and as soon as a body sent without one passes it. JSON bodies have a
lower limit (MAX_JSON_BYTES) than uploads (MAX_REQUEST_BYTES): FastAPI parses JSON whole, on
the event loop, before any route runs. Multipart forms are refused as soon as they pass the
parts MAX_IMAGES_PER_REQUEST allows."""

from __future__ import annotations

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response

FORM_FIELDS = 4  # parts of a form beside its images (none today; room for some)


class _Refused(BaseException):
    """Raised from `receive`. A BaseException, because FastAPI turns any Exception raised
    while it reads a body into a 400 "error parsing the body"."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _PartCounter:
    """Counts a multipart body's parts as it arrives, by its boundary, so that a form of a
    thousand files is refused after the first few dozen instead of parsed whole."""

    def __init__(self, boundary: bytes, max_images: int) -> None:
        self.delimiter = b"--" + boundary
        self.max_images = max_images
        self.seen = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self.tail + chunk
        self.seen += data.count(self.delimiter)
        self.tail = data[-(len(self.delimiter) - 1) :]  # a delimiter split across chunks
        if self.seen - 1 > self.max_images + FORM_FIELDS:  # the last delimiter closes it
            raise _Refused(
                "too_many_images",
                f"The form has more parts than {self.max_images} images and a few fields; a "
                f"request carries at most {self.max_images} images (MAX_IMAGES_PER_REQUEST). "
                "Split it into several requests.",
            )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int, max_images: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.max_images = max_images

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # Read as Starlette's form parser reads it: the first header, its last boundary.
        content_type, options = parse_options_header(headers.get("content-type"))
        # What FastAPI parses as JSON: a JSON type, or none at all (strict_content_type off).
        if content_type in (b"application/json", b"") or content_type.endswith(b"+json"):
            limit, setting = self.max_json_bytes, "MAX_JSON_BYTES"
        else:
            limit, setting = self.max_bytes, "MAX_REQUEST_BYTES"
        boundary = options.get(b"boundary")
        parts = (
            _PartCounter(boundary, self.max_images)
            if content_type == b"multipart/form-data" and boundary
            else None
        )
        declared = headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > limit:
            await self._answer(_too_large(int(declared), limit, setting), scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise _too_large(received, limit, setting)
                if parts is not None:
                    parts.feed(chunk)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _Refused as refused:
            if started:
                raise
            await self._answer(refused, scope, receive, send)

    async def _answer(self, refused: _Refused, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, refused.code, refused.detail, path=scope["path"])
        await response(scope, receive, send)


def _too_large(size: int, limit: int, setting: str) -> _Refused:
    advice = (
        "Send large images as multipart uploads, or fewer per request."
        if setting == "MAX_JSON_BYTES"
        else "Send fewer or smaller files."
    )
    return _Refused(
        "request_too_large",
        f"The request body is over {limit:,} bytes (at least {size:,} were sent); at most "
        f"{limit:,} are accepted ({setting}). {advice}",
    )
