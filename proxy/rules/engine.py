"""Runs an event's rules in order, each under its failure policy, and keeps the identity values
the ``login`` rules gave each user for at most their ``ttl``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from proxy import log
from proxy.config import EVENTS, RuleConfig
from proxy.rules.answers import RuleResult, Verdict, merged_metadata, parse_answer
from proxy.rules.context import build_context, scrubbed, user_context
from proxy.rules.errors import RuleFailed
from proxy.rules.runners import Runner, make_runner
from proxy.stats import Counters
from store.base import User

_MAX_CACHED = 100_000


class RuleEngine:
    """The configured rules, built once per app; counts per rule into ``counters``."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        client: aiohttp.ClientSession | None,
        counters: Counters | None = None,
    ) -> None:
        """Raises ``RuleFailed`` when a Python rule cannot be imported."""
        self.runners = [make_runner(rule, client) for rule in rules]
        self._by_event: dict[str, tuple[Runner, ...]] = {
            event: tuple(r for r in self.runners if event in r.config.events) for event in EVENTS
        }
        self._counters = counters
        # user id -> (valid until (monotonic), identity values, denied)
        self._identity: dict[str, tuple[float, dict[str, str | None], bool]] = {}
        self._refreshing: dict[str, asyncio.Task[bool]] = {}

    def has(self, event: str) -> bool:
        """Whether any rule runs on ``event``."""
        return bool(self._by_event.get(event))

    async def run(self, event: str, context: dict[str, Any]) -> Verdict:
        """Every rule of ``event`` in order; the first deny (or failure under
        ``on_error = "deny"``) ends the run."""
        verdict = Verdict()
        for runner in self._by_event.get(event, ()):
            rule = runner.config
            verdict.ttl = rule.ttl if verdict.ttl is None else min(verdict.ttl, rule.ttl)
            started = time.perf_counter()
            try:
                answer = parse_answer(
                    await _guarded(runner, context), event=event, headers=runner.headers
                )
            except RuleFailed as exc:
                ms = _ms(started)
                verdict.results.append(RuleResult(rule.name, "error", error=str(exc), ms=ms))
                self._count(f"rules.{rule.name}.error")
                log.event("rules.failed", rule=rule.name, event=event, reason=exc.reason,
                          detail=exc.detail, on_error=rule.on_error, ms=ms)  # fmt: skip
                if rule.on_error == "deny":
                    verdict.denied_by, verdict.message = rule.name, "a rule failed"
                    break
                continue
            ms = _ms(started)
            if answer.deny:
                verdict.results.append(RuleResult(rule.name, "deny", answer, ms=ms))
                verdict.denied_by, verdict.message = rule.name, answer.message
                self._count(f"rules.{rule.name}.deny")
                log.event("rules.denied", rule=rule.name, event=event, message=answer.message)
                break
            verdict.results.append(RuleResult(rule.name, "allow", answer, ms=ms))
            self._count(f"rules.{rule.name}.allow")
            verdict.add(answer)
            _carry(context, answer.app_metadata, answer.profile)
        return verdict

    # --- identity values held per user for ``ttl`` ---

    def remember(self, user_id: str, verdict: Verdict) -> None:
        """Hold the identity values (or the deny) of a ``login`` verdict for its ttl."""
        if verdict.ttl is None:
            return
        if len(self._identity) > _MAX_CACHED:
            self._identity.clear()
        expires = time.monotonic() + verdict.ttl
        self._identity[user_id] = (expires, dict(verdict.identity), verdict.denied)

    def identity_for(self, user_id: str) -> dict[str, str | None]:
        """The identity values the rules gave ``user_id`` (empty when none are held)."""
        held = self._identity.get(user_id)
        return held[1] if held is not None else {}

    def forget(self, user_id: str) -> None:
        self._identity.pop(user_id, None)

    def session_now(self, user: User) -> bool | None:
        """``session()`` without waiting: None when the rules must run again first."""
        if not self._by_event["login"]:
            return True
        held = self._identity.get(user.id)
        if held is not None and held[0] > time.monotonic():
            return not held[2]
        return None

    async def session(self, user: User, mode: str) -> bool:
        """Whether ``user``'s session still carries an identity: the ``login`` rules run
        again (``auth`` ``session``) when their values are older than ``ttl`` or unknown here
        (another replica, a restart); a deny then drops the identity until the next ttl."""
        known = self.session_now(user)
        if known is not None:
            return known
        # Many requests of one user at once: one re-evaluation.
        task = self._refreshing.get(user.id)
        if task is None:
            task = asyncio.ensure_future(self._refresh(user, mode))
            self._refreshing[user.id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(user.id, None))
        return await asyncio.shield(task)

    async def _refresh(self, user: User, mode: str) -> bool:
        context = build_context(
            "login", "session", user_context(user), client=None, route=None, mode=mode
        )
        verdict = await self.run("login", context)
        self.remember(user.id, verdict)
        return not verdict.denied

    def _count(self, name: str) -> None:
        if self._counters is not None:
            self._counters.add(name)


async def _guarded(runner: Runner, context: dict[str, Any]) -> Any:
    """The runner's raw answer, through its breaker."""
    breaker = runner.breaker
    if not breaker.allow():
        raise RuleFailed("open", "the circuit breaker is open")
    try:
        raw = await runner.call(context)
    except RuleFailed:
        breaker.failed()
        raise
    except BaseException:
        breaker.abandoned()  # cancelled: neither a success nor a failure
        raise
    breaker.succeeded()
    return raw


def _carry(context: dict[str, Any], metadata: dict[str, Any], profile: Any) -> None:
    """Let the next rules see what this one changed in the profile."""
    user = context.get("user")
    if not isinstance(user, dict):
        return
    if profile is not None:
        user["profile"] = scrubbed(profile)
    if metadata:
        user["profile"] = merged_metadata(user.get("profile") or {}, metadata)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
