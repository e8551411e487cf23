"""One reading: parse an intercepted request so that authshim and the legacy app agree on it.

``read_request`` returns what authshim read and the bytes to forward (re-encoded from that
parse), or raises ``AmbiguousBody`` when some mainstream framework (``names.FRAMEWORKS``)
could read a credential or routing field differently, or ``UnreadableBody`` when the body is
not in the route's format and no framework could find such a field in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from proxy.bodies import MISSING, field_optional, field_text, resolve_pointer
from proxy.errors import AmbiguousBody, BadRequestBody, UnreadableBody
from proxy.reading import forms, jsonbody
from proxy.reading.names import FRAMEWORKS, Touch, form_name

__all__ = ["FRAMEWORKS", "Reading", "read_request"]

_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Reading:
    """What authshim read from an intercepted request, and what it forwards of it."""

    fields: dict[str, Any] = field(repr=False)
    body: bytes = field(repr=False)
    query: str
    routing: dict[str, str]

    def text(self, name: str) -> str:
        """Return the string field ``name`` (a key, or a JSON pointer); raise if absent."""
        return field_text(self.fields, name)

    def optional(self, name: str) -> str | None:
        """Return the string field ``name`` or None when it is absent or not a string."""
        return field_optional(self.fields, name)


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """``(type/subtype, params)``, lower-case; a repeated or odd parameter is refused."""
    media, *rest = content_type.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not key and not value.strip():
            continue
        if not eq or key in params:
            raise AmbiguousBody("the Content-Type has a repeated or malformed parameter")
        params[key] = value.strip().strip('"').strip().lower()
    return media.strip().lower(), params


def _refuse(raw: bytes, touch: Touch, reason: str) -> BadRequestBody:
    """A body authshim cannot read: ambiguous if any parser may find a field in it."""
    if touch.may_name(raw):
        return AmbiguousBody(f"{reason}, and it may name a credential or routing field")
    return UnreadableBody(reason)


def read_request(
    raw: bytes,
    *,
    content_type: str,
    query: str,
    fmt: str,
    credentials: Iterable[str],
    routing: Iterable[str] = (),
) -> Reading:
    """Read an intercepted request's body and query one way, or refuse it.

    Raises:
        AmbiguousBody: some mainstream framework could read a credential or routing field
            differently from authshim.
        UnreadableBody: the body is not in the route's format and names no such field.
    """
    creds, routes = tuple(credentials), tuple(routing)
    cred_touch, route_touch = Touch(creds), Touch(routes)
    any_touch = Touch(creds + routes)
    media, params = _media_type(content_type)
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        # SECURITY: Servlet containers and ASP.NET decode the body in the declared charset.
        raise AmbiguousBody("the Content-Type names a charset other than UTF-8")

    raw_query = query.encode("utf-8", "surrogateescape")
    try:
        query_pairs = forms.split_pairs(raw_query)
    except forms.Malformed:
        raise _refuse(raw_query, any_touch, "the query string is not UTF-8") from None
    in_query = forms.check_pairs(
        query_pairs,
        where="query",
        credentials={form_name(c): c for c in creds},
        routing={form_name(r): r for r in routes},
        cred_touch=cred_touch,
        route_touch=route_touch,
    )

    if fmt == "json":
        if not (media == "application/json" or media.endswith("+json")):
            raise _refuse(raw, any_touch, "expected a JSON body (Content-Type: application/json)")
        try:
            doc = jsonbody.parse(raw)
        except jsonbody.Malformed:
            raise _refuse(raw, any_touch, "the body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise _refuse(raw, any_touch, "the JSON body must be an object")
        jsonbody.check(
            doc,
            credentials={jsonbody.pointer_tokens(c): c for c in creds},
            routing={jsonbody.pointer_tokens(r): r for r in routes},
            cred_touch=cred_touch,
            route_touch=route_touch,
        )
        body_routing = {}
        for route in routes:
            value = resolve_pointer(doc, route if route.startswith("/") else "/" + route)
            if value is not MISSING:
                body_routing[form_name(route)] = value
        fields: dict[str, Any] = doc
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    else:
        if media not in ("", _FORM):
            # multipart/form-data, JSON or text sent to a form route
            raise _refuse(raw, any_touch, f"expected a form body ({_FORM})")
        try:
            pairs = forms.split_pairs(raw)
        except forms.Malformed:
            raise _refuse(raw, any_touch, "the form body is not UTF-8") from None
        in_body = forms.check_pairs(
            pairs,
            where="body",
            credentials={c: c for c in creds},
            routing={r: r for r in routes},
            cred_touch=cred_touch,
            route_touch=route_touch,
        )
        body_routing = in_body.routing
        fields = {}
        for pair in pairs:
            fields.setdefault(pair.name, pair.value)
        body = forms.encode(pairs).encode("ascii")

    effective: dict[str, str] = {}
    for route in routes:
        name = form_name(route) if fmt == "json" else route
        values = {v[name] for v in (in_query.routing, body_routing) if name in v}
        if len(values) > 1:
            # SECURITY: PHP $_REQUEST and Rack read the body, Servlet and Flask the query.
            raise AmbiguousBody("a routing field has different values in the query and body")
        if values:
            effective[route] = values.pop()
    return Reading(fields, body, forms.encode(query_pairs), effective)
