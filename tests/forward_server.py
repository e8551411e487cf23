"""A forwarder in its own process, so a test can measure its memory alone.

Usage: ``python -m tests.forward_server UPSTREAM_URL``. Listens on 127.0.0.1 on a free port,
prints that port on one line, and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web

from proxy.config import UpstreamConfig
from proxy.forward import Forwarder, create_client_session
from proxy.headers import identity_names


async def serve(upstream_url: str) -> None:
    config = UpstreamConfig(url=upstream_url)
    session = create_client_session(config)
    forwarder = Forwarder(session, config, identity_strip=identity_names(["X-Forwarded-User"]))

    async def handler(request: web.Request) -> web.StreamResponse:
        return await forwarder.forward(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(runner.addresses[0][1], flush=True)

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
