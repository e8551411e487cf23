"""The admin JSON API: users, sessions, stats, mode and export (see openapi.json)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from proxy import log
from proxy.admin import common as admin_app
from proxy.admin.export import export_lines
from proxy.admin.report import gather
from proxy.admin.users import BadQuery, find_users, parse_query, user_view
from proxy.config import Config
from proxy.errors import IdentityConflict, WeakPassword
from proxy.flows.identity import change_identity
from proxy.flows.must_change import with_flag
from proxy.modes import write_mode
from proxy.policy import check_password
from proxy.readiness import day_before
from store.base import MODES, User
from store.errors import Overloaded, RejectedCapture, UserNotFound

PATCH_KEYS = frozenset({"email", "username", "blocked", "password", "must_change_password"})
MAX_DAYS = 366


def readiness_since(config: Config) -> str:
    """The first UTC day of the readiness window."""
    return day_before(config.admin.readiness_days - 1)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise BadQuery("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object")
    return body


async def _user(request: web.Request) -> User:
    user = await admin_app.services(request).store.get_user(request.match_info["id"])
    if user is None:
        raise web.HTTPNotFound(reason="No such user")
    return user


async def list_users(request: web.Request) -> web.Response:
    query = parse_query(request.query)
    page = await find_users(admin_app.services(request).store, query)
    return web.json_response(
        {"users": [user_view(u) for u in page.users], "next_page": page.next_page},
        dumps=_dumps,
    )


async def get_user(request: web.Request) -> web.Response:
    return web.json_response(user_view(await _user(request)), dumps=_dumps)


def _patch_values(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - PATCH_KEYS)
    if unknown:
        raise BadQuery(f"unknown field {unknown[0]!r} (expected {', '.join(sorted(PATCH_KEYS))})")
    if not body:
        raise BadQuery("nothing to change")
    for name in ("email", "username", "password"):
        if name in body and not isinstance(body[name], str):
            raise BadQuery(f"{name} must be a string")
    for name in ("blocked", "must_change_password"):
        if name in body and not isinstance(body[name], bool):
            raise BadQuery(f"{name} must be true or false")
    return body


async def patch_user(request: web.Request) -> web.Response:
    svc = admin_app.services(request)
    user = await _user(request)
    body = _patch_values(await _json_object(request))
    password = body.get("password")
    if password is not None:
        try:
            check_password(password, svc.config.policy)
        except WeakPassword as exc:
            raise BadQuery(str(exc)) from None
    if "email" in body or "username" in body:
        try:
            # The reset/sign-up issue's rules: import rules, stored and legacy conflicts.
            user = await change_identity(
                svc, user.id, email=body.get("email"), username=body.get("username")
            )
        except UserNotFound:
            raise web.HTTPNotFound(reason="No such user") from None
        except RejectedCapture as exc:
            raise BadQuery(f"{exc.reason.replace('_', ' ')}: {exc.detail}".strip(": ")) from None
        except IdentityConflict as exc:
            return admin_app.error(409, "conflict", str(exc), field=exc.field, where=exc.where)
    if "blocked" in body:
        await svc.store.set_blocked(user.id, body["blocked"])
        if not body["blocked"]:
            # An unblock also lifts brute-force blocks: a lock-out is never permanent.
            await svc.limits.clear_user([user.email, user.username], user_id=user.id)
    if "must_change_password" in body:
        # The must-change step at the next login (proxy/flows/must_change.py), as a rule's.
        fresh = await _user(request)
        profile = with_flag(fresh.profile, body["must_change_password"])
        await svc.store.update_profile(user.id, profile)
    if password is not None:
        try:
            phc = await svc.passwords.hash(password)
        except Overloaded:
            return admin_app.error(503, "overloaded", "the password pool is busy; retry")
        await svc.store.set_password(user.id, phc)  # also ends every session
    svc.sessions.forget(user.id)
    # SECURITY: which fields changed, never their values (a password least of all).
    log.event("admin.user_changed", user=user.id, fields=sorted(body))
    return web.json_response(user_view(await _user(request)), dumps=_dumps)


async def delete_user(request: web.Request) -> web.Response:
    svc = admin_app.services(request)
    user_id = request.match_info["id"]
    if not await svc.store.delete_user(user_id):
        raise web.HTTPNotFound(reason="No such user")
    svc.sessions.forget(user_id)
    log.event("admin.user_deleted", user=user_id)
    return web.Response(status=204)


async def revoke_sessions(request: web.Request) -> web.Response:
    svc = admin_app.services(request)
    user = await _user(request)
    epoch = await svc.store.revoke_sessions(user.id)
    svc.sessions.forget(user.id)
    log.event("admin.sessions_revoked", user=user.id)
    return web.json_response({"id": user.id, "session_epoch": epoch})


async def stats(request: web.Request) -> web.Response:
    svc = admin_app.services(request)
    extra = sorted(set(request.query) - {"days"})
    if extra:
        raise BadQuery(f"unknown parameter {extra[0]!r}")
    try:
        days = int(request.query.get("days", "30"))
    except ValueError:
        raise BadQuery("days must be a whole number") from None
    if not 1 <= days <= MAX_DAYS:
        raise BadQuery(f"days must be between 1 and {MAX_DAYS}")
    config = request.app[admin_app.CONFIG]
    document = await gather(
        svc.store, days=days, readiness_days=config.admin.readiness_days, mode=svc.modes.current
    )
    return web.json_response(document, dumps=_dumps)


async def get_mode(request: web.Request) -> web.Response:
    return web.json_response({"mode": admin_app.services(request).modes.current})


async def put_mode(request: web.Request) -> web.Response:
    svc = admin_app.services(request)
    body = await _json_object(request)
    mode = body.get("mode")
    if set(body) != {"mode"} or mode not in MODES:
        raise BadQuery(f'the body must be {{"mode": ...}} with one of {", ".join(MODES)}')
    was = svc.modes.current
    await write_mode(svc.store, mode)
    await svc.modes.refresh()  # this process at once; other replicas within mode_poll
    log.event("admin.mode", mode=mode, was=was)
    return web.json_response({"mode": svc.modes.current})


async def export(request: web.Request) -> web.StreamResponse:
    svc = admin_app.services(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson",
            "Content-Disposition": 'attachment; filename="authshim-users.ndjson"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    count = 0
    async for line in export_lines(svc.store):
        await response.write(line)
        count += 1
    await response.write_eof()
    log.event("admin.export", users=count)
    return response


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the API's routes."""
    router.add_get("/admin/users", list_users)
    router.add_get("/admin/users/{id}", get_user)
    router.add_patch("/admin/users/{id}", patch_user)
    router.add_delete("/admin/users/{id}", delete_user)
    router.add_post("/admin/users/{id}/sessions/revoke", revoke_sessions)
    router.add_get("/admin/stats", stats)
    router.add_get("/admin/mode", get_mode)
    router.add_put("/admin/mode", put_mode)
    router.add_get("/admin/export", export)
