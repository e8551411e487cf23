"""The ``[admin]`` section: the second listener (API, dashboard, metrics) and its token."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.reader import Reader, Secret

ADMIN_KEYS = ("listen", "token", "readiness_days", "allowed_hosts")
MIN_ADMIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin listener (API, dashboard, metrics); see docs/configuration.md."""

    host: str = "127.0.0.1"
    port: int = 8081
    token: Secret | None = None
    readiness_days: int = 30
    enabled: bool = False  # the listener starts only when the config has an [admin] section
    # Host names (lower case, no port) a request may name besides the loopback ones.
    allowed_hosts: tuple[str, ...] = ()


def read_admin(r: Reader, doc: Mapping[str, Any]) -> AdminConfig:
    with r.table(doc, "admin", ADMIN_KEYS) as t:
        host, port = r.listen(t, "127.0.0.1:8081", override="AUTHSHIM_ADMIN_LISTEN")
        token = r.secret(t, "token", min_length=MIN_ADMIN_TOKEN_LENGTH) if "token" in t else None
        # SECURITY: an admin API reachable from other hosts must never be open.
        if token is None and not is_loopback(host):
            r.error("token", f"is required when admin.listen is not a loopback address ({host})")
        return AdminConfig(
            host, port, token, read_readiness_days(r, t), enabled="admin" in doc,
            allowed_hosts=_read_allowed_hosts(r, t),
        )  # fmt: skip


def _read_allowed_hosts(r: Reader, t: Mapping[str, Any]) -> tuple[str, ...]:
    """``admin.allowed_hosts``: host names or IP addresses, without a port."""
    raw = r.get(t, "allowed_hosts", list, [])
    hosts: list[str] = []
    for entry in raw:
        name = entry.strip().lower().rstrip(".") if isinstance(entry, str) else ""
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        if not (_HOST_NAME.fullmatch(name) or _is_ip(name)):
            r.error("allowed_hosts", f"must be a list of host names without a port, got {entry!r}")
            return ()
        hosts.append(name)
    return tuple(hosts)


_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
