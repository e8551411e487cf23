"""A login judged by the legacy database (``[[login]] judge = "database"``, issue 17): for a
legacy login that cannot be forwarded (a single-page app, a desktop client, a login behind a
captcha), an unmigrated user's password is checked against the hash in the legacy database
(proxy/legacy_db/judge.py) and, when right, the user is captured and answered here, as a
migrated user is. The legacy app is not asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from proxy.answers import render
from proxy.config import LoginRoute
from proxy.errors import LookupFailed
from proxy.flows.capture import capture_user
from proxy.flows.common import unavailable
from proxy.services import Services
from store.errors import Overloaded

Result = tuple[str, web.StreamResponse, str | None]


async def judged_by_database(
    svc: Services,
    route: LoginRoute,
    identifier: str,
    password: str,
    hold: Callable[[], Awaitable[None]],
    next_value: str | None,
) -> Result:
    """Capture the user the legacy database says ``password`` is right for, or refuse."""
    judge = svc.db_judge
    if judge is None:  # the config requires [legacy_db] with judge = "database"
        return "store_error", unavailable("no legacy database is configured"), None
    try:
        verdict = await judge.judge(identifier, password)
    except LookupFailed:
        # Not a wrong password: the database cannot say, so the login is not judged.
        return "upstream_error", unavailable("the legacy database is unavailable"), None
    except Overloaded:
        return "overloaded", unavailable("too many logins at once; retry"), None
    if verdict.user is None:
        svc.counters.add(f"login.database.{verdict.reason}")
        await hold()
        return "legacy_refused", render(route.failure), None
    found = verdict.user.profile

    async def profile() -> dict[str, Any]:
        return found

    user = await capture_user(
        svc, path=route.path, identifier=identifier, password=password, source="login",
        profile=profile, reuse_existing=True, validate=svc.config.migration.validate,
    )  # fmt: skip
    svc.login_activity.note(identifier, user)
    if user is None:
        # Right, but not storable (the import rules, a conflict): counted by capture_user.
        await hold()
        return "legacy_ok", render(route.failure), None
    svc.known.add_user(user)
    cookie = svc.sessions.issue(user)
    answer = render(route.answer, next_value=next_value, profile=user.profile, cookies=[cookie])
    return "captured", answer, user.id
