"""The configured answers authshim gives itself: redirects (with a safe ``next``) and JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from proxy.config import Answer

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def safe_next(value: str | None) -> str | None:
    """Return ``value`` if it is a same-site relative path, else None (no open redirect)."""
    # SECURITY: '//evil.example' and '/\evil.example' are protocol-relative in browsers.
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if _CONTROL.search(value):
        return None
    return value


def fill_template(template: Any, profile: Mapping[str, Any]) -> Any:
    """Replace every ``"{profile}"`` string in a JSON template with the stored profile."""
    if template == "{profile}":
        return dict(profile)
    if isinstance(template, dict):
        return {k: fill_template(v, profile) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_template(v, profile) for v in template]
    return template


def render(
    answer: Answer,
    *,
    next_value: str | None = None,
    profile: Mapping[str, Any] | None = None,
    cookies: Sequence[str] = (),
) -> web.Response:
    """Build the configured answer, with extra ``Set-Cookie`` header values."""
    if answer.redirect is not None:
        target = (safe_next(next_value) if answer.next_param else None) or answer.redirect
        response = web.Response(status=answer.status, headers={"Location": target})
    elif answer.json is not None:
        body = orjson.dumps(fill_template(answer.json, profile or {}))
        response = web.Response(status=answer.status, body=body, content_type="application/json")
    else:
        response = web.Response(status=answer.status)
    response.headers["Cache-Control"] = "no-store"
    for cookie in cookies:
        response.headers.add("Set-Cookie", cookie)
    return response


def problem(status: int, message: str, *, headers: Mapping[str, str] | None = None) -> web.Response:
    """A small JSON error authshim gives for a request it refuses itself."""
    body = orjson.dumps({"error": message})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)
