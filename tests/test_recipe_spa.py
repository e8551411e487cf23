"""The SPA recipe: a FastAPI token-login API behind authshim, alone and behind nginx."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.modes import write_mode
from tests.fixtures.proxy import Proxy
from tests.fixtures.realapps import RECIPES, free_port, recipe_config, running, stop, wait_for_port

pytestmark = pytest.mark.slow

SPA = RECIPES / "spa"
USERS = {"bob": "builder-22-spa", "carol": "singer-333-spa", "alice": "wonderland-1-spa"}
NGINX_MAIN = """daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/site.conf;
}}
"""


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    """The recipe's FastAPI app under uvicorn on a free port; yields its URL."""
    port = free_port()
    users = {name: [f"{name}@example.com", pw] for name, pw in USERS.items()}
    env = {**os.environ, "SPA_USERS": json.dumps(users)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=SPA, env=env,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def _config(api: str, tmp_path: Path) -> Any:
    return recipe_config("spa/authshim.toml", upstream=api, store_url=f"sqlite:///{tmp_path}/a.db")


async def token(client: aiohttp.ClientSession, base: str, user: str, pw: str) -> tuple[int, Any]:
    """The SPA's login: a form POST that answers a bearer token."""
    form = {"username": user, "password": pw}
    async with client.post(f"{base}/api/token", data=form) as response:
        return response.status, await response.json()


FORGED = {"X-Forwarded-User": "bob", "X-Forwarded-Email": "bob@example.com"}


async def get(
    client: aiohttp.ClientSession, url: str, bearer: str | None = None, forged: bool = False
) -> tuple[int, Any]:
    headers = dict(FORGED) if forged else {}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    async with client.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_identity_by_header_with_authshim_in_front(api: str, tmp_path: Path) -> None:
    """The token login is captured (profile fetched with the access_token), then answered by
    authshim; the API knows the user from X-Forwarded-User; the cut-over refuses the unmigrated."""
    async with running(_config(api, tmp_path)) as proxy:
        base = proxy.url("").rstrip("/")
        status, body = await token(proxy.client, base, "bob", USERS["bob"])
        assert status == 200 and body["token_type"] == "bearer" and len(body["access_token"]) > 20
        user = await proxy.svc.store.find_user("bob")
        assert user is not None and user.email == "bob@example.com" and user.legacy_id == "2"

        proxy.client.cookie_jar.clear()
        status, body = await token(proxy.client, base, "bob", USERS["bob"])
        assert (status, body["access_token"]) == (200, "authshim-session")
        status, notes = await get(proxy.client, f"{base}/api/notes", body["access_token"])
        assert (status, notes["owner"]) == (200, "bob")

        status, body = await token(proxy.client, base, "bob", "wrong")
        assert (status, body) == (401, {"detail": "Incorrect username or password"})
        anonymous = Proxy(proxy.server, aiohttp.ClientSession())
        async with anonymous.client:
            status, _ = await get(anonymous.client, f"{base}/api/notes", forged=True)
            assert status == 401  # SECURITY: a client's copy of the header is stripped

        await write_mode(proxy.svc.store, "cutover")
        await proxy.svc.modes.refresh()
        assert (await token(proxy.client, base, "alice", USERS["alice"]))[0] == 401
        assert (await token(proxy.client, base, "bob", USERS["bob"]))[0] == 200


@pytest.fixture
def nginx_site(tmp_path: Path) -> Iterator[Any]:
    """Start nginx with the recipe's site config pointed at ``api`` and ``authshim``."""
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (.ci/run installs nginx-light)")
    started: list[subprocess.Popen[bytes]] = []
    # nginx started by root serves files as `nobody`, who cannot read a checkout under a
    # private folder (/root, mktemp -d): it serves a world-readable copy of the files instead.
    served = Path(tempfile.mkdtemp(prefix="authshim-nginx-"))

    def start(api: str, authshim: str, static: Path = SPA / "static") -> str:
        port = free_port()
        root = served / f"static-{len(started)}"
        shutil.copytree(static, root)
        for path in [served, root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        site = (SPA / "nginx-site.conf").read_text()
        for old, new in [
            ("127.0.0.1:8081", f"127.0.0.1:{port}"),
            ("127.0.0.1:8080", authshim.removeprefix("http://")),
            ("127.0.0.1:8000", api.removeprefix("http://")),
            ("/srv/spa/static", str(root)),
        ]:
            assert old in site, old
            site = site.replace(old, new)
        (tmp_path / "site.conf").write_text(site)
        (tmp_path / "nginx.conf").write_text(NGINX_MAIN.format(dir=tmp_path))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        proc = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)])
        started.append(proc)
        wait_for_port(port, proc)
        return f"http://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for proc in started:
            stop(proc)
        shutil.rmtree(served)


async def test_nginx_serves_a_checkout_under_a_private_folder(
    tmp_path: Path, nginx_site: Any
) -> None:
    """The nginx test works from a checkout others cannot read (mode 0700, like /root)."""
    private = tmp_path / "private"
    shutil.copytree(SPA / "static", private / "checkout" / "static")
    private.chmod(0o700)
    site = nginx_site("http://127.0.0.1:9", "http://127.0.0.1:9", private / "checkout" / "static")
    async with aiohttp.ClientSession() as browser, browser.get(f"{site}/") as page:
        assert page.status == 200 and "<title>SPA</title>" in await page.text()


async def test_identity_by_forward_auth_behind_nginx(
    api: str, tmp_path: Path, nginx_site: Any
) -> None:
    """nginx sends the login through authshim and asks /.authshim/session before the API."""
    async with running(_config(api, tmp_path)) as proxy:
        site = nginx_site(api, proxy.url("").rstrip("/"))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(f"{site}/") as page:
                assert "<title>SPA</title>" in await page.text()
            status, body = await token(browser, site, "carol", USERS["carol"])
            assert status == 200 and await proxy.svc.store.find_user("carol") is not None
            legacy_token = body["access_token"]
            status, me = await get(browser, f"{site}/api/users/me")  # the cookie alone
            assert (status, me["username"]) == (200, "carol")

        async with aiohttp.ClientSession() as stranger:
            status, _ = await get(stranger, f"{site}/api/notes", forged=True)
            assert status == 401  # SECURITY: nginx replaces the client's copy
            status, notes = await get(stranger, f"{site}/api/notes", legacy_token)
            assert (status, notes["owner"]) == (200, "carol")  # no session: the token still works
