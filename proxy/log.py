"""One structured (JSON) log line per event; never a password, a body or a cookie."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

logger = logging.getLogger("authshim")


def event(name: str, **fields: Any) -> None:
    """Log one event as a single JSON line."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(orjson.dumps({"event": name, **fields}, default=str).decode())


def warning(name: str, **fields: Any) -> None:
    """Log one event that needs an operator's eye (a WARNING) as a single JSON line."""
    if logger.isEnabledFor(logging.WARNING):
        logger.warning(orjson.dumps({"event": name, **fields}, default=str).decode())


def setup(level: str = "info") -> None:
    """Send authshim's log lines to stderr at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("authshim")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
