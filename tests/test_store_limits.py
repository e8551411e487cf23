"""Attempt counters in the store: the same rule on every backend, exact under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from store.base import Store
from store.limits import LimitAttempt, LimitRule, LimitState, advance

BRUTE = LimitRule(threshold=3, window=3600.0, block=10.0, block_max=40.0)
RATE = LimitRule(threshold=2, window=60.0)
T0 = 1_000_000.0


def test_the_rule_blocks_at_the_threshold_and_doubles_up_to_the_cap() -> None:
    """Three attempts pass, the third blocks 10 s; later ones double the block up to 40 s."""
    state: LimitState | None = None
    for _ in range(2):
        state, decision = advance(state, BRUTE, T0)
        assert decision.allowed and state is not None and state.blocked_until == 0.0
    state, decision = advance(state, BRUTE, T0)
    assert decision.allowed and state is not None and state.blocked_until == T0 + 10
    assert advance(state, BRUTE, T0 + 9)[0] is None  # blocked: refused and not counted
    blocks = []
    now = T0
    for _ in range(4):
        now = state.blocked_until
        new, decision = advance(state, BRUTE, now)
        assert decision.allowed and new is not None
        blocks.append(new.blocked_until - now)
        state = new
    assert blocks == [20.0, 40.0, 40.0, 40.0]


def test_a_rate_limit_blocks_until_its_window_ends_then_starts_again() -> None:
    """A rate limit of 2 per minute refuses the third until the minute is over."""
    state, _ = advance(None, RATE, T0)
    state, _ = advance(state, RATE, T0 + 1)
    assert state is not None and state.blocked_until == T0 + 60
    new, decision = advance(state, RATE, T0 + 30)
    assert new is None and not decision.allowed and decision.retry_after == 30
    new, decision = advance(state, RATE, T0 + 60)
    assert decision.allowed and new is not None and new.count == 1


async def test_attempts_are_counted_and_refused_once_blocked(store: Store) -> None:
    """The store applies the rule: three pass, the fourth is refused with the time to wait."""
    decisions = [await store.limit_attempt("k", BRUTE, now=T0 + i) for i in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[3].retry_after == pytest.approx(9.0)
    later = await store.limit_attempt("k", BRUTE, now=T0 + 12)
    assert later.allowed and later.count == 4


async def test_a_burst_of_parallel_attempts_lets_exactly_the_threshold_through(
    store: Store,
) -> None:
    """Forty attempts at once on one key: exactly three are allowed (no lost update)."""
    decisions = await asyncio.gather(
        *(store.limit_attempt("burst", BRUTE, now=T0) for _ in range(40))
    )
    assert sum(d.allowed for d in decisions) == 3


async def test_two_replicas_share_one_count(store: Store, make_store: Callable[[], Store]) -> None:
    """Attempts through a second store on the same database count against the same key."""
    other = make_store()
    await other.open()
    try:
        results = await asyncio.gather(
            *(s.limit_attempt("shared", BRUTE, now=T0) for s in [store, other] * 5)
        )
    finally:
        await other.close()
    assert sum(d.allowed for d in results) == 3


async def test_refund_takes_an_attempt_back(store: Store) -> None:
    """A refunded attempt does not count towards the threshold."""
    await store.limit_attempt("r", BRUTE, now=T0)
    await store.limit_settle(refund=["r"])
    await store.limit_settle(refund=["r"])  # never below zero
    await store.limit_settle(refund=["absent"])  # no row: nothing to do
    counts = [(await store.limit_attempt("r", BRUTE, now=T0)).count for _ in range(2)]
    assert counts == [1, 2]


async def test_clear_by_key_and_by_subject(store: Store) -> None:
    """Clearing a subject removes all its keys (every address) and nothing of anyone else."""
    for key in ("a1", "a2"):
        for _ in range(3):
            await store.limit_attempt(key, BRUTE, now=T0, subject="alice")
    await store.limit_attempt("b1", BRUTE, now=T0, subject="bob")
    await store.limit_attempt("ip", BRUTE, now=T0)
    assert await store.limit_clear(subject="alice") == 2
    assert await store.limit_clear(["ip"]) == 1
    assert await store.limit_clear([], subject="nobody") == 0
    assert (await store.limit_attempt("a1", BRUTE, now=T0 + 1)).count == 1
    assert (await store.limit_attempt("b1", BRUTE, now=T0 + 1)).count == 2


async def test_purge_drops_only_finished_counters(store: Store) -> None:
    """Purge removes counters whose window and block are over, and keeps live blocks."""
    await store.limit_attempt("old", RATE, now=T0)
    for _ in range(3):
        await store.limit_attempt("blocked", BRUTE, now=T0)
    await store.limit_attempt("new", RATE, now=T0 + 100)
    assert await store.limit_purge(T0 + 5) == 1
    assert not (await store.limit_attempt("blocked", BRUTE, now=T0 + 5)).allowed
    assert (await store.limit_attempt("new", RATE, now=T0 + 101)).count == 2


async def test_attempts_counted_together_are_all_or_none(store: Store) -> None:
    """A login's two counters in one call: both counted, or neither when one is refused."""
    pair = [LimitAttempt("addr", BRUTE), LimitAttempt("acct", RATE, subject="alice")]
    first = await store.limit_attempts(pair, now=T0)
    second = await store.limit_attempts(pair, now=T0)
    assert (first.allowed, second.allowed, second.count) == (True, True, 2)
    third = await store.limit_attempts(pair, now=T0 + 1)  # the account's rate limit is spent
    assert not third.allowed and third.retry_after == pytest.approx(59.0)
    # The refusal counted nothing: the address is still at two, and alice's key is hers.
    assert (await store.limit_attempt("addr", BRUTE, now=T0 + 1)).count == 3
    assert await store.limit_clear(subject="alice") == 1


async def test_a_burst_of_paired_attempts_lets_exactly_the_threshold_through(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Forty paired attempts at once from two replicas: the address's three, no more."""
    other = make_store()
    await other.open()
    try:
        decisions = await asyncio.gather(*(
            s.limit_attempts(
                [LimitAttempt("burst-ip", BRUTE), LimitAttempt(f"acct-{i}", BRUTE)], now=T0
            )
            for i, s in enumerate([store, other] * 20)
        ))  # fmt: skip
    finally:
        await other.close()
    assert sum(d.allowed for d in decisions) == 3


async def test_settle_clears_and_refunds_in_one_call(store: Store) -> None:
    """A right password: the account's counter goes, the address's attempt is taken back."""
    for _ in range(2):
        await store.limit_attempts([LimitAttempt("ip", BRUTE), LimitAttempt("acct", BRUTE)], now=T0)
    await store.limit_settle(clear=["acct"], refund=["ip", "absent"])
    assert (await store.limit_attempt("ip", BRUTE, now=T0)).count == 2
    assert (await store.limit_attempt("acct", BRUTE, now=T0)).count == 1
    await store.limit_settle()  # nothing to do


async def test_settle_takes_one_attempt_back_per_time_a_key_is_named(store: Store) -> None:
    """A batch of logins from one address names its key once per login: each counts."""
    roomy = LimitRule(threshold=10, window=3600.0, block=10.0, block_max=40.0)
    for _ in range(4):
        await store.limit_attempts([LimitAttempt("ip", roomy)], now=T0)
    await store.limit_settle(refund=["ip", "ip", "ip"])
    assert (await store.limit_attempt("ip", roomy, now=T0)).count == 2
    await store.limit_settle(clear=["ip"], refund=["ip"])  # cleared, nothing left to refund
    assert (await store.limit_attempt("ip", roomy, now=T0)).count == 1
