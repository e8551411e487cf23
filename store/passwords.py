"""argon2id hashing in a bounded thread pool, so password work never blocks the event loop.

argon2-cffi releases the GIL while hashing, so a pool of one thread per core hashes in
parallel. The pool is bounded: past ``workers + queue_limit`` operations in flight it raises
``Overloaded`` at once, and the proxy answers 503 instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import Argon2Error

from store.errors import InvalidPassword, Overloaded
from store.hashes import Hashes

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HashParams:
    """argon2id cost parameters; the defaults are OWASP's minimum (m=19 MiB, t=2, p=1)."""

    time_cost: int = 2
    memory_cost: int = 19456  # KiB
    parallelism: int = 1


class PasswordPool:
    """Hash and verify passwords with argon2id on a bounded pool of threads; verify legacy
    hashes (store/hashes) on the same threads, for users imported with one."""

    def __init__(
        self,
        params: HashParams | None = None,
        *,
        workers: int = 0,
        queue_limit: int = 64,
        legacy: Hashes | None = None,
    ) -> None:
        params = params or HashParams()
        if workers < 0 or queue_limit < 0:
            raise ValueError("workers and queue_limit must not be negative")
        self.params = params
        self.legacy = legacy if legacy is not None else Hashes()
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # The PHC head argon2-cffi writes for these parameters, and its salt's and digest's
        # base64 lengths: a hash that matches them needs no rehash, without parsing it.
        p = self._hasher
        self._current_head = f"$argon2id$v=19$m={p.memory_cost},t={p.time_cost},p={p.parallelism}$"
        self._current_lengths = (-(-p.salt_len * 4 // 3), -(-p.hash_len * 4 // 3))
        self.workers = workers or os.cpu_count() or 1
        self._limit = self.workers + queue_limit
        self._executor = ThreadPoolExecutor(
            self.workers, thread_name_prefix="argon2", initializer=_below_the_event_loop
        )
        # Work finishes on pool threads, so the count is guarded by a thread lock and
        # released when the thread is done, not when its (maybe cancelled) awaiter is.
        self._lock = threading.Lock()
        self._depth = 0
        # SECURITY: unknown users are refused after a verify against this hash, made once at
        # start with the same parameters, so that they take as long as a wrong password.
        # Hashed on the pool, not here, so that building the pool never blocks the loop.
        self._dummy: Future[str] = self._executor.submit(
            self._hasher.hash, secrets.token_urlsafe(32)
        )

    @property
    def depth(self) -> int:
        """How many operations are running or queued."""
        return self._depth

    @property
    def saturated(self) -> bool:
        """Whether the next operation would be refused with ``Overloaded``."""
        return self._depth >= self._limit

    @property
    def idle(self) -> bool:
        """Whether a thread is free to start an operation at once."""
        return self._depth < self.workers

    async def hash(self, password: str) -> str:
        """Return the argon2id PHC string of ``password``.

        Raises:
            Overloaded: the pool's queue is full.
        """
        return await self._run(self._hasher.hash, _secret(password))

    async def verify(self, phc: str, password: str) -> None:
        """Return when ``password`` matches the PHC string ``phc``.

        Raises:
            InvalidPassword: it does not match, or ``phc`` is no hash argon2 can read.
            Overloaded: the pool's queue is full.
        """
        check = self._legacy_matches if self.is_legacy(phc) else self._matches
        if not await self._run(check, phc, _secret(password)):
            raise InvalidPassword()

    async def dummy_verify(self, password: str) -> None:
        """Do the work of a real verify, then refuse: the answer for an unknown user.

        Raises:
            InvalidPassword: always, once the work is done.
            Overloaded: the pool's queue is full.
        """
        if self._dummy.done():
            phc = self._dummy.result()
        else:
            # Shielded: a cancelled request must not cancel the one shared start-up hash.
            phc = await asyncio.shield(asyncio.wrap_future(self._dummy))
        await self._run(self._matches, phc, _secret(password))
        # SECURITY: refuse even in the (impossible) case that the random secret was guessed.
        raise InvalidPassword()

    @staticmethod
    def is_legacy(stored: str) -> bool:
        """Whether ``stored`` is no argon2id hash: imported, to be upgraded at the next login
        (argon2i and argon2d included: argon2-cffi reads them, the registry does too)."""
        return not stored.startswith("$argon2id$")

    def needs_rehash(self, phc: str) -> bool:
        """Return whether ``phc`` was made with other parameters than this pool's."""
        if phc.startswith(self._current_head):  # every login asks: the common case first
            salt, sep, digest = phc[len(self._current_head) :].partition("$")
            if sep and (len(salt), len(digest)) == self._current_lengths:
                return False
        try:
            return self._hasher.check_needs_rehash(phc)
        except (Argon2Error, ValueError):
            # Unreadable: verify refuses it anyway, so a rehash can never follow.
            return True

    def close(self) -> None:
        """Stop taking work; operations already admitted still finish on their threads."""
        # No wait: joining running argon2 work here would block the event loop.
        self._executor.shutdown(wait=False)

    def _matches(self, phc: str, password: bytes) -> bool:
        """Runs on a pool thread; never raises for bad input, so a login can never crash."""
        try:
            return self._hasher.verify(phc, password)
        except (Argon2Error, ValueError, TypeError):
            # Mismatch, a malformed or unknown hash (InvalidHashError is a ValueError), or a
            # hash with non-ASCII bytes (UnicodeEncodeError).
            return False

    def _legacy_matches(self, stored: str, password: bytes) -> bool:
        """Runs on a pool thread: the legacy verifier, then an argon2 verify of the dummy hash,
        so that a cheap legacy format takes at least an argon2 verify's time."""
        matched = self.legacy.verify(stored, password.decode("utf-8", "surrogatepass"))
        # SECURITY: padded to the argon2 verify time: the answer's time must not tell which
        # users were imported with a weak hash (worth cracking offline) from the others.
        # Its result is ignored; a dummy still being made is waited for on this thread.
        self._matches(self._dummy.result(), password)
        return matched

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        with self._lock:
            if self._depth >= self._limit:
                raise Overloaded(f"{self._depth} password operations in flight")
            self._depth += 1
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:  # shut down: shed the request as the proxy does under load
            self._release()
            raise Overloaded("password pool is closed") from None
        future.add_done_callback(lambda _: self._release())
        # wrap_future cancels the queued work when the awaiting request is cancelled.
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._depth -= 1


def _secret(password: str) -> bytes:
    """UTF-8, letting lone surrogates (which JSON bodies can carry) through, never raising."""
    return password.encode("utf-8", "surrogatepass")


def _below_the_event_loop() -> None:
    """Run this pool thread at a lower priority than the event loop (Linux: per thread), so
    that hashing never delays the loop answering pass-through requests and 503s."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
