"""What a rule may answer (schema in docs/rules.md), checked strictly, and the verdict of all
the rules of one event.

An answer is ``None`` or ``{}`` (allow), or an object with any of ``deny`` (true or a
message), ``message``, ``identity`` (header -> string, or null to remove), ``app_metadata``
(an object merged into the stored profile's ``app_metadata``), ``must_change_password``
(true), and, at ``capture`` and ``signup`` only, ``profile`` (the profile to store instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from proxy.rules.errors import RuleFailed

ANSWER_KEYS = frozenset(
    {"deny", "message", "identity", "app_metadata", "must_change_password", "profile"}
)
PROFILE_EVENTS = frozenset({"capture", "signup"})
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class RuleAnswer:
    """One rule's answer, checked."""

    deny: bool = False
    message: str = ""
    identity: dict[str, str | None] = field(default_factory=dict)
    app_metadata: dict[str, Any] = field(default_factory=dict)
    must_change_password: bool = False
    profile: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The answer as ``authshim rules test`` prints it (left-out parts omitted)."""
        out: dict[str, Any] = {"deny": self.deny}
        if self.message:
            out["message"] = self.message
        if self.identity:
            out["identity"] = self.identity
        if self.app_metadata:
            out["app_metadata"] = self.app_metadata
        if self.must_change_password:
            out["must_change_password"] = True
        if self.profile is not None:
            out["profile"] = self.profile
        return out


ALLOW = RuleAnswer()


def parse_answer(raw: Any, *, event: str, headers: frozenset[str]) -> RuleAnswer:
    """Check a rule's raw answer; ``headers`` are the (lower-case) identity headers it may set.

    Raises:
        RuleFailed: ``answer``: the answer does not follow the schema.
    """
    if raw is None:
        return ALLOW
    if not isinstance(raw, dict):
        raise RuleFailed("answer", f"must be an object or null, got {type(raw).__name__}")
    unknown = set(raw) - ANSWER_KEYS
    if unknown:
        raise RuleFailed("answer", f"unknown keys: {', '.join(sorted(unknown))}")
    deny = raw.get("deny", False)
    message = raw.get("message", "")
    if isinstance(deny, str):
        deny, message = True, message or deny
    if not isinstance(deny, bool) or not isinstance(message, str):
        raise RuleFailed("answer", "deny must be true, false or a message; message a string")
    must = raw.get("must_change_password", False)
    if not isinstance(must, bool):
        raise RuleFailed("answer", "must_change_password must be true or false")
    metadata = raw.get("app_metadata", {})
    if not isinstance(metadata, dict):
        raise RuleFailed("answer", "app_metadata must be an object")
    profile = raw.get("profile")
    if profile is not None and (not isinstance(profile, dict) or event not in PROFILE_EVENTS):
        raise RuleFailed("answer", "profile must be an object, at capture or signup only")
    return RuleAnswer(
        deny=deny,
        message=message,
        identity=_identity(raw.get("identity", {}), headers),
        app_metadata=metadata,
        must_change_password=must,
        profile=profile,
    )


def _identity(raw: Any, headers: frozenset[str]) -> dict[str, str | None]:
    if not isinstance(raw, dict):
        raise RuleFailed("answer", "identity must be an object of header: value")
    values: dict[str, str | None] = {}
    for name, value in raw.items():
        # SECURITY: only headers authshim strips from clients may carry identity, or a client
        # could send its own copy where the rule sets none.
        if not isinstance(name, str) or name.lower() not in headers:
            raise RuleFailed("answer", f"identity header {name!r} is not allowed for this rule")
        if value is not None and not isinstance(value, str):
            raise RuleFailed("answer", f"identity {name} must be a string or null")
        # SECURITY: a value must not be able to inject a header line.
        values[name] = None if value is None else _UNSAFE_VALUE.sub("", value)
    return values


@dataclass(frozen=True, slots=True)
class RuleResult:
    """How one rule ran: ``outcome`` is ``allow``, ``deny`` or ``error``."""

    rule: str
    outcome: str
    answer: RuleAnswer | None = None
    error: str = ""
    ms: float = 0.0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "outcome": self.outcome, "ms": self.ms}
        if self.answer is not None:
            out["answer"] = self.answer.as_json()
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class Verdict:
    """Every rule of one event, combined: the first deny ends it; identity values and
    app_metadata merge in rule order (a later rule overrides); ``profile`` is the last given."""

    denied_by: str | None = None
    message: str = ""
    identity: dict[str, str | None] = field(default_factory=dict)
    app_metadata: dict[str, Any] = field(default_factory=dict)
    must_change_password: bool = False
    profile: dict[str, Any] | None = None
    ttl: float | None = None  # the shortest ttl of the rules that ran
    results: list[RuleResult] = field(default_factory=list)

    @property
    def denied(self) -> bool:
        return self.denied_by is not None

    def add(self, answer: RuleAnswer) -> None:
        """Merge one rule's allowing answer."""
        self.identity.update(answer.identity)
        self.app_metadata.update(answer.app_metadata)
        self.must_change_password = self.must_change_password or answer.must_change_password
        if answer.profile is not None:
            self.profile = answer.profile


def merged_metadata(profile: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``profile`` with ``metadata`` merged (one level) into its ``app_metadata``."""
    if not metadata:
        return profile
    current = profile.get("app_metadata")
    base = dict(current) if isinstance(current, dict) else {}
    return {**profile, "app_metadata": {**base, **metadata}}
