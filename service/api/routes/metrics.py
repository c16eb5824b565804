"""GET /metrics: the API process's metrics in Prometheus' text format."""

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def get_metrics(request: Request) -> Response:
    """Requests and latency per endpoint and model, micro-batch sizes, models loaded, jobs by
    status and the training queue's length."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
