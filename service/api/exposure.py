"""Who can reach the API: refuse to start it open to a network, and which Host headers it answers.

An API on a non-loopback address without API_TOKEN lets anyone who reaches it train models that
then answer every default prediction; it starts only when the operator says so (ALLOW_OPEN_API).
Without a token the API answers only loopback Host names, so a web page on another site cannot
reach it through DNS rebinding.
"""

from __future__ import annotations

import ipaddress

from service.settings import Settings

MIN_TOKEN_LENGTH = 16
LOOPBACK_HOST_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


class UnsafeExposure(ValueError):
    """The settings would open the API to anyone; the message says how to fix them."""


def check_exposure(settings: Settings) -> None:
    """Raise `UnsafeExposure` when the API would listen beyond this machine without a token,
    when PROTECT_READS has no token to protect with, or when the token is easy to guess."""
    token = settings.api_token.get_secret_value() if settings.api_token else ""
    if settings.api_token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise UnsafeExposure(
            f"API_TOKEN has {len(token)} characters; use at least {MIN_TOKEN_LENGTH}, e.g. the "
            "output of `openssl rand -hex 32`."
        )
    if settings.protect_reads and settings.api_token is None:
        raise UnsafeExposure(
            "PROTECT_READS=true needs API_TOKEN: without a token nothing is protected. Set "
            "API_TOKEN (e.g. `openssl rand -hex 32`) or drop PROTECT_READS."
        )
    if (
        settings.api_token is None
        and not is_loopback(settings.host)
        and not (settings.allow_open_api)
    ):
        raise UnsafeExposure(
            f"The API would listen on {settings.host}, beyond this machine, with no API_TOKEN: "
            "anyone who reaches it could train models that answer every prediction. Set "
            "API_TOKEN (e.g. `openssl rand -hex 32`), or HOST=127.0.0.1, or ALLOW_OPEN_API=true "
            "if it is meant to be open."
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_hosts(settings: Settings) -> list[str] | None:
    """Host names to answer, lowercase (None: any). ALLOWED_HOSTS, with loopback names (the
    container's healthcheck asks 127.0.0.1); else, without a token and not explicitly open,
    loopback names only."""
    if settings.allowed_hosts:
        return [host.lower() for host in settings.allowed_hosts] + LOOPBACK_HOST_NAMES
    if settings.api_token is None and not settings.allow_open_api:
        return LOOPBACK_HOST_NAMES
    return None
