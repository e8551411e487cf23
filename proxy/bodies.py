"""Reading credentials out of intercepted request bodies, within limits; JSON pointers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from proxy.errors import BadRequestBody

MISSING: Any = object()


class BodyTooLarge(BadRequestBody):
    """The body is larger than ``server.max_body``."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a client submitted to an intercepted route: the raw body and its fields."""

    raw: bytes
    fields: dict[str, Any] = field(repr=False)

    def text(self, name: str) -> str:
        """Return the string field ``name`` (a key, or a JSON pointer); raise if absent."""
        return field_text(self.fields, name)

    def optional(self, name: str) -> str | None:
        """Return the string field ``name`` or None when it is absent or not a string."""
        return field_optional(self.fields, name)


def field_text(fields: dict[str, Any], name: str) -> str:
    """The string field ``name`` of parsed ``fields`` (a key, or a JSON pointer).

    Raises:
        BadRequestBody: it is absent or not a string.
    """
    value = resolve_pointer(fields, name) if name.startswith("/") else fields.get(name, MISSING)
    if value is MISSING:
        raise BadRequestBody(f"the field {name!r} is missing")
    if not isinstance(value, str):
        raise BadRequestBody(f"the field {name!r} must be a string")
    return value


def field_optional(fields: dict[str, Any], name: str) -> str | None:
    """The string field ``name`` of ``fields``, or None when it is absent or not a string."""
    try:
        return field_text(fields, name)
    except BadRequestBody:
        return None


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """Read the whole request body, refusing one longer than ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"the body is larger than {limit} bytes")
    # read(n) returns what has arrived, up to n bytes: a body split over several TCP segments
    # takes several reads, and only an empty read means the body has ended.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body is larger than {limit} bytes")
    return b"".join(chunks)


def parse_fields(raw: bytes, fmt: str, content_type: str) -> dict[str, Any]:
    """Parse a form-urlencoded or JSON body into a dict; raise BadRequestBody if malformed."""
    if fmt == "json":
        if "json" not in content_type:
            raise BadRequestBody("expected a JSON body (Content-Type: application/json)")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadRequestBody("the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise BadRequestBody("the JSON body must be an object")
        return doc
    if content_type not in ("", "application/x-www-form-urlencoded"):
        raise BadRequestBody("expected a form body (application/x-www-form-urlencoded)")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequestBody("the form body is not valid UTF-8 form data") from None
    # The first value wins, as Django's QueryDict.get and PHP's $_POST do not agree on the rest.
    fields: dict[str, Any] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


async def read_submitted(request: web.BaseRequest, fmt: str, limit: int) -> Submitted:
    """Read and parse an intercepted request; the raw bytes are kept to forward unchanged."""
    raw = await read_body(request, limit)
    return Submitted(raw, parse_fields(raw, fmt, request.content_type if raw else ""))


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """Return the value at an RFC 6901 JSON pointer, or ``MISSING``."""
    if pointer == "":
        return doc
    if not pointer.startswith("/"):
        return MISSING
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(doc, dict):
            if token not in doc:
                return MISSING
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return MISSING
    return doc
