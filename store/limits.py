"""Attempt counters for brute-force protection and rate limits: the rule every backend applies.

A counter is one row per key: how many attempts since ``window_start``, and until when the key
is blocked. ``advance`` is the whole policy, pure and shared; a backend only has to apply it
atomically (compare-and-swap on ``version``), so that every replica sees one count and a burst
of parallel attempts cannot slip more through than the rule allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

MAX_DOUBLINGS = 30  # 2**30 blocks are far past any cap; keeps the float finite


@dataclass(frozen=True, slots=True)
class LimitRule:
    """``threshold`` attempts per ``window`` seconds; past it, the key is blocked.

    With ``block > 0`` (brute force) the attempt that reaches the threshold blocks the key for
    ``block`` seconds, each further allowed attempt doubles that up to ``block_max``, and the
    count starts again one ``window`` after its first attempt. With ``block == 0`` (a rate
    limit) the key is blocked until its window ends.
    """

    threshold: int
    window: float
    block: float = 0.0
    block_max: float = 0.0


@dataclass(frozen=True, slots=True)
class LimitState:
    """A stored counter."""

    count: int
    window_start: float
    blocked_until: float
    version: int = 0


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """Whether an attempt may go ahead, and when to retry if not."""

    allowed: bool
    retry_after: float
    count: int


def advance(
    state: LimitState | None, rule: LimitRule, now: float
) -> tuple[LimitState | None, LimitDecision]:
    """Count one attempt against ``state``; return the state to store (None: unchanged)."""
    if state is not None and state.blocked_until > now:
        # SECURITY: a refused attempt is not counted, so an attacker hammering a blocked key
        # does not lengthen the real user's wait, and nothing here depends on the user existing.
        return None, LimitDecision(False, state.blocked_until - now, state.count)
    if state is None or now - state.window_start >= rule.window or now < state.window_start:
        count, start = 1, now  # a clock that went backwards also starts a fresh window
    else:
        count, start = state.count + 1, state.window_start
    blocked_until = 0.0
    if count >= rule.threshold:
        if rule.block > 0:
            doublings = min(count - rule.threshold, MAX_DOUBLINGS)
            blocked_until = now + min(rule.block * 2**doublings, max(rule.block_max, rule.block))
        else:
            blocked_until = start + rule.window
    version = 0 if state is None else state.version + 1
    new = LimitState(count, start, blocked_until, version)
    return new, LimitDecision(True, 0.0, count)


@dataclass(frozen=True, slots=True)
class LimitAttempt:
    """One attempt to count: on ``key`` under ``rule``; ``subject`` tags the account."""

    key: str
    rule: LimitRule
    subject: str | None = None


def advance_together(
    attempts: Sequence[LimitAttempt], states: Mapping[str, LimitState], now: float
) -> tuple[list[tuple[LimitAttempt, LimitState]], LimitDecision]:
    """``advance`` each attempt's counter in order (``states`` by key, absent when new): the
    counters to write, and the last decision. The first refusal stops it with nothing to
    write, so that attempts counted together are counted all or none."""
    writes: list[tuple[LimitAttempt, LimitState]] = []
    decision = LimitDecision(True, 0.0, 0)
    for attempt in attempts:
        new, decision = advance(states.get(attempt.key), attempt.rule, now)
        if not decision.allowed:
            return [], decision
        if new is not None:
            writes.append((attempt, new))
    return writes, decision


CAS_TRIES = 20  # parallel attempts on one key each win a round; past this the key is contended


async def apply(
    load: Callable[[], Awaitable[LimitState | None]],
    write: Callable[[LimitState | None, LimitState], Awaitable[bool]],
    rule: LimitRule,
    now: float,
) -> LimitDecision:
    """Run ``advance`` as a compare-and-swap: ``write(old, new)`` returns False when another
    attempt changed the row first, and the attempt is then re-read and re-counted."""
    for _ in range(CAS_TRIES):
        state = await load()
        new, decision = advance(state, rule, now)
        if new is None or await write(state, new):
            return decision
    # SECURITY: fail closed. A key this contended is under attack, and letting the attempt
    # through uncounted is exactly what the attacker wants.
    return LimitDecision(False, 1.0, 0)
