"""One error shape for the whole API, and the one place where exceptions become responses.

Every error body is `{"code": ..., "detail": ...}`; validation errors add `errors`, one entry per
bad field with its location (`loc`), message (`msg`) and `type`. Under `/v2` (KServe v2, the
Open Inference Protocol) errors take that protocol's shape instead: `{"error": detail}`, with
the same status and text.
"""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from service.errors import ServiceError
from service.jobs.kinds import InvalidJobError

logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['body', 'params', 'x'].")
    msg: str
    type: str


PROTOCOL_PREFIX = "/v2"


def protocol_path(path: str) -> bool:
    """Whether `path` belongs to the Open Inference Protocol (KServe v2), whose errors are
    `{"error": ...}`."""
    return path == PROTOCOL_PREFIX or path.startswith(PROTOCOL_PREFIX + "/")


class ProtocolError(BaseModel):
    error: str = Field(description="What happened, what was expected, and how to fix it.")


class ErrorResponse(BaseModel):
    code: str = Field(description="Machine-readable error code, e.g. 'not_found'.")
    detail: str = Field(description="What happened, what was expected, and how to fix it.")
    errors: list[FieldError] | None = None


def error_response(
    status: int,
    code: str,
    detail: str,
    errors: Any = None,
    headers: dict[str, str] | None = None,
    path: str = "",
) -> JSONResponse:
    """The error's response, in the shape of the API that `path` (the request's) belongs to."""
    if protocol_path(path):
        body: dict[str, Any] = ProtocolError(error=detail).model_dump()
    else:
        body = ErrorResponse(code=code, detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


# Each status the API answers with, what it means, and an example body (as /docs shows it).
ERROR_EXAMPLES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body could not be parsed (not JSON, or a broken multipart form)",
        {"code": "bad_request", "detail": "The request body could not be parsed: send JSON with "
         "`Content-Type: application/json`, or a well-formed multipart form for uploads."},
    ),
    401: (
        "No bearer token, and this endpoint needs one (API_TOKEN is set)",
        {"code": "unauthorized", "detail": "Submitting jobs needs a token: send the header "
         "`Authorization: Bearer <token>` with the API_TOKEN the service was started with."},
    ),
    403: (
        "Wrong bearer token",
        {"code": "forbidden", "detail": "The bearer token is not the one this service was "
         "started with (API_TOKEN)."},
    ),
    404: (
        "Not found",
        {"code": "not_found", "detail": "No job with id '3f2a...'. List existing jobs with GET "
         "/jobs; ids are the 'id' field that POST /jobs returned (32 hexadecimal digits)."},
    ),
    409: (
        "Conflict with the resource's current state",
        {"code": "conflict", "detail": "No cnn model has been trained yet, so there is nothing to "
         "answer digit predictions. Train one with POST /presets/cnn/submit, wait for the job "
         "to succeed, and try again."},
    ),
    413: (
        "Request body too large",
        {"code": "too_many_images", "detail": "The request carries 65 images or inputs; at most "
         "64 are read per request (MAX_IMAGES_PER_REQUEST). Split it into several requests."},
    ),
    415: (
        "An upload (or base64 image) that is not an image this service can read",
        {"code": "unsupported_image", "detail": "'digit.txt' is not an image this service can "
         "read (cannot identify image file). Send one of: PNG, JPEG, BMP, TIFF, WEBP, GIF."},
    ),
    422: (
        "Invalid request",
        {"code": "validation_error", "detail": "Invalid parameters for job kind 'mlp': "
         "params.epochs: Input should be less than or equal to 200. See GET /jobs/kinds for "
         "every parameter, its type and its default.",
         "errors": [{"loc": ["body", "params", "epochs"], "type": "less_than_equal",
                     "msg": "Input should be less than or equal to 200"}]},
    ),
    500: (
        "An unexpected error; the detail names the request id (X-Request-ID)",
        {"code": "internal_error", "detail": "Something went wrong on the server's side while "
         "answering this request (request id 9c1e...); nothing you sent was at fault."},
    ),
    503: (
        "Redis (job store and queue) unreachable, or the service busy (Retry-After)",
        {"code": "unavailable", "detail": "Redis, which holds jobs and their queue, is "
         "unreachable (Connection refused). Nothing was changed. Check that Redis is running "
         "at the configured REDIS_URL, then retry."},
    ),
}  # fmt: skip
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ErrorResponse,
        "description": description,
        "content": {"application/json": {"example": example}},
    }
    for status, (description, example) in ERROR_EXAMPLES.items()
}

