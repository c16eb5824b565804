"""Domain errors. Service code raises these; `service.api.errors` turns them into HTTP responses."""

from typing import ClassVar


class ServiceError(Exception):
    """An error a client can act on: `detail` says what happened and how to fix it."""

    status_code = 500
    code = "internal_error"
    headers: ClassVar[dict[str, str] | None] = None  # sent with the error response

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    status_code = 404
    code = "not_found"


class ConflictError(ServiceError):
    status_code = 409
    code = "conflict"


class UnavailableError(ServiceError):
    status_code = 503
    code = "unavailable"


class UnauthorizedError(ServiceError):
    status_code = 401
    code = "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ServiceError):
    status_code = 403
    code = "forbidden"
