"""The small-form reader gives exactly the form Starlette's parser gives, for the plain forms
it reads and for everything it hands back (odd, malformed or over a limit)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from service.api.forms import SMALL_FORM_BYTES, SmallFormRequest, small_form

BOUNDARY = "b0und4ry"
PNG = bytes(range(256)) * 3  # any bytes: CRs, LFs, dashes


def encoded(files=None, data=None) -> tuple[str, bytes]:
    """A form as httpx encodes it: (content type, body)."""
    request = httpx.Request("POST", "http://test/", files=files, data=data)
    return request.headers["content-type"], request.read()


def raw(*parts: bytes, boundary: str = BOUNDARY, ending: bytes = b"--\r\n") -> bytes:
    delimiter = b"--" + boundary.encode()
    return b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + ending


def file_part(name=b"file", filename=b"d.png", data=PNG, extra=b"") -> bytes:
    return (
        b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'
        + extra + b"Content-Type: image/png\r\n\r\n" + data
    )  # fmt: skip


def field_part(name=b"note", value=b"hello") -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
CASES = {
    "httpx one file": encoded(files={"file": ("d.png", PNG, "image/png")}),
    "httpx files and a field": encoded(
        files=[("file", ("a.png", PNG, "image/png")), ("file", ("b.png", b"", "image/png"))],
        data={"note": "x y"},
    ),
    "curl-like": (MULTIPART, raw(file_part())),
    "browser boundary": (
        "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
        raw(file_part(), boundary="----WebKitFormBoundary7MA4YWxkTrZu0gW"),
    ),
    "quoted boundary": (f'multipart/form-data; boundary="{BOUNDARY}"', raw(file_part())),
    "no final CRLF": (MULTIPART, raw(file_part(), ending=b"--")),
    "epilogue": (MULTIPART, raw(file_part(), ending=b"--\r\nafter")),
    "preamble": (MULTIPART, b"before\r\n" + raw(file_part())),
    "content holding the delimiter": (
        MULTIPART,
        raw(file_part(data=b"a\r\n--" + BOUNDARY.encode() + b"x\r\nb")),
    ),
    "content holding a blank line": (MULTIPART, raw(file_part(data=b"\r\n\r\n--\r\n"))),
    "windows path filename": (MULTIPART, raw(file_part(filename=b"C:\\\\digits\\\\d.png"))),
    "utf-8 filename": (MULTIPART, raw(file_part(filename="chiffre-\u00e9.png".encode()))),
    "latin-1 filename": (MULTIPART, raw(file_part(filename=b"chiffre-\xe9.png"))),
    "latin-1 name": (MULTIPART, raw(file_part(name=b"fil\xe9"))),
    "escaped quote in filename": (MULTIPART, raw(file_part(filename=b'a\\"b.png'))),
    "filename*": (
        MULTIPART,
        raw(file_part()).replace(b'filename="d.png"', b"filename*=UTF-8''d.png"),
    ),
    "empty filename": (MULTIPART, raw(file_part(filename=b""))),
    "extra part header": (
        MULTIPART,
        raw(file_part(extra=b"Content-Transfer-Encoding: binary\r\n")),
    ),
    "tab in a header": (MULTIPART, raw(file_part(extra=b"Content-Type:\timage/png\r\n"))),
    "upper-case header names": (
        MULTIPART,
        raw(file_part().replace(b"Content-Disposition", b"CONTENT-DISPOSITION")),
    ),
    "no space after the colon": (
        MULTIPART,
        raw(file_part().replace(b"Disposition: ", b"Disposition:")),
    ),
    "a CR in a header": (MULTIPART, raw(file_part(extra=b"Content-Type: ima\rge/png\r\n"))),
    "a CR in a name": (MULTIPART, raw(file_part(name=b"fi\rle"))),
    "9 headers": (MULTIPART, raw(file_part(extra=b"Content-Type: image/png\r\n" * 7))),
    "8 headers": (MULTIPART, raw(file_part(extra=b"Content-Type: image/png\r\n" * 6))),
    "a header line over the size limit": (MULTIPART, raw(file_part(filename=b"f" * 4169))),
    "a header line at the size limit": (MULTIPART, raw(file_part(filename=b"f" * 4168))),
    "no name": (MULTIPART, raw(b'Content-Disposition: form-data; filename="d.png"\r\n\r\nxx')),
    "no headers": (MULTIPART, raw(b"\r\nxx")),
    "not form-data": (MULTIPART, raw(file_part().replace(b"form-data", b"attachment"))),
    "LF line endings": (MULTIPART, raw(file_part()).replace(b"\r\n", b"\n")),
    "truncated": (MULTIPART, raw(file_part())[:-20]),
    "no parts": (MULTIPART, b"--" + BOUNDARY.encode() + b"--\r\n"),
    "empty body": (MULTIPART, b""),
    "another boundary": (MULTIPART, raw(file_part(), boundary="other")),
    "charset": (f"{MULTIPART}; charset=latin-1", raw(field_part(value=b"caf\xe9"))),
    "fields only": (MULTIPART, raw(field_part(), field_part(name=b"n2", value=b""))),
    "field too large": (MULTIPART, raw(field_part(value=b"x" * 2000))),
    "too many files": (MULTIPART, raw(*[file_part()] * 4)),
    "too many fields": (MULTIPART, raw(*[field_part()] * 4)),
    "large": (MULTIPART, raw(file_part(data=b"x" * (SMALL_FORM_BYTES + 1)))),
    "not multipart": ("application/x-www-form-urlencoded", b"file=a&b=c"),
    "no content type": (None, raw(file_part())),
}
LIMITS = {"max_files": 3, "max_fields": 3, "max_part_size": 1024}


def request(cls: type[Request], content_type: str | None, body: bytes, length: bool) -> Request:
    headers = [(b"content-length", str(len(body)).encode())] if length else []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    chunks = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def receive() -> dict:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return cls({"type": "http", "method": "POST", "headers": headers, "app": None}, receive)


def form_of(cls: type[Request], content_type: str | None, body: bytes, length: bool = True):
    """The form as comparable values, or the refusal."""

    async def parse():
        try:
            form = await request(cls, content_type, body, length).form(**LIMITS)
        except HTTPException as error:
            return ("refused", error.status_code, error.detail)
        items = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                value = (value.filename, value.size, value.headers.raw, value.content_type, data)
            items.append((name, value))
        return items

    return asyncio.run(parse())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_a_form_reads_as_starlette_reads_it(case, length):
    content_type, body = CASES[case]
    assert form_of(SmallFormRequest, content_type, body, length) == form_of(
        Request, content_type, body, length
    )


@pytest.mark.parametrize(
    "case", ["httpx one file", "httpx files and a field", "curl-like", "browser boundary",
             "utf-8 filename", "latin-1 filename", "windows path filename", "fields only"],
)  # fmt: skip
def test_plain_forms_take_the_small_path(case):
    content_type, body = CASES[case]
    assert small_form(body, content_type, **LIMITS) is not None


@pytest.mark.parametrize(
    "case", ["preamble", "epilogue", "extra part header", "tab in a header", "no headers",
             "LF line endings", "truncated", "charset", "too many files", "field too large",
             "large", "not multipart", "no name", "a CR in a header", "a CR in a name",
             "9 headers", "a header line over the size limit"],
)  # fmt: skip
def test_anything_else_is_left_to_starlette(case):
    content_type, body = CASES[case]
    assert small_form(body, content_type, **LIMITS) is None
