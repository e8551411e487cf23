"""The legacy look-up ("get user"): a user's profile from the legacy app, by email or username.

200 with a JSON object is a profile, 404 is "not found", and anything else (another status,
a body that is not a profile, a timeout, a refused connection) is ``LookupFailed``: reported,
and never taken for "not found", since that would let a duplicate user be created.

A search answer (``list``: a list of users found by, say, substring) is searched for the one
element whose mapped email or username equals the identifier: none is "not found", more than
one is ``LookupFailed``. An element is never picked by its place in the list.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from proxy import log
from proxy.bodies import MISSING, resolve_pointer
from proxy.config import LookupConfig, ProfileMap
from proxy.errors import LookupFailed
from proxy.legacy import map_profile
from proxy.stats import Counters
from store.validation import ProfileFields, normalise_identifier, username_key

MAX_ANSWER = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Received:
    """What the legacy app answered a look-up, for ``authshim lookup`` to explain."""

    status: int
    elements: int | None = None  # a list's length, when the answer held one
    matched: int | None = None  # the index of the list element that matched


@dataclass(frozen=True, slots=True)
class LegacyUser:
    """A legacy user as the look-up found them: the whole profile and its mapped fields."""

    profile: dict[str, Any]
    fields: ProfileFields


class Lookup:
    """Asks the legacy app for a user, over the app's one pooled client session."""

    def __init__(
        self,
        config: LookupConfig,
        session: aiohttp.ClientSession,
        profile_map: ProfileMap,
        counters: Counters | None = None,
        username_case: str = "lower",
    ) -> None:
        self.config = config
        self._session = session
        self._map = profile_map
        self._counters = counters
        self._case = username_case

    @property
    def by_email_enabled(self) -> bool:
        return self._template("email") is not None

    @property
    def by_username_enabled(self) -> bool:
        return self._template("username") is not None

    async def by_email(self, email: str) -> LegacyUser | None:
        """The legacy user with this email, or None when the legacy app says 404.

        Raises:
            LookupFailed: any other answer, or no answer; also a profile with another email.
        """
        return (await self.find("email", email))[0]

    async def by_username(self, username: str) -> LegacyUser | None:
        """The legacy user with this username, or None when the legacy app says 404.

        Raises:
            LookupFailed: any other answer, or no answer; also a profile with another username.
        """
        return (await self.find("username", username))[0]

    async def find(self, field: str, value: str) -> tuple[LegacyUser | None, Received]:
        """The legacy user whose ``field`` ("email" or "username") is ``value`` (None: not
        found), and what the legacy app answered.

        Raises:
            LookupFailed: as ``by_email``; also a list with more than one such user.
        """
        template = self._template(field)
        if template is None:
            raise LookupFailed(f"lookup.by_{field} is not configured")
        started = time.perf_counter()
        try:
            found, received = await self._ask(template, field, value)
        except LookupFailed as exc:
            self._count("error")
            # The reason, never the URL: its query carries the user's email.
            log.event("lookup.failed", by=field, error=str(exc), ms=_ms(started))
            raise
        self._count("found" if found else "not_found")
        return found, received

    def _template(self, field: str) -> str | None:
        """What is asked for ``field``: a URL template here, SQL in proxy/legacy_db/lookup.py."""
        return self.config.by_email if field == "email" else self.config.by_username

    async def _ask(
        self, template: str, field: str, value: str
    ) -> tuple[LegacyUser | None, Received]:
        url = URL(template.replace("{" + field + "}", quote(value, safe="@")), encoded=True)
        headers = {name: secret.value for name, secret in self.config.headers}
        headers.setdefault("Accept", "application/json")
        headers["Accept-Encoding"] = "identity"  # the shared session does not decompress
        body = None
        if self.config.method == "POST":
            body = orjson.dumps({field: value})
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self._session.request(
                self.config.method, url, headers=headers, data=body, timeout=timeout,
                allow_redirects=False,
            ) as answer:  # fmt: skip
                status = answer.status
                raw = await answer.content.read(MAX_ANSWER + 1)
        except TimeoutError:
            raise LookupFailed(f"no answer within {self.config.timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise LookupFailed(f"the legacy app is unavailable ({type(exc).__name__})") from None
        if status == 404:
            return None, Received(status)
        if status != 200:
            raise LookupFailed(f"the legacy app answered {status}")
        if len(raw) > MAX_ANSWER:
            raise LookupFailed(f"the answer is larger than {MAX_ANSWER} bytes")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise LookupFailed("the answer is not JSON") from None
        if self.config.list is not None:
            return self._search(doc, self.config.list, field, value)
        profile = resolve_pointer(doc, self.config.pointer)
        if profile is MISSING and _found_nobody(doc, self.config.pointer):
            # a search answer: an empty list is "not found", like a 404
            return None, Received(status, elements=0)
        return self._profile(profile, field, value), Received(status)

    def _search(
        self, doc: Any, pointer: str, field: str, value: str
    ) -> tuple[LegacyUser | None, Received]:
        """The one element of the list at ``pointer`` whose ``field`` equals ``value``."""
        items = resolve_pointer(doc, pointer)
        if not isinstance(items, list):
            raise LookupFailed(f"the answer holds no list at {pointer!r}")
        wanted = self._key(field, value)
        matches = [
            i for i, item in enumerate(items)
            if isinstance(item, dict)
            and isinstance(got := getattr(map_profile(item, self._map), field), str)
            and self._key(field, got) == wanted
        ]  # fmt: skip
        if len(matches) > 1:
            # SECURITY: never a guess between two users who both answer to this identifier.
            places = ", ".join(str(i) for i in matches)
            raise LookupFailed(
                f"{len(matches)} of the list's {len(items)} elements have this {field} "
                f"(elements {places})"
            )
        received = Received(200, elements=len(items), matched=matches[0] if matches else None)
        if not matches:
            return None, received
        return self._profile(items[matches[0]], field, value), received

    def _profile(self, profile: Any, field: str, value: str) -> LegacyUser:
        if profile is MISSING or not isinstance(profile, dict):
            raise LookupFailed("the answer holds no profile object")
        fields = map_profile(profile, self._map)
        # SECURITY: a profile naming someone else must never stand for the one looked up.
        got = getattr(fields, field)
        if not isinstance(got, str) or self._key(field, got) != self._key(field, value):
            raise LookupFailed(f"the profile found has another {field}")
        return LegacyUser(profile, fields)

    def _key(self, field: str, value: str) -> str:
        """``value`` folded as the legacy app folds its ``field`` (a username by the rule)."""
        if field == "username":
            return username_key(value, self._case)
        return normalise_identifier(value)

    def _count(self, outcome: str) -> None:
        if self._counters is not None:
            self._counters.add(f"lookup.{outcome}")


def _found_nobody(doc: Any, pointer: str) -> bool:
    """Whether ``pointer`` runs into an empty list (``/0`` of ``[]``, ``/users/0`` of
    ``{"users": []}``): a search that found nobody."""
    tokens = pointer.split("/")[1:] if pointer else []
    prefixes = ("".join("/" + t for t in tokens[:i]) for i in range(len(tokens) + 1))
    return any(resolve_pointer(doc, prefix) == [] for prefix in prefixes)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
