"""Routes whose requests are of a class of our own: FastAPI's documented way to change how a
route reads its body (`service/api/forms.py`, `service/api/json_body.py`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def route_with_request(request_class: type[Request]) -> type[APIRoute]:
    """An `APIRoute` class whose handlers receive a `request_class` built from the request."""

    class RouteWithRequest(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                return await handler(request_class(request.scope, request.receive))

            return handle

    RouteWithRequest.__name__ = RouteWithRequest.__qualname__ = f"{request_class.__name__}Route"
    return RouteWithRequest
