"""nginx from Debian's packages, twice: the fast stub upstream, and the peer proxy.

The upstream answers ``/small`` and ``/large`` from memory and disk, at a cost far below any
proxy in front of it. The peer proxies the same upstream with ``proxy_pass`` (keep-alive pool,
buffers in memory big enough for the large body, never a temporary file), and guards it with
``auth_request`` against authshim's ``/.authshim/session`` for the forward-auth scenario.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.procs import need, started

SMALL = b"x" * 100
LARGE_SIZE = 256 * 1024

_COMMON = """
{modules}
daemon off;
master_process on;
{user}
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  sendfile on;
  tcp_nopush on;
{servers}
}}
"""

_UPSTREAM = """
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {dir}/www;
    location = /small {{ default_type text/plain; return 200 "{small}"; }}
    location = /large {{ default_type application/octet-stream; }}
    location = /empty {{ return 204; }}
    location / {{ default_type text/plain; return 200 "{small}"; }}
  }}
"""

_PEER = """
  upstream stub {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  upstream authshim {{ server 127.0.0.1:{authshim}; keepalive 128; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_max_temp_file_size 0;
  proxy_buffer_size 16k;
  proxy_buffers 16 64k;
"""


def _write(folder: Path, servers: str, workers: int, modules: str = "") -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the bench's files
    conf = folder / "nginx.conf"
    conf.write_text(
        _COMMON.format(modules=modules, user=user, workers=workers, dir=folder, servers=servers)
    )
    return conf


@contextlib.contextmanager
def upstream(folder: Path, port: int, cores: Sequence[int]) -> Iterator[None]:
    """The fast stub upstream on ``port``, one worker per core in ``cores``."""
    nginx = need("nginx", "nginx-light")
    (folder / "www").mkdir(parents=True, exist_ok=True)
    (folder / "www" / "large").write_bytes(os.urandom(LARGE_SIZE))
    servers = _UPSTREAM.format(port=port, dir=folder, small=SMALL.decode())
    conf = _write(folder, servers, len(cores))
    argv = [nginx, "-c", str(conf), "-p", str(folder)]
    with started(argv, port, folder / "out.log", cores=cores):
        yield


@contextlib.contextmanager
def peer(
    folder: Path, *, port: int, auth_port: int, upstream: int, authshim: int, cores: Sequence[int]
) -> Iterator[None]:
    """The peer proxy: ``port`` proxies the upstream, ``auth_port`` adds auth_request."""
    nginx = need("nginx", "nginx-light")
    servers = _PEER.format(upstream=upstream, authshim=authshim)
    # auth_port: as the forward-auth scenario's uncached check of the main listener
    servers += forward_auth_servers({"plain": port, "main": auth_port})
    conf = _write(folder, servers, len(cores))
    argv = [nginx, "-c", str(conf), "-p", str(folder)]
    with started(argv, port, folder / "out.log", cores=cores):
        yield


# Forward-auth side by side (bench/forwardauth.py): as recipes/nginx-forward-auth does it, with
# the auth answer cached per session cookie, and without the cache; each case on a port of
# one nginx with one worker.
_AUTH_HTTP = """
  upstream stub {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  upstream authshim {{ server 127.0.0.1:{authshim}; keepalive 128; }}
  upstream lean {{ server 127.0.0.1:{lean}; keepalive 128; }}
  upstream lean_unix {{ server unix:{lean_unix}; keepalive 128; }}
  proxy_cache_path {cache} levels=1 keys_zone=authshim_auth:10m inactive=60s use_temp_path=off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_max_temp_file_size 0;
  proxy_buffer_size 16k;
  proxy_buffers 16 64k;
"""
_SERVER = """
  server {{
    listen 127.0.0.1:{port} backlog=4096;
{body}
  }}
"""
_GUARDED = """
    location / {{
      auth_request /_authshim;
      auth_request_set $user $upstream_http_x_forwarded_user;
      proxy_set_header X-Forwarded-User $user;
      proxy_set_header Connection "";  # a location's own proxy_set_header drops the inherited
      proxy_set_header Host $host;
      proxy_pass http://stub;
    }}
    location = /_authshim {{
      internal;
{check}
    }}
"""
_ASK = """
      proxy_pass http://{upstream}{path};
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
      proxy_set_header Cookie "authshim=$cookie_authshim";
"""
_CACHE = """
      proxy_cache authshim_auth;
      proxy_cache_key "authshim:$cookie_authshim";
      proxy_cache_lock on;
      proxy_ignore_headers Vary;
      open_file_cache max=10000 inactive=60s;
      open_file_cache_valid 60s;
"""
SESSION = "/.authshim/session"
# Each case's auth location: what is asked (and cached) before the page is proxied.
CHECKS = {
    "cached": _ASK.format(upstream="lean", path=SESSION) + _CACHE,
    "uncached": _ASK.format(upstream="lean", path=SESSION),
    "unix": _ASK.format(upstream="lean_unix", path=SESSION),
    "main": _ASK.format(upstream="authshim", path=SESSION),
    # The floors: a check answered by nginx within the subrequest, and one answered over TCP
    # at once by a C server (the stub's 204): what any check inside or beside nginx costs.
    "floor-subrequest": "      return 204;",
    "floor-c": _ASK.format(upstream="stub", path="/empty"),
}


def forward_auth_servers(ports: dict[str, int]) -> str:
    """One server block per case in ``ports``: plain, a ``CHECKS`` case, or token."""
    servers = []
    for case, port in ports.items():
        if case == "plain":
            body = "    location / { proxy_pass http://stub; }"
        elif case == "token":
            body = _TOKEN_LOCATION
        else:
            body = _GUARDED.format(check=CHECKS[case])
        servers.append(_SERVER.format(port=port, body=body))
    return "".join(servers)


# The signed-identity-token prototype: njs checks an HMAC-signed, expiring identity cookie
# with no subrequest at all (measured only; see docs/performance.md for why it is not shipped).
_TOKEN_HTTP = """
  js_import token from {dir}/token.js;
  js_set $token_user token.user;
"""
_TOKEN_LOCATION = """
    location / {
      if ($token_user = "") { return 401; }
      proxy_set_header X-Forwarded-User $token_user;
      proxy_set_header Connection "";
      proxy_pass http://stub;
    }
"""

TOKEN_JS = """
var crypto = require('crypto');
var KEY = 'TOKEN_KEY';
function user(r) {
  var value = r.variables.cookie_authshim_id;
  if (!value) { return ''; }
  var dot = value.indexOf('.');
  if (dot < 1) { return ''; }
  var body = value.slice(0, dot);
  var mac = crypto.createHmac('sha256', KEY).update(body).digest('base64url');
  if (mac !== value.slice(dot + 1)) { return ''; }
  var claims = Buffer.from(body, 'base64url').toString().split('|');
  if (Number(claims[1]) < Date.now() / 1000) { return ''; }
  return claims[0];
}
export default {user};
"""
NJS = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


@contextlib.contextmanager
def forward_auth(
    folder: Path,
    *,
    ports: dict[str, int],
    upstream: int,
    authshim: int,
    lean: int,
    lean_unix: str,
    cache: Path,
    cores: Sequence[int] | None,
    token_key: str | None,
) -> Iterator[int]:
    """One nginx worker serving each case on its port in ``ports``; yields the master's pid."""
    nginx = need("nginx", "nginx-light")
    folder.mkdir(parents=True, exist_ok=True)
    modules, http = "", _AUTH_HTTP.format(
        upstream=upstream, authshim=authshim, lean=lean, lean_unix=lean_unix, cache=cache
    )
    if token_key is not None and "token" in ports:
        (folder / "token.js").write_text(TOKEN_JS.replace("TOKEN_KEY", token_key))
        http += _TOKEN_HTTP.format(dir=folder)
        modules = f"load_module {NJS};"
    conf = _write(folder, http + forward_auth_servers(ports), 1, modules)
    argv = [nginx, "-c", str(conf), "-p", str(folder)]
    with started(argv, next(iter(ports.values())), folder / "out.log", cores=cores) as proc:
        yield proc.pid
