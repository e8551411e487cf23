"""Which requests on an intercepted route's path are the route's: ``methods`` and ``when``.

A front controller (``/index.php?title=Special:UserLogin``, ``/api.php`` with
``action=clientlogin``) serves logins, logouts and everything else on one path; a route there
takes the requests whose fields hold the configured values, read in the query or the body as the
legacy framework would (proxy/reading: body and query must agree), and the rest pass through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.reader import Reader

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True, slots=True)
class Match:
    """A route's methods, and the values each ``when`` field must have (``""``: absent or
    empty, as PHP's ``$action = $_REQUEST['action'] ?? 'login'`` reads it)."""

    methods: tuple[str, ...] = ("POST",)
    when: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.when)

    def holds(self, values: Mapping[str, str]) -> bool:
        """Whether the routing fields as read (query and body agreeing) name this route."""
        return all(values.get(name, "") in allowed for name, allowed in self.when)


POST = Match()
GET_OR_POST = Match(methods=("GET", "POST"))


def read_match(r: Reader, t: Mapping[str, Any], methods: tuple[str, ...]) -> Match:
    """``methods`` (default ``methods``) and ``when`` of a route's table."""
    raw_methods = t.get("methods", list(methods))
    if not isinstance(raw_methods, list) or not raw_methods or not all(
        isinstance(m, str) and m.upper() in METHODS for m in raw_methods
    ):
        r.error("methods", f"must be a list of HTTP methods from {', '.join(METHODS)}")
        raw_methods = list(methods)
    when: list[tuple[str, tuple[str, ...]]] = []
    raw_when = t.get("when", {})
    if not isinstance(raw_when, dict):
        r.error("when", 'must be a table of field = value, such as { action = "clientlogin" }')
        raw_when = {}
    for name, value in raw_when.items():
        values = value if isinstance(value, list) else [value]
        if not name or not all(isinstance(v, str) for v in values) or not values:
            r.error(f"when.{name}", "must be a string or a list of strings")
            continue
        when.append((name, tuple(values)))
    return Match(tuple(m.upper() for m in raw_methods), tuple(when))


def query_pairs(query: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``reset.request_query`` (``action=lostpassword``) as ``when`` pairs."""
    from urllib.parse import parse_qsl

    return tuple((k, (v,)) for k, v in parse_qsl(query, keep_blank_values=True))
