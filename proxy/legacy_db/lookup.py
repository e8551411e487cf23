"""``[lookup] source = "database"``: the legacy look-up answered by ``find_user`` templates
instead of the legacy app's HTTP API.

Everything but the asking is ``proxy.lookup.Lookup``'s: the counters, the log line, and the
check that the profile found has the identifier asked for. No row is "not found"; more than
one row, or a database that does not answer, is ``LookupFailed`` (never "not found", which
would let a duplicate user be created). The hash column never joins the profile.
"""

from __future__ import annotations

import aiohttp

from proxy.config import Config, LookupConfig, ProfileMap
from proxy.errors import LookupFailed
from proxy.legacy_db.base import Source
from proxy.legacy_db.errors import LegacyDbError
from proxy.lookup import LegacyUser, Lookup, Received
from proxy.stats import Counters


class DatabaseLookup(Lookup):
    """The look-up over the legacy database's ``find_user`` templates."""

    def __init__(
        self,
        config: LookupConfig,
        source: Source,
        session: aiohttp.ClientSession,
        profile_map: ProfileMap,
        counters: Counters | None = None,
        username_case: str = "lower",
    ) -> None:
        super().__init__(config, session, profile_map, counters, username_case)
        self.source = source

    def _template(self, field: str) -> str | None:
        db = self.source.config
        return db.by_email if field == "email" else db.by_username

    async def _ask(
        self, template: str, field: str, value: str
    ) -> tuple[LegacyUser | None, Received]:
        try:
            rows = await self.source.find_user(field, value)
        except LegacyDbError as exc:
            raise LookupFailed(str(exc)) from None
        if not rows:
            return None, Received(200, elements=0)
        if len(rows) > 1:
            # SECURITY: never a guess between two users who both answer to this identifier.
            raise LookupFailed(f"{len(rows)} rows of the legacy database have this {field}")
        return self._profile(rows[0].profile, field, value), Received(200, elements=1, matched=0)


def build_lookup(
    config: Config,
    session: aiohttp.ClientSession,
    counters: Counters | None = None,
    source: Source | None = None,
) -> Lookup | None:
    """The look-up ``[lookup]`` configures: over HTTP, or over ``source`` when
    ``source = "database"``; None without ``[lookup]``."""
    if config.lookup is None:
        return None
    case = config.migration.username_case
    if config.lookup.source == "database":
        if source is None:
            raise ValueError('[lookup] source = "database" needs [legacy_db]')
        return DatabaseLookup(config.lookup, source, session, config.profile, counters, case)
    return Lookup(config.lookup, session, config.profile, counters, case)
