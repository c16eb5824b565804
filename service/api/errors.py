"""One error shape for the whole API, and the one place where exceptions become responses.

Every error body is `{"code": ..., "detail": ...}`; validation errors add `errors`, one entry per
bad field with its location (`loc`), message (`msg`) and `type`.
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

from service.errors import ServiceError
from service.jobs.kinds import InvalidJobError

logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. ['body', 'params', 'x'].")
    msg: str
    type: str


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
) -> JSONResponse:
    body = ErrorResponse(code=code, detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "The body could not be parsed (not JSON, or a broken multipart form)"),
        (401, "No bearer token, and this endpoint needs one (API_TOKEN is set)"),
        (403, "Wrong bearer token"),
        (404, "Not found"),
        (413, "Request body too large"),
        (409, "Conflict with the resource's current state"),
        (422, "Invalid request"),
        (500, "An unexpected error; the detail names the request id (X-Request-ID)"),
        (503, "Redis (job store and queue) unreachable, or the service busy (Retry-After)"),
    ]
}


async def _service_error(request: Request, error: ServiceError) -> JSONResponse:
    errors = error.errors if isinstance(error, InvalidJobError) else None
    return error_response(error.status_code, error.code, error.detail, errors, error.headers)


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    summary = "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in errors
    )
    return error_response(422, "validation_error", f"Invalid request: {summary}.", errors)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    detail = str(error.detail)
    if error.status_code == 404 and detail == "Not Found":
        detail = f"No endpoint at {request.url.path}. See /docs for the API's endpoints."
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}."
    elif error.status_code == 400 and "parsing the body" in detail:
        detail = (
            "The request body could not be parsed: send JSON with `Content-Type: "
            "application/json`, or a well-formed multipart form for uploads."
        )
    code = codes.get(error.status_code, "http_error")
    # Keeps headers such as a 405's `Allow` (RFC 9110 requires it).
    return error_response(error.status_code, code, detail, headers=error.headers)


async def _redis_unreachable(request: Request, error: Exception) -> JSONResponse:
    logger.warning("Redis unreachable while serving %s: %s", request.url.path, error)
    return error_response(
        503,
        "unavailable",
        f"Redis, which holds jobs and their queue, is unreachable ({error}). Nothing was "
        "changed. Check that Redis is running at the configured REDIS_URL, then retry.",
    )


def unexpected_error_response(request_id: str) -> JSONResponse:
    """The answer to an error no handler expected: the API's shape, naming the request id."""
    return error_response(
        500,
        "internal_error",
        f"Something went wrong on the server's side while answering this request (request id "
        f"{request_id}); nothing you sent was at fault. Retry; if it happens again, report the "
        "request id to the service's operator.",
    )


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error_type in (RedisConnectionError, RedisTimeoutError, OperationalError):
        app.add_exception_handler(error_type, _redis_unreachable)
