"""The configured answers authshim gives itself: redirects (with a safe ``next``) and JSON."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from proxy.config import Answer

_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
NEXT = "{next}"  # where a redirect template puts the value of ``next_param`` (issue 15)
# A URL scheme that runs or embeds content where it lands, whatever follows it.
_SCRIPT_SCHEME = re.compile(r"^\s*(javascript|vbscript|data|file|blob)\s*:", re.IGNORECASE)
_ANY_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, bidi overrides, line separators


def safe_next(value: str | None) -> str | None:
    """Return ``value`` if it is a same-site relative path, else None (no open redirect)."""
    # SECURITY: '//evil.example' and '/\evil.example' are protocol-relative in browsers.
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if _CONTROL.search(value):
        return None
    return value


def safe_next_value(value: str | None) -> str | None:
    """Return ``value`` if it may fill a ``{next}`` template (a page title or a path that
    stays on the site), else None."""
    # SECURITY: refused outright rather than cleaned: a URL with a scheme, a
    # protocol-relative "//", a backslash (browsers read a backslash as a slash), or an invisible
    # or control character that could split a header or hide what the link says.
    if not value or "//" in value or _CONTROL.search(value):
        return None
    if _ANY_SCHEME.match(value) or _SCRIPT_SCHEME.match(value):
        return None
    if any(unicodedata.category(ch) in _UNSEEN for ch in value):
        return None
    return value


def next_target(template: str, value: str | None) -> str:
    """``template`` with each ``{next}`` replaced by ``value`` percent-encoded (empty when it
    is missing or unsafe); the template alone when the result would leave the site."""
    safe = safe_next_value(value) or ""
    # SECURITY: percent-encoded, "/" aside: a value cannot end the query, add a parameter
    # or a fragment, or start a scheme (":" is encoded) inside the operator's template.
    filled = template.replace(NEXT, quote(safe, safe="/"))
    if filled.startswith("//"):  # "/{next}" with "/evil.example": protocol-relative
        return template.replace(NEXT, "")
    return filled


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
        if NEXT in answer.redirect:
            target = next_target(answer.redirect, next_value if answer.next_param else None)
        else:
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
