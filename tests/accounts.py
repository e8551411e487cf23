"""Helpers for the reset, sign-up and password-change tests: config sections, the outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.fixtures.proxy import Proxy

LOOKUP_AUTH = "Bearer lookup-secret"


def accounts(
    outbox: Path,
    *,
    lookup: bool = True,
    signup_handler: str = "local",
    mail: dict[str, Any] | None = None,
    expires: str = "30m",
    refresh: bool = False,
) -> Callable[[dict[str, Any]], None]:
    """A config change adding the example's reset, mail, sign-up, password-change and policy
    sections (and [lookup] unless ``lookup=False``), pointed at the fake legacy app."""

    def change(raw: dict[str, Any]) -> None:
        upstream = raw["upstream"]["url"]
        if lookup:
            raw["lookup"] = {
                "by_email": f"{upstream}/internal/users?email={{email}}",
                "by_username": f"{upstream}/internal/users?username={{username}}",
                "headers": {"Authorization": LOOKUP_AUTH},
                "timeout": "2s",
            }
        raw["reset"] = {
            "request_path": "/accounts/password_reset/",
            "format": "form",
            "email": "email",
            "answer": {"redirect": "/accounts/password_reset/done/"},
            "link": "http://127.0.0.1:8080/.authshim/reset?token={token}",
            "expires": expires,
            "done": {"redirect": "/accounts/login/"},
            "confirm_path": "/accounts/reset/",
        }
        raw["mail"] = mail or {
            "transport": "file",
            "folder": str(outbox),
            "from": "noreply@example.com",
            "poll": "50ms",
            "retry_min": "100ms",
            "retry_max": "200ms",
        }
        raw["signup"] = {
            "path": "/accounts/signup/",
            "format": "form",
            "handler": signup_handler,
            "email": "email",
            "username": "username",
            "password": "password",
            "fields": ["first_name", "last_name"],
            "answer": {"redirect": "/private/"},
            "conflict": {"redirect": "/accounts/signup/?error=exists"},
        }
        if not lookup and signup_handler == "local":
            del raw["signup"]  # a local sign-up in mode migrate needs the look-up
        elif signup_handler == "upstream":
            raw["signup"]["success"] = {"status": [302], "cookie": "sessionid"}
            raw["signup"]["profile"] = {"fetch": "/api/me"}
        raw["password_change"] = {
            "path": "/accounts/password_change/",
            "format": "form",
            "old": "old_password",
            "new": "new_password1",
            "confirm": "new_password2",
            "answer": {"redirect": "/accounts/password_change/done/"},
            "failure": {"redirect": "/accounts/password_change/?error=1"},
        }
        raw["policy"] = {"min_length": 8, "max_length": 64}
        raw["profile"]["refresh_on_login"] = refresh

    return change


def read_mail(folder: Path) -> list[EmailMessage]:
    """The messages the file transport has written, oldest first."""
    if not folder.exists():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]


async def wait_for_mail(folder: Path, count: int = 1, seconds: float = 5.0) -> list[EmailMessage]:
    """Wait until ``count`` messages are in ``folder`` and return them."""
    for _ in range(int(seconds / 0.02)):
        messages = read_mail(folder)
        if len(messages) >= count:
            return messages
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} mail(s) in {folder}, found {len(read_mail(folder))}")


def token_of(message: EmailMessage) -> str:
    """The reset token in a mail's link."""
    body = message.get_content()
    match = re.search(r"/\.authshim/reset\?token=([A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


async def settle(proxy: Proxy, seconds: float = 10.0) -> None:
    """Wait for the work requests left behind: queued reset requests, profile refreshes."""
    await proxy.svc.background.drain()
    resets = proxy.svc.resets
    if resets is None:
        return
    for _ in range(int(seconds / 0.01)):
        if await resets.idle():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("reset requests are still queued")


async def post_form(
    proxy: Proxy, path: str, form: dict[str, str], **kwargs: Any
) -> tuple[int, str, str]:
    """POST a form as a same-site browser would; return status, Location and body."""
    headers = {"Origin": proxy.url("/").rstrip("/")}
    async with proxy.client.post(
        proxy.url(path), data=form, allow_redirects=False, headers=headers, **kwargs
    ) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def request_reset(proxy: Proxy, address: str) -> tuple[int, str]:
    """Ask for a reset of ``address``; wait for the work behind it; return status and Location."""
    status, location, _ = await post_form(proxy, "/accounts/password_reset/", {"email": address})
    await settle(proxy)
    return status, location


async def confirm_reset(
    proxy: Proxy, token: str, password: str, *, as_json: bool = False
) -> tuple[int, str, str]:
    """POST the new password to authshim's reset page (form or JSON)."""
    if as_json:
        async with proxy.client.post(
            proxy.url("/.authshim/reset"), json={"token": token, "password": password}
        ) as response:
            return response.status, "", await response.text()
    return await post_form(
        proxy, "/.authshim/reset", {"token": token, "password": password, "password2": password}
    )
