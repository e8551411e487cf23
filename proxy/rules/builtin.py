"""Example rules shipped with authshim, each usable as is (``call = "proxy.rules.builtin:..."``)
and a model for the operator's own; their ``options`` are documented in docs/rules.md.

A fourth example, notifying another system when a user migrates, needs no code: a webhook rule
with ``events = ["migrated"]``.
"""

from __future__ import annotations

from typing import Any

from proxy.bodies import MISSING, resolve_pointer


def deny_email_domain(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """Deny a user whose email is at one of ``options["domains"]``."""
    email = str(context["user"].get("email") or "")
    domain = email.rpartition("@")[2].casefold()
    domains = {str(d).casefold() for d in options.get("domains", [])}
    if domain and domain in domains:
        return {"deny": options.get("message", "this account may not log in here")}
    return None


def deny_profile_field(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any] | None:
    """Deny a user whose profile has ``options["values"]`` at the pointer ``options["field"]``."""
    value = resolve_pointer(context["user"].get("profile") or {}, str(options.get("field", "")))
    if value is not MISSING and value in options.get("values", []):
        return {"deny": options.get("message", "this account may not log in here")}
    return None


async def groups_header(context: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Put the profile's groups (a list or a string at ``options["field"]``), mapped through
    ``options["map"]`` when given, into the header ``options["header"]``, comma-separated."""
    value = resolve_pointer(context["user"].get("profile") or {}, str(options.get("field", "")))
    groups = value if isinstance(value, list) else [] if value in (MISSING, None) else [value]
    mapping: dict[str, Any] = options.get("map", {})
    names = [str(mapping.get(str(g), g)) for g in groups] if mapping else [str(g) for g in groups]
    header = str(options.get("header", "X-Forwarded-Groups"))
    return {"identity": {header: ",".join(dict.fromkeys(n for n in names if n))}}
