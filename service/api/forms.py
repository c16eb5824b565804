"""Small multipart forms (a few digit images) parsed in one pass over the whole body, instead of
python-multipart's byte-by-byte callbacks (about 0.3 ms of a prediction's 1.3 ms in the API
process). Only the plain shape that curl, browsers, httpx and requests send is taken; anything
else (a preamble, other part headers, a charset, limits reached, a malformed body) goes to
Starlette's parser, so every answer, error or not, stays Starlette's."""

from __future__ import annotations

from tempfile import SpooledTemporaryFile

from fastapi import Request
from python_multipart.multipart import (
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE,
    parse_options_header,
)
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartParser

from service.api.request_class import route_with_request

SMALL_FORM_BYTES = 512 * 1024  # larger bodies are streamed through Starlette's parser
PART_HEADERS = {b"content-disposition", b"content-type"}

Part = tuple[str, bytes | None, list[tuple[bytes, bytes]], bytes]  # name, filename, headers, data


def split_form(body: bytes, boundary: bytes) -> list[Part] | None:
    """The parts of a multipart/form-data body as (name, filename or None for a field, raw
    headers, content), or None when the body is not in the plain shape this reads."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        return None
    *sections, closing = body[len(delimiter) :].split(b"\r\n" + delimiter)
    if closing not in (b"--", b"--\r\n") or not sections:
        return None
    parts: list[Part] = []
    for section in sections:
        head, found, data = section.partition(b"\r\n\r\n")
        if not found or not head.startswith(b"\r\n") or len(head) == 2:
            return None
        headers = []
        disposition = None
        lines = head[2:].split(b"\r\n")
        if len(lines) > DEFAULT_MAX_HEADER_COUNT:  # python-multipart refuses more
            return None
        for line in lines:
            if b"\r" in line or len(line) > DEFAULT_MAX_HEADER_SIZE:  # refused there too
                return None
            name, colon, value = line.partition(b":")
            name = name.lower()
            value = value.lstrip(b" ")
            if not colon or name not in PART_HEADERS or b"\t" in value or not value:
                return None
            if name == b"content-disposition":
                disposition = value
            headers.append((name, value))
        if disposition is None:
            return None
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            return None
        parts.append((_text(options[b"name"]), options.get(b"filename"), headers, data))
    return parts


def small_form(
    body: bytes, content_type: str | None, max_files: float, max_fields: float, max_part_size: int
) -> FormData | None:
    """The form Starlette's parser would give for `body`, or None where this does not read it
    (then Starlette's parser does, with its own answers to anything wrong)."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary or b"charset" in options:
        return None
    if len(body) > SMALL_FORM_BYTES:
        return None
    parts = split_form(body, boundary)
    if parts is None:
        return None
    files = sum(1 for _, filename, _, _ in parts if filename is not None)
    fields = len(parts) - files
    too_big = any(filename is None and len(data) > max_part_size for _, filename, _, data in parts)
    if files > max_files or fields > max_fields or too_big:
        return None
    items: list[tuple[str, str | UploadFile]] = []
    for name, filename, headers, data in parts:
        if filename is None:
            items.append((name, _text(data)))
            continue
        spooled = SpooledTemporaryFile(max_size=MultiPartParser.spool_max_size)  # noqa: SIM115 (closed with the form)
        spooled.write(data)
        spooled.seek(0)
        upload = UploadFile(
            file=spooled,  # type: ignore[arg-type]
            size=len(data),
            filename=_text(filename),
            headers=Headers(raw=headers),
        )
        items.append((name, upload))
    return FormData(items)


def _text(data: bytes) -> str:
    """As Starlette decodes a field or a file name: UTF-8, else Latin-1 (its own
    `starlette.formparsers._user_safe_decode` is private)."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


class SmallFormRequest(Request):
    """A request whose small multipart form is read by `small_form`."""

    async def _get_form(
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> FormData:
        if self._form is None:
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) <= SMALL_FORM_BYTES:
                self._form = small_form(
                    await self.body(),
                    self.headers.get("content-type"),
                    max_files,
                    max_fields,
                    max_part_size,
                )
        if self._form is None:  # Starlette's parser reads the body from `self._body`
            return await super()._get_form(
                max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
            )
        return self._form


# The `/predict` router's route class: its small multipart forms read in one pass.
SmallFormRoute = route_with_request(SmallFormRequest)
