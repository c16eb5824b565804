"""`python -m service.healthcheck [api|worker]`: exit 0 when this container's process is alive.

- api (default): GET /health on this host's PORT answers 200.
- worker: a Celery worker on this host keeps its liveness record in Redis fresh.
Used by the Dockerfile's HEALTHCHECK and docker-compose.yml.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

from redis import Redis
from redis.exceptions import RedisError

from service.settings import get_settings
from service.worker.registry import live_workers

TIMEOUT_SECONDS = 4


def api_is_healthy() -> bool:
    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    try:
        url = f"http://{host}:{settings.port}/health"
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return response.status == 200
    except OSError:
        return False


def worker_is_healthy() -> bool:
    settings = get_settings()
    host = socket.gethostname()
    try:
        redis = Redis.from_url(
            settings.redis_url, socket_timeout=TIMEOUT_SECONDS, decode_responses=True
        )
        return any(record["hostname"].endswith("@" + host) for record in live_workers(redis))
    except RedisError:
        return False


def main(argv: list[str]) -> int:
    role = argv[0] if argv else "api"
    checks = {"api": api_is_healthy, "worker": worker_is_healthy}
    if role not in checks:
        print(f"usage: python -m service.healthcheck [{'|'.join(checks)}]", file=sys.stderr)
        return 2
    healthy = checks[role]()
    print(f"{role}: {'healthy' if healthy else 'unhealthy'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
