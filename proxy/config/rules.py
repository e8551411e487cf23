"""``[[rules]]``: the operator's code run on authentication events, and the ``[policy]`` keys
judged at capture (a short or breached legacy password must be changed at the next login)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.config.reader import Reader, Secret

EVENTS = ("login", "capture", "signup", "password_changed", "migrated")
ON_ERROR = ("deny", "allow")
RULE_KEYS = (
    "name", "events", "call", "url", "secret", "timeout", "on_error", "ttl",
    "identity_headers", "options", "breaker_failures", "breaker_interval",
)  # fmt: skip
# Read by read_capture_policy; proxy/config/flows.py lets them through [policy].
CAPTURE_POLICY_KEYS = ("capture_min_length", "breached_list")
MIN_WEBHOOK_SECRET = 16
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """One ``[[rules]]`` entry: a Python callable (``call``) or a webhook (``url``)."""

    name: str
    events: tuple[str, ...]
    call: str | None = None
    url: str | None = None
    secret: Secret | None = field(default=None, repr=False)
    timeout: float = 2.0
    on_error: str = "deny"
    ttl: float = 300.0
    identity_headers: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    breaker_failures: int = 3
    breaker_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class CapturePolicy:
    """A captured password shorter than ``min_length`` (0: no check) or on the operator's
    ``breached_list`` file must be changed at the next login."""

    min_length: int = 0
    breached_list: str | None = None


def read_rules(r: Reader, doc: Mapping[str, Any]) -> tuple[RuleConfig, ...]:
    raw = doc.get("rules", [])
    if not isinstance(raw, list):
        r.error("rules", "must be an array of tables ([[rules]])")
        return ()
    rules: list[RuleConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        with r.section(f"rules[{i}]"):
            if not isinstance(item, dict):
                r.error("", "must be a table")
                continue
            r.unknown(item, RULE_KEYS)
            rule = _read_rule(r, item, f"rule{i}")
            if rule.name in seen:
                r.error("name", f"{rule.name!r} names two rules")
            seen.add(rule.name)
            rules.append(rule)
    return tuple(rules)


def _read_rule(r: Reader, item: Mapping[str, Any], default_name: str) -> RuleConfig:
    name = r.get(item, "name", str, default_name)
    if not _NAME.match(name):
        r.error("name", "must be lower-case letters, digits, '-' or '_' (it names counters)")
    call, url = r.optional(item, "call"), r.optional(item, "url")
    if (call is None) == (url is None):
        r.error("call", "give exactly one of call (module:function) or url (a webhook)")
    if call is not None and not _CALL.match(call):
        r.error("call", f"must be module:function, got {call!r}")
    secret = None
    if url is not None:
        if not url.startswith(("http://", "https://")):
            r.error("url", f"must be an http:// or https:// URL, got {url!r}")
        # SECURITY: the receiver can only trust a signed context.
        secret = r.secret(item, "secret", min_length=MIN_WEBHOOK_SECRET)
    elif "secret" in item:
        r.error("secret", "is for webhooks (url) only")
    events = _strings(r, item, "events", ("login",))
    for event in events:
        if event not in EVENTS:
            r.error("events", f"{event!r} is not one of {', '.join(EVENTS)}")
    headers = _strings(r, item, "identity_headers", ())
    for header in headers:
        if not _HEADER.match(header):
            r.error("identity_headers", f"{header!r} is not a header name")
    options = r.get(item, "options", dict, {})
    timeout = r.duration(item, "timeout", 2.0)
    if timeout <= 0:
        r.error("timeout", "must be greater than 0")
    return RuleConfig(
        name=name, events=events, call=call, url=url, secret=secret, timeout=timeout,
        on_error=r.choice(item, "on_error", ON_ERROR), ttl=r.duration(item, "ttl", 300.0),
        identity_headers=headers, options=options,
        breaker_failures=r.positive(item, "breaker_failures", 3),
        breaker_interval=r.duration(item, "breaker_interval", 30.0),
    )  # fmt: skip


def _strings(
    r: Reader, item: Mapping[str, Any], name: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = item.get(name, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        r.error(name, "must be a list of strings")
        return default
    return tuple(value)


def read_capture_policy(r: Reader, doc: Mapping[str, Any]) -> CapturePolicy:
    """The ``[policy]`` keys judged at capture (the table's other keys: config/flows.py)."""
    raw = doc.get("policy", {})
    if not isinstance(raw, dict):
        return CapturePolicy()  # reported by read_policy
    with r.section("policy"):
        min_length = r.get(raw, "capture_min_length", int, 0)
        if min_length < 0:
            r.error("capture_min_length", "must not be negative")
        breached = r.optional(raw, "breached_list")
    return CapturePolicy(max(min_length, 0), breached)


def rule_headers(rules: tuple[RuleConfig, ...]) -> tuple[str, ...]:
    """Every identity header a rule may set: stripped from clients like the configured ones."""
    return tuple(header for rule in rules for header in rule.identity_headers)
