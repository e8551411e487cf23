"""Judging a legacy login against the legacy database (``judge = "database"``, issue 17): for
logins that cannot be forwarded (a single-page app, a desktop client, a captcha), the password
is checked against the hash ``find_user`` reads, by the same verifiers and on the same bounded,
time-padded pool as an imported user's (store/passwords.py).

An accepted verdict carries the legacy user, as a legacy login's capture would have it; the
caller stores them with an argon2id hash of the password, as for any capture. Every refusal
costs a verify, so that the answer time tells no unknown user from a wrong password.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from proxy.config import ProfileMap
from proxy.errors import LookupFailed
from proxy.legacy import has_second_factor, map_profile, profile_active
from proxy.legacy_db.base import Row, Source
from proxy.legacy_db.errors import LegacyDbError
from proxy.lookup import LegacyUser
from store.errors import InvalidPassword
from store.passwords import PasswordPool
from store.validation import normalise_identifier, username_key

ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the legacy database says of a login: ``user`` when accepted, else None; ``reason``
    is ``accepted``, ``unknown_user``, ``wrong_password``, ``no_hash`` (none the verifiers
    know), ``inactive`` or ``second_factor``, for the log and the counters."""

    reason: str
    user: LegacyUser | None = None


class DatabaseJudge:
    """Checks passwords against the legacy database's hashes."""

    def __init__(
        self,
        source: Source,
        mapping: ProfileMap,
        passwords: PasswordPool,
        username_case: str = "lower",
    ) -> None:
        self._source = source
        self._map = mapping
        self._passwords = passwords
        self._case = username_case

    async def judge(self, identifier: str, password: str) -> Verdict:
        """The verdict on ``identifier`` (an email when it holds an ``@`` and ``by_email`` is
        configured, else a username) and ``password``.

        Raises:
            LookupFailed: the database did not answer, or two rows have this identifier: the
                login fails as when the legacy app is down, never as a wrong password.
            Overloaded: the password pool's queue is full.
        """
        db = self._source.config
        by_email = db.by_email is not None and ("@" in identifier or db.by_username is None)
        field = "email" if by_email else "username"
        try:
            rows = await self._source.find_user(field, identifier)
        except LegacyDbError as exc:
            raise LookupFailed(str(exc)) from None
        if len(rows) > 1:
            # SECURITY: never a guess between two users who both answer to this identifier.
            raise LookupFailed(f"{len(rows)} rows of the legacy database have this {field}")
        row = rows[0] if rows else None
        if row is None or not self._names(row, field, identifier):
            return await self._refuse("unknown_user", password)
        stored = row.password_hash
        if stored is None or (
            self._passwords.is_legacy(stored) and self._passwords.legacy.identify(stored) is None
        ):
            return await self._refuse("no_hash", password)
        try:
            await self._passwords.verify(stored, password)
        except InvalidPassword:
            return Verdict("wrong_password")
        # SECURITY: checked after the verify, so that these refusals take a verify's time too;
        # a locked user stays locked, and a second factor is never skipped.
        if not profile_active(row.profile, self._map):
            return Verdict("inactive")
        if has_second_factor(row.profile, self._map):
            return Verdict("second_factor")
        return Verdict(ACCEPTED, LegacyUser(row.profile, map_profile(row.profile, self._map)))

    def _names(self, row: Row, field: str, identifier: str) -> bool:
        """Whether the row's mapped ``field`` is ``identifier``, folded as authshim folds it."""
        # SECURITY: a template that finds someone else must never let them log in.
        got = getattr(map_profile(row.profile, self._map), field)
        if not isinstance(got, str):
            return False
        if field == "username":
            return username_key(got, self._case) == username_key(identifier, self._case)
        return normalise_identifier(got) == normalise_identifier(identifier)

    async def _refuse(self, reason: str, password: str) -> Verdict:
        # Always InvalidPassword: the dummy verify is only the time a real one takes.
        with contextlib.suppress(InvalidPassword):
            await self._passwords.dummy_verify(password)
        return Verdict(reason)
