"""argon2id in the bounded pool: hash, verify, dummy verify, rehash, overload, responsiveness."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Awaitable

import pytest

from store.errors import InvalidPassword, Overloaded
from store.passwords import HashParams, PasswordPool

CHEAP = HashParams(time_cost=1, memory_cost=64, parallelism=1)
# Heavy enough (tens of ms) that work is still running when the next call arrives.
HEAVY = HashParams(time_cost=3, memory_cost=32768, parallelism=1)


@pytest.fixture
async def pool() -> AsyncIterator[PasswordPool]:
    """A pool with cheap parameters."""
    p = PasswordPool(CHEAP, workers=2, queue_limit=8)
    try:
        yield p
    finally:
        p.close()


async def test_hash_is_argon2id_phc_with_the_params(pool: PasswordPool) -> None:
    """hash() returns an argon2id PHC string carrying the pool's parameters."""
    phc = await pool.hash("s3cret")
    assert phc.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert phc != await pool.hash("s3cret")  # salted


async def test_verify_accepts_the_right_password(pool: PasswordPool) -> None:
    """verify() returns for the password that was hashed, unicode and empty included."""
    for password in ("s3cret", "pässwörd 🔑", ""):
        await pool.verify(await pool.hash(password), password)  # returns, does not raise


async def test_verify_refuses_a_wrong_password(pool: PasswordPool) -> None:
    """verify() raises InvalidPassword for any other password."""
    phc = await pool.hash("s3cret")
    for wrong in ("S3cret", "s3cret ", ""):
        with pytest.raises(InvalidPassword):
            await pool.verify(phc, wrong)


async def test_lone_surrogates_hash_and_verify(pool: PasswordPool) -> None:
    """A password with a lone surrogate (valid in JSON, not in UTF-8) works like any other."""
    phc = await pool.hash("pw\ud800")
    await pool.verify(phc, "pw\ud800")
    with pytest.raises(InvalidPassword):
        await pool.verify(phc, "pw\ud801")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=64,t=1,p=1$broken",
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
        "$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01",
        "pbkdf2_sha256$600000$salt$hash",
        "$argon2id$v=19$m=64,t=1,p=1$ü$ü",
    ],
)
async def test_garbage_hash_is_an_invalid_password(pool: PasswordPool, garbage: str) -> None:
    """A malformed or foreign hash refuses the login instead of crashing it."""
    with pytest.raises(InvalidPassword):
        await pool.verify(garbage, "s3cret")


async def test_dummy_verify_always_refuses(pool: PasswordPool) -> None:
    """dummy_verify raises InvalidPassword whatever the password."""
    for password in ("s3cret", "", "x" * 1000):
        with pytest.raises(InvalidPassword):
            await pool.dummy_verify(password)


async def test_dummy_verify_costs_what_a_verify_costs() -> None:
    """An unknown user's refusal takes about as long as a wrong password's."""
    pool = PasswordPool(HashParams(time_cost=2, memory_cost=8192), workers=1, queue_limit=4)
    try:
        phc = await pool.hash("s3cret")
        with pytest.raises(InvalidPassword):
            await pool.dummy_verify("warm-up")  # waits for the start-up hash once

        async def timed(call: Awaitable[None]) -> float:
            started = time.perf_counter()
            with pytest.raises(InvalidPassword):
                await call
            return time.perf_counter() - started

        real = statistics.median([await timed(pool.verify(phc, "wrong")) for _ in range(7)])
        dummy = statistics.median([await timed(pool.dummy_verify("wrong")) for _ in range(7)])
        assert 0.5 < dummy / real < 2.0
    finally:
        pool.close()


async def test_needs_rehash_follows_the_parameters(pool: PasswordPool) -> None:
    """A hash made with other parameters (or unreadable) needs a rehash; our own does not."""
    phc = await pool.hash("s3cret")
    assert pool.needs_rehash(phc) is False
    stronger = PasswordPool(HashParams(time_cost=2, memory_cost=64), workers=1)
    try:
        assert stronger.needs_rehash(phc) is True
        assert stronger.needs_rehash(await stronger.hash("s3cret")) is False
    finally:
        stronger.close()
    assert pool.needs_rehash("garbage") is True


