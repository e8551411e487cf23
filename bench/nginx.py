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
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://stub; }}
  }}
  server {{
    listen 127.0.0.1:{auth_port} backlog=4096;
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
      proxy_pass http://authshim/.authshim/session;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
    }}
  }}
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
    servers = _PEER.format(port=port, auth_port=auth_port, upstream=upstream, authshim=authshim)
    conf = _write(folder, servers, len(cores))
    argv = [nginx, "-c", str(conf), "-p", str(folder)]
    with started(argv, port, folder / "out.log", cores=cores):
        yield


# Forward-auth side by side (bench/forwardauth.py): as recipes/nginx-forward-auth does it, with
# the auth answer cached per session cookie, and without the cache.
_AUTH = """
  upstream stub {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  upstream authshim {{ server 127.0.0.1:{authshim}; keepalive 128; }}
  proxy_cache_path {dir}/auth-cache levels=1 keys_zone=authshim_auth:10m inactive=60s
                   use_temp_path=off;
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_max_temp_file_size 0;
  proxy_buffer_size 16k;
  proxy_buffers 16 64k;
  server {{
    listen 127.0.0.1:{plain} backlog=4096;
    location / {{ proxy_pass http://stub; }}
  }}
  server {{
    listen 127.0.0.1:{cached} backlog=4096;
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
      proxy_pass http://authshim/.authshim/session;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
      proxy_set_header Cookie "authshim=$cookie_authshim";
      proxy_cache authshim_auth;
      proxy_cache_key "authshim:$cookie_authshim";
      proxy_cache_lock on;
      proxy_ignore_headers Vary;
    }}
  }}
  server {{
    listen 127.0.0.1:{uncached} backlog=4096;
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
      proxy_pass http://authshim/.authshim/session;
      proxy_method GET;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
      proxy_set_header Cookie "authshim=$cookie_authshim";
    }}
  }}
{token}
"""

# The signed-identity-token prototype: njs checks an HMAC-signed, expiring identity cookie
# with no subrequest at all (measured only; see docs/performance.md for why it is not shipped).
_TOKEN = """
  js_import token from {dir}/token.js;
  js_set $token_user token.user;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      if ($token_user = "") {{ return 401; }}
      proxy_set_header X-Forwarded-User $token_user;
      proxy_set_header Connection "";
      proxy_pass http://stub;
    }}
  }}
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
    cores: Sequence[int] | None,
    token_key: str | None,
) -> Iterator[None]:
    """One nginx worker serving ``ports``: plain, cached, uncached (and token, with njs)."""
    nginx = need("nginx", "nginx-light")
    folder.mkdir(parents=True, exist_ok=True)
    token, modules = "", ""
    if token_key is not None and "token" in ports:
        (folder / "token.js").write_text(TOKEN_JS.replace("TOKEN_KEY", token_key))
        token = _TOKEN.format(dir=folder, port=ports["token"])
        modules = f"load_module {NJS};"
    servers = _AUTH.format(
        dir=folder, upstream=upstream, authshim=authshim, token=token,
        plain=ports["plain"], cached=ports["cached"], uncached=ports["uncached"],
    )  # fmt: skip
    conf = _write(folder, servers, 1, modules)
    argv = [nginx, "-c", str(conf), "-p", str(folder)]
    with started(argv, ports["plain"], folder / "out.log", cores=cores):
        yield
