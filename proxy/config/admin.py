"""The ``[admin]`` section: the second listener (API, dashboard, metrics) and its token."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.reader import Reader, Secret

ADMIN_KEYS = ("listen", "token", "readiness_days")
MIN_ADMIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener (API, dashboard, metrics); see docs/configuration.md."""

    host: str = "127.0.0.1"
    port: int = 8081
    token: Secret | None = None
    readiness_days: int = 30
    enabled: bool = False  # the listener starts only when the config has an [admin] section


def read_admin(r: Reader, doc: Mapping[str, Any]) -> AdminConfig:
    with r.table(doc, "admin", ADMIN_KEYS) as t:
        host, port = r.listen(t, "127.0.0.1:8081", override="AUTHSHIM_ADMIN_LISTEN")
        token = r.secret(t, "token", min_length=MIN_ADMIN_TOKEN_LENGTH) if "token" in t else None
        # SECURITY: an admin API reachable from other hosts must never be open.
        if token is None and not is_loopback(host):
            r.error("token", f"is required when admin.listen is not a loopback address ({host})")
        return AdminConfig(host, port, token, read_readiness_days(r, t), enabled="admin" in doc)


def read_readiness_days(r: Reader, t: Mapping[str, Any]) -> int:
    """``admin.readiness_days``, read from the open ``[admin]`` table ``t``."""
    return r.positive(t, "readiness_days", 30)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
