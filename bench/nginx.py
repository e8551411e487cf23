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
      proxy_pass http://stub;
    }}
    location = /_authshim {{
      internal;
      proxy_pass http://authshim/.authshim/session;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
  }}
"""


def _write(folder: Path, servers: str, workers: int) -> Path:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "www"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the bench's files
    conf = folder / "nginx.conf"
    conf.write_text(_COMMON.format(user=user, workers=workers, dir=folder, servers=servers))
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