async def test_overloaded_past_workers_plus_queue_limit() -> None:
    """With 1 worker and a queue of 1, two of six simultaneous hashes run, four are shed."""
    pool = PasswordPool(HEAVY, workers=1, queue_limit=1)
    try:
        results = await asyncio.gather(
            *(pool.hash(f"pw{i}") for i in range(6)), return_exceptions=True
        )
        assert sum(isinstance(r, str) for r in results) == 2
        assert sum(isinstance(r, Overloaded) for r in results) == 4
        assert pool.depth == 0
        assert (await pool.hash("again")).startswith("$argon2id$")  # recovered
    finally:
        pool.close()


async def test_depth_counts_running_and_queued_work() -> None:
    """depth is the number of operations admitted and not yet finished."""
    pool = PasswordPool(HEAVY, workers=1, queue_limit=4)
    try:
        tasks = [asyncio.create_task(pool.hash(f"pw{i}")) for i in range(3)]
        await asyncio.sleep(0)
        assert pool.depth == 3
        await asyncio.gather(*tasks)
        assert pool.depth == 0
    finally:
        pool.close()


async def test_cancelled_callers_release_their_slots() -> None:
    """Cancelled requests drop their queued work at once; running work holds its slot."""
    pool = PasswordPool(HEAVY, workers=1, queue_limit=4)
    try:
        await pool.hash("warm-up")  # the start-up dummy hash is done: the worker is idle
        tasks = [asyncio.create_task(pool.hash(f"pw{i}")) for i in range(5)]
        await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pool.depth == 1  # the running hash cannot be stopped; it still counts
        for _ in range(200):
            if pool.depth == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.depth == 0
    finally:
        pool.close()


async def test_event_loop_stays_responsive_while_hashing() -> None:
    """A ticker keeps ticking every few ms while heavy hashes run in the pool."""
    pool = PasswordPool(HEAVY, workers=2, queue_limit=8)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    try:
        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        await asyncio.gather(*(pool.hash(f"pw{i}") for i in range(6)))
        elapsed = time.perf_counter() - started
        done.set()
        await tick
    finally:
        pool.close()
    assert elapsed > 0.05  # the work was heavy enough to have blocked a loop noticeably
    assert max(gaps) < 0.05
    assert len(gaps) > 10


async def test_closed_pool_sheds_work() -> None:
    """After close(), new work raises Overloaded (the proxy answers 503)."""
    pool = PasswordPool(CHEAP, workers=1)
    pool.close()
    with pytest.raises(Overloaded):
        await pool.hash("s3cret")
    assert pool.depth == 0


def test_negative_sizes_are_refused() -> None:
    """A negative worker count or queue limit is a ValueError."""
    with pytest.raises(ValueError):
        PasswordPool(CHEAP, workers=-1)
    with pytest.raises(ValueError):
        PasswordPool(CHEAP, queue_limit=-1)


def test_defaults_are_owasp_minimum() -> None:
    """The default parameters are argon2id m=19 MiB, t=2, p=1."""
    assert HashParams() == HashParams(time_cost=2, memory_cost=19456, parallelism=1)


async def test_verify_accepts_legacy_hashes_and_asks_for_an_upgrade(pool: PasswordPool) -> None:
    """An imported legacy hash (here phpass and Django PBKDF2) verifies its password on the
    pool, refuses others with InvalidPassword, and always needs a rehash to argon2id."""
    import base64
    import hashlib

    from store.hashes.phpass import crypt_private

    phpass = crypt_private(b"s3cret", "$P$BabcdEFGH", "md5")
    digest = base64.b64encode(hashlib.pbkdf2_hmac("sha256", b"s3cret", b"NaCl", 1000)).decode()
    django = f"pbkdf2_sha256$1000$NaCl${digest}"
    for stored in (phpass, django):
        assert pool.is_legacy(stored)
        assert pool.needs_rehash(stored)
        await pool.verify(stored, "s3cret")
        with pytest.raises(InvalidPassword):
            await pool.verify(stored, "s3cret!")
    assert not pool.is_legacy(await pool.hash("x"))


async def test_unknown_legacy_format_is_refused(pool: PasswordPool) -> None:
    """A stored value no verifier knows refuses every password, even an equal string."""
    for stored in ("plain-text-password", "$9$x", ""):
        with pytest.raises(InvalidPassword):
            await pool.verify(stored, stored)
