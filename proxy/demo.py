"""``authshim demo``: the demo legacy site, authshim in front of it on SQLite, and a guide."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy import log, ports
from proxy.admin.app import run_admin_site
from proxy.app import create_app
from proxy.config import Config, parse_config
from proxy.demo_site import DEMO_USERS, DemoSite, create_demo_site
from proxy.errors import ListenError


def demo_config(
    upstream: str, store_url: str, port: int, secret: str, admin_port: int = 8081
) -> Config:
    """The core example config, pointed at the demo site."""
    login_form = {
        "path": "/accounts/login/", "format": "form", "identifier": "username",
        "password": "password", "success": {"status": [302], "cookie": "sessionid"},
        "profile": {"fetch": "/api/me"}, "answer": {"redirect": "/private/", "next_param": "next"},
        "failure": {"redirect": "/accounts/login/?error=1"},
    }  # fmt: skip
    login_json = {
        "path": "/api/login", "format": "json", "identifier": "email", "password": "password",
        "success": {"status": [200], "json": "/ok"}, "profile": {"json": "/user"},
        "answer": {"json": {"ok": True, "user": "{profile}"}},
        "failure": {"status": 401, "json": {"error": "invalid credentials"}},
    }  # fmt: skip
    raw: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "upstream": {"url": upstream},
        "store": {"url": store_url},
        "migration": {"mode": "migrate", "validate": True},
        "login": [login_form, login_json],
        "profile": {"legacy_id": "/id", "email": "/email", "username": "/username"},
        "logout": {"path": "/accounts/logout/"},
        "session": {"cookie": "authshim", "secret": secret, "secure": False},
        "identity": {"X-Forwarded-User": "username", "X-Forwarded-Email": "email"},
        "admin": {"listen": f"127.0.0.1:{admin_port}"},
    }
    return parse_config(raw, {})


@dataclass
class Demo:
    """The running demo: both listeners and where the store is."""

    legacy: web.AppRunner
    proxy: web.AppRunner
    admin: web.AppRunner
    legacy_url: str
    proxy_url: str
    admin_url: str
    store_url: str

    async def close(self) -> None:
        await self.admin.cleanup()
        await self.proxy.cleanup()
        await self.legacy.cleanup()


async def start_demo(*, port: int, legacy_port: int, folder: Path, admin_port: int = 8081) -> Demo:
    """Start the demo site and authshim in front of it; port 0 picks a free port."""
    legacy = web.AppRunner(create_demo_site(DemoSite.seeded()), access_log=None)
    await legacy.setup()
    legacy_site = web.TCPSite(legacy, "127.0.0.1", legacy_port)
    await legacy_site.start()
    legacy_url = f"http://127.0.0.1:{_port(legacy)}"
    store_url = f"sqlite:///{folder / 'authshim.db'}"
    config = demo_config(legacy_url, store_url, port, secrets.token_urlsafe(32), admin_port)
    proxy = web.AppRunner(create_app(config), access_log=None)
    await proxy.setup()
    await web.TCPSite(proxy, "127.0.0.1", port).start()
    admin = await run_admin_site(proxy.app, config)
    return Demo(
        legacy,
        proxy,
        admin,
        legacy_url,
        f"http://127.0.0.1:{_port(proxy)}",
        f"http://127.0.0.1:{_port(admin)}",
        store_url,
    )


def _port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


def command_name() -> str:
    """How to run ``authshim`` from here: bare when the shell finds this one, else its path."""
    mine = os.path.join(sys.prefix, "bin", "authshim")
    found = shutil.which("authshim")
    if found and os.path.realpath(found) == os.path.realpath(mine):
        return "authshim"
    # The README's install does not activate the venv: name the script (relative when short).
    relative = os.path.relpath(mine)
    return shlex.quote(mine if relative.startswith("..") else relative)


def guide(demo: Demo) -> str:
    """What to try, printed when the demo starts."""
    authshim = command_name()
    users = "\n".join(f"    {u:<8} {p:<12} ({e})" for _, u, e, p, _ in DEMO_USERS)
    return f"""\
authshim demo is running.

  legacy site (direct): {demo.legacy_url}
  through authshim:     {demo.proxy_url}
  store:                {demo.store_url}

Log in at {demo.proxy_url}/accounts/login/ as one of:
{users}
The first login goes to the legacy site and is captured; the next is answered by authshim
alone, and {demo.proxy_url}/private/ shows the X-Forwarded-User header the site trusts.

JSON API:  curl -s {demo.proxy_url}/api/login -H 'Content-Type: application/json' \\
             -d '{{"email": "bob@example.com", "password": "builder123"}}'
Session:   {demo.proxy_url}/.authshim/session (200 with identity headers, or 401)
Dashboard: {demo.admin_url}/ (the admin listener: API under /admin/, metrics at /metrics)
Progress:  {authshim} stats --store {demo.store_url}
Users:     {authshim} users list --store {demo.store_url}
Mode:      {authshim} mode --store {demo.store_url}
Cut over:  {authshim} mode cutover --store {demo.store_url}

Press Ctrl-C to stop.
"""


def run_demo(*, port: int, legacy_port: int, admin_port: int, folder: str | None) -> int:
    """Run the demo until interrupted."""
    log.setup("info")
    try:
        ports.check_free([
            ("--port", "127.0.0.1", port), ("--legacy-port", "127.0.0.1", legacy_port),
            ("--admin-port", "127.0.0.1", admin_port),
        ])  # fmt: skip
    except ListenError as exc:
        print(f"authshim: {exc}", file=sys.stderr)
        return 1

    async def run() -> None:
        stop = asyncio.Event()
        # SIGTERM (a service manager, `kill`) stops as Ctrl-C does: the temporary folder and
        # its store are removed rather than left behind.
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        with tempfile.TemporaryDirectory(prefix="authshim-demo-") as tmp:
            demo = await start_demo(
                port=port,
                legacy_port=legacy_port,
                folder=Path(folder or tmp),
                admin_port=admin_port,
            )
            print(guide(demo), flush=True)
            try:
                await stop.wait()
            finally:
                await demo.close()

    asyncio.run(run())
    return 0
