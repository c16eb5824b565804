"""Count and time every HTTP request, labelled by route template and the model that answered."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics


class RequestMetricsMiddleware:
    """Pure ASGI (no per-request task or body copy, unlike BaseHTTPMiddleware). Endpoints that
    use a model name it in `request.state.model_id`; the label is "" for the others."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label, so scanning for URLs cannot grow the series.
            endpoint = getattr(route, "path", None) or "unmatched"
            model = str(scope.get("state", {}).get("model_id", ""))
            method = scope["method"]
            self.metrics.requests.labels(method, endpoint, model, str(status)).inc()
            self.metrics.latency.labels(method, endpoint, model).observe(
                time.perf_counter() - started
            )