# The protocol's examples: the API's, but where a v2 request gets its own text.
PROTOCOL_ERROR_EXAMPLES = {
    status: example["detail"] for status, (_, example) in ERROR_EXAMPLES.items()
} | {
    404: "No model or alias named 'nothing'. A model is named by its 32-character id or by an "
    "alias; list both with GET /models.",
    415: "'image_bytes[0]' is not an image this service can read (cannot identify image file). "
    "Send one of: PNG, JPEG, BMP, TIFF, WEBP, GIF.",
    422: "Input 'image' has shape [1, 27, 28]; model 'cnn' takes [-1, 28, 28] (-1: any number "
    "of images, at least 1).",
    503: "Not ready: Redis is unreachable (Connection refused).",
}
# The statuses of ERROR_RESPONSES (and 415) in the protocol's shape, each with an example.
PROTOCOL_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": ProtocolError,
        "description": ERROR_EXAMPLES[status][0],
        "content": {"application/json": {"example": {"error": example}}},
    }
    for status, example in PROTOCOL_ERROR_EXAMPLES.items()
}


async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
    errors = error.errors if isinstance(error, InvalidJobError) else None
    return error_response(
        error.status_code, error.code, error.detail, errors, error.headers, request.url.path
    )


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in errors
    )
    detail = _binary_tensors(request) or f"Invalid request: {summary}."
    return error_response(422, "validation_error", detail, errors, path=request.url.path)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    detail, headers = str(error.detail), error.headers
    if error.status_code == 404 and detail == "Not Found":
        detail = f"No endpoint at {request.url.path}. See /docs for the API's endpoints."
    elif error.status_code == 405:
        allowed = _allowed_methods(request, (headers or {}).get("Allow", ""))
        headers = {**(headers or {}), "Allow": allowed}
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}."
    elif error.status_code == 400 and "parsing the body" in detail:
        detail = _binary_tensors(request) or (
            "The request body could not be parsed: send JSON with `Content-Type: "
            "application/json`, or a well-formed multipart form for uploads."
        )
    code = codes.get(error.status_code, "http_error")
    # Keeps headers such as a 405's `Allow` (RFC 9110 requires it).
    return error_response(error.status_code, code, detail, headers=headers, path=request.url.path)


def _allowed_methods(request: Request, fallback: str) -> str:
    """The methods the API document lists for the request's path (Starlette's `Allow` names
    only the first matching route's: POST alone for /jobs, which GET lists too). Where several
    paths match (/v1/models/{name} and /v1/models/{name}:predict), the most literal one's."""
    matching = [
        (len(template) - sum(len(name) + 2 for name in parameters), operations)
        for template, operations in request.app.openapi()["paths"].items()
        for pattern, _, parameters in [compile_path(template)]
        if pattern.match(request.url.path)
    ]
    if not matching:
        return fallback  # a path the document leaves out (the page, its static files)
    _, operations = max(matching, key=lambda item: item[0])
    return ", ".join(sorted(method.upper() for method in operations if method in HTTP_METHODS))


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _binary_tensors(request: Request) -> str | None:
    """Why a KServe v2 body with binary tensor data (tritonclient's default) did not parse."""
    if protocol_path(request.url.path) and "inference-header-content-length" in request.headers:
        return (
            "Binary tensor data (Inference-Header-Content-Length) is not supported: send every "
            "input's data as JSON (tritonclient: set_data_from_numpy(..., binary_data=False))."
        )
    return None


async def _redis_unreachable(request: Request, error: Exception) -> JSONResponse:
    logger.warning("Redis unreachable while serving %s: %s", request.url.path, error)
    return error_response(
        503,
        "unavailable",
        f"Redis, which holds jobs and their queue, is unreachable ({error}). Nothing was "
        "changed. Check that Redis is running at the configured REDIS_URL, then retry.",
        path=request.url.path,
    )


def unexpected_error_response(request_id: str, path: str = "") -> JSONResponse:
    """The answer to an error no handler expected: the API's shape (`path`'s), naming the
    request id."""
    return error_response(
        500,
        "internal_error",
        f"Something went wrong on the server's side while answering this request (request id "
        f"{request_id}); nothing you sent was at fault. Retry; if it happens again, report the "
        "request id to the service's operator.",
        path=path,
    )


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error_type, _redis_unreachable)
