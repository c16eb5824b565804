"""Who may send a request, decided from its headers before any body is read: the Host it names,
where a browser sent it from, and the bearer token its path needs (API_TOKEN, PROTECT_READS).

FastAPI reads a body before it runs a route's dependencies, so a client without a token could
otherwise make the API parse up to MAX_REQUEST_BYTES first. The routes still declare their
access (`WriteAccess`, `ReadAccess`); the rule here is stricter by default: any change not
listed as a read is a write (tests/test_auth.py holds the two together).
"""

from __future__ import annotations

import re
from enum import IntEnum
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import check_token
from service.api.errors import error_response
from service.api.exposure import trusted_hosts
from service.errors import ForbiddenError, ServiceError
from service.settings import Settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
OPEN_PATHS = {
    *("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"),
    *("/v2/health/live", "/v2/health/ready"),
}
OPEN_PREFIXES = ("/static/",)
# Requests that send data but change nothing: predictions and plots of an uploaded image.
READING_POSTS = [
    re.compile(r"/predict/[^/]+"),
    re.compile(r"/v1/models/[^/]+:predict"),
    re.compile(r"/v2/models/[^/]+(?:/versions/[^/]+)?/infer"),
    re.compile(r"/models/[^/]+/plots/[^/]+\.png"),
]


class Access(IntEnum):
    OPEN = 0
    READ = 1
    WRITE = 2


def required_access(method: str, path: str) -> Access:
    """What a request needs: nothing, the token with PROTECT_READS, or the token."""
    if method in SAFE_METHODS:
        return Access.OPEN if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) else Access.READ
    if method == "POST" and any(pattern.fullmatch(path) for pattern in READING_POSTS):
        return Access.READ
    return Access.WRITE


def _own_origin(request: Request, netloc: str, allowed_hosts: list[str]) -> bool:
    """Whether a browser's Origin is this service's: the Host it asked, the host a proxy
    forwarded (X-Forwarded-Host, its first), or one of ALLOWED_HOSTS (a proxy may rewrite
    Host and send no X-Forwarded-Host)."""
    forwarded = request.headers.get("x-forwarded-host", "").split(",")[0]
    if netloc.lower() in {request.headers.get("host", "").lower(), forwarded.strip().lower()}:
        return True
    return any(_host_matches(_host_name(netloc), host.lower()) for host in allowed_hosts)


class BadHost(ServiceError):
    status_code = 400
    code = "bad_host"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = trusted_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check(Request(scope))
        except ServiceError as error:
            response = error_response(error.status_code, error.code, error.detail,
                                      headers=error.headers, path=scope["path"])  # fmt: skip
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, request: Request) -> None:
        if self.hosts is not None:
            _check_host(request, self.hosts)
        if request.method not in SAFE_METHODS:
            _check_same_site(request, self.settings.allowed_hosts)
        if self.settings.api_token is None:
            return
        level = required_access(request.method, request.url.path)
        if level is Access.WRITE:
            check_token(request, "Changing jobs, sweeps, models or aliases")
        elif level is Access.READ and self.settings.protect_reads:
            check_token(request, "Reading from this service")


def _check_host(request: Request, hosts: list[str]) -> None:
    given = request.headers.get("host", "")
    if not any(_host_matches(_host_name(given), pattern) for pattern in hosts):
        raise BadHost(
            f"This API does not answer for host {given!r}; it answers {', '.join(hosts)}. "
            "Reach it by one of those names, or add yours to ALLOWED_HOSTS."
        )


def _host_name(host: str) -> str:
    """`host` (a Host header or an origin's netloc) without its port, lowercase."""
    host = host.strip().lower()
    return host if host.endswith("]") else host.rsplit(":", 1)[0]


def _host_matches(name: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def _check_same_site(request: Request, allowed_hosts: list[str]) -> None:
    """Refuse a change that a browser sent from another site (cross-site request forgery): the
    API's own page sends requests from its own origin."""
    origin = request.headers.get("origin")
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    if origin is not None:
        cross_site = cross_site or not _own_origin(request, urlsplit(origin).netloc, allowed_hosts)
    if cross_site:
        raise ForbiddenError(
            f"A browser sent this {request.method} from another site ({origin or 'unknown'}); "
            "the API accepts changes and uploads only from its own page or from clients that "
            "are not browsers."
        )
