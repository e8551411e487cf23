"""Python rules the rules tests configure (``call = "tests.rule_examples:..."``); each records
the context it got in ``SEEN`` so that a test can read it."""

from __future__ import annotations

import asyncio
from typing import Any

SEEN: list[dict[str, Any]] = []


def record(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """Sync: record the context, answer ``options["answer"]`` (allow when absent)."""
    SEEN.append(context)
    answer: dict[str, Any] | None = options.get("answer")
    return answer


async def record_async(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """Async: wait ``options["sleep"]`` seconds, record, answer ``options["answer"]``."""
    await asyncio.sleep(float(options.get("sleep", 0)))
    SEEN.append(context)
    answer: dict[str, Any] | None = options.get("answer")
    return answer


def boom(context: dict[str, Any], options: dict[str, Any]) -> None:
    """Raise, as a buggy rule does."""
    raise RuntimeError("the rule's own bug")
