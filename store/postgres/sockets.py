"""TCP keepalives on each PostgreSQL connection, so that a silent peer is noticed.

A partition or a frozen server sends nothing back, not even a reset: without keepalives an
idle connection (the LISTEN one above all) would wait on it for the kernel's two hours. With
these, an idle connection to a silent peer fails within ``KEEPALIVE_IDLE + KEEPALIVE_INTERVAL
* KEEPALIVE_COUNT`` seconds (25 s), and one whose sent bytes go unacknowledged within
``USER_TIMEOUT``. Each query has a deadline of its own besides (``connection.CALL_TIMEOUT``).
"""

from __future__ import annotations

import socket
from typing import Any

KEEPALIVE_IDLE = 10  # seconds idle before the first probe
KEEPALIVE_INTERVAL = 5  # seconds between probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is dropped
USER_TIMEOUT = 20  # seconds sent data may stay unacknowledged (Linux TCP_USER_TIMEOUT)


def keep_alive(conn: Any) -> None:
    """Turn keepalives on for an asyncpg connection's socket (TCP only, not a Unix socket)."""
    sock = conn._transport.get_extra_info("socket")  # asyncpg has no option for them
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT * 1000),
    ):
        option = getattr(socket, name, None)  # Linux has them all; others have some
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
