"""Reading JSON bodies one way only: no key that some parser could read as another."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

from proxy.errors import AmbiguousBody
from proxy.reading.names import Touch

_SURROGATE = re.compile("[\ud800-\udfff]")


class Malformed(ValueError):
    """The bytes are not one strict UTF-8 JSON document (Ambiguous or Unreadable: the caller)."""


def pointer_tokens(field: str) -> tuple[str, ...]:
    """``/user/email`` -> ('user', 'email'); a plain key is a pointer of one token."""
    if not field.startswith("/"):
        return (field,)
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in field[1:].split("/"))


def fold(key: str) -> str:
    """A key as Go's encoding/json and ASP.NET compare it (broadened: NFKC, full casefold)."""
    key = _SURROGATE.sub("\ufffd", key)  # Go reads a lone surrogate as U+FFFD
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", key).casefold())


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    folded: set[str] = set()
    for key, value in pairs:
        if key in result:
            # SECURITY: PHP, Rails, Node, Go and Python read the last copy; others the first.
            raise AmbiguousBody("the JSON body repeats a key")
        if fold(key) in folded:
            # SECURITY: Go's encoding/json and ASP.NET match keys ignoring case, last wins.
            raise AmbiguousBody("the JSON body has keys that differ only in case")
        folded.add(fold(key))
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Malformed("a number is out of range")  # Go refuses it; Python reads inf
    return value


def parse(raw: bytes) -> Any:
    """Decode strict UTF-8 JSON, refusing repeated keys (exact or folded) at any depth."""
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
        )
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, AmbiguousBody):
            raise
        raise Malformed("the body is not JSON") from None


def check(
    doc: dict[str, Any],
    *,
    credentials: dict[tuple[str, ...], str],
    routing: dict[tuple[str, ...], str],
    cred_touch: Touch,
    route_touch: Touch,
) -> None:
    """Refuse a key touching a credential or routing field anywhere but at its own place, a
    credential or routing value that is not a plain string, and lone surrogates anywhere."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                _check_key((*path, key), key, value, credentials, routing, cred_touch, route_touch)
                stack.append(((*path, key), value))
        elif isinstance(node, list):
            stack.extend(((*path, str(i)), item) for i, item in enumerate(node))
        elif isinstance(node, str) and _SURROGATE.search(node):
            # SECURITY: Go reads a lone surrogate as U+FFFD, Python and Node keep it.
            raise AmbiguousBody("the JSON body holds a lone surrogate")


def _check_key(
    path: tuple[str, ...],
    key: str,
    value: Any,
    credentials: dict[tuple[str, ...], str],
    routing: dict[tuple[str, ...], str],
    cred_touch: Touch,
    route_touch: Touch,
) -> None:
    if _SURROGATE.search(key):
        raise AmbiguousBody("the JSON body holds a lone surrogate")
    touched_cred = cred_touch.fields(key)
    touched_route = route_touch.fields(key)
    if not touched_cred and not touched_route:
        return
    own = credentials.get(path) or routing.get(path)
    # SECURITY: Rails wrap_parameters and Devise read user.email as email; Go and ASP.NET
    # ignore case; a touching key anywhere else may be what the legacy app reads.
    if own is None or not (touched_cred | touched_route) <= {own}:
        raise AmbiguousBody("a JSON key folds into a credential or routing field elsewhere")
    if not isinstance(value, str):
        raise AmbiguousBody("a credential or routing value in the JSON body is not a string")
