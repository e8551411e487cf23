"""``authshim serve``: one process, or ``--workers N`` processes sharing the port.

With N > 1 the parent forks N workers before any event loop or thread exists. Each worker
binds the same address with SO_REUSEPORT, so the kernel spreads connections over them, and
runs the whole app (its own store connection, argon2 pool and upstream pool). The parent only
supervises: it forwards SIGTERM and SIGINT to the workers as SIGTERM for a clean shutdown,
restarts a worker that dies after it began serving, and gives up when one dies before (a port
in use or a store that cannot open would only die again). A worker whose parent is gone stops
by itself. uvloop is used when it is installed. Before any of it, ``ports.claimed`` refuses
addresses that another authshim (or any program) already serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager

from aiohttp import web

from proxy import log, ports
from proxy.admin.app import run_admin_site
from proxy.admin.metrics import METRICS
from proxy.app import SERVICES, create_app
from proxy.config import Config
from proxy.errors import ListenError
from proxy.forward_auth.listener import Listener, unix_socket
from proxy.forward_auth.listener import start as start_forward_auth

DRAIN_TIMEOUT = 15.0  # seconds requests in flight at SIGTERM get to be read and answered
SHUTDOWN_TIMEOUT = 2.0  # then: answers finish writing, handlers still running are cancelled
KILL_AFTER = DRAIN_TIMEOUT + 2 * SHUTDOWN_TIMEOUT + 10.0  # then a stuck worker is killed
BACKLOG = 1024  # aiohttp's 128 drops connections under a burst of new clients
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_WATCHED = {signal.SIGCHLD, *_STOP_SIGNALS}

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory() -> LoopFactory:
    """uvloop's event loop when uvloop is installed, else asyncio's own."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def serve(config: Config, *, workers: int = 1) -> int:
    """Run authshim until SIGTERM or SIGINT; return the exit status."""
    if workers < 1:
        raise ValueError("workers must be 1 or more")
    fa = config.session.forward_auth_listen
    for key, port in (("server.listen", config.server.port),
                      ("session.forward_auth_listen", fa.port if fa and not fa.path else None)):
        if workers > 1 and port == 0:
            # Each worker would bind its own random port: there would be no shared port.
            print(f"authshim: --workers needs a fixed port in {key}, not 0", file=sys.stderr)
            return 2
    try:
        # Held until serving ends: a second authshim on these addresses is refused, not let in.
        with ports.claimed(config), _forward_auth_socket(config) as forward_auth:
            return _serve_claimed(config, workers, forward_auth)
    except ListenError as exc:
        print(f"authshim: {exc}", file=sys.stderr)
        return 1


def _forward_auth_socket(config: Config) -> ContextManager[socket.socket | None]:
    """The forward-auth listener's Unix socket, when it has one, for every worker."""
    address = config.session.forward_auth_listen
    if address is None or address.path is None:
        return contextlib.nullcontext()
    return unix_socket(address.path)


def _serve_claimed(config: Config, workers: int, forward_auth: socket.socket | None) -> int:
    log.event(
        "serve",
        listen=f"{config.server.host}:{config.server.port}",
        upstream=config.upstream.url,
        workers=workers,
        loop=loop_factory().__module__.split(".")[0],
    )
    if workers == 1:
        return _run_worker(config, forward_auth=forward_auth)
    return _Supervisor(config, workers, forward_auth).run()


def _run_worker(
    config: Config,
    *,
    parent: int | None = None,
    ready: int | None = None,
    admin: bool = True,
    forward_auth: socket.socket | None = None,
) -> int:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(
            _worker(config, parent=parent, ready=ready, admin=admin, forward_auth=forward_auth)
        )
    return 0


async def _worker(
    config: Config,
    *,
    parent: int | None,
    ready: int | None,
    admin: bool,
    forward_auth: socket.socket | None = None,
) -> None:
    """Serve until told to stop: SIGTERM (and SIGINT when alone), or the parent's end.

    A supervised worker shares the port (SO_REUSEPORT) and, once it listens, writes a byte to
    the ``ready`` pipe: from then on its death is a crash to recover from, not a failed start.
    Only the ``admin`` worker binds the admin listener: a Prometheus scrape must always reach
    the same process, or its counters would seem to reset at random.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # A supervised worker leaves Ctrl-C to its parent, which passes it on as SIGTERM: a
    # terminal's SIGINT reaches the whole process group, and a second signal must not cut
    # the graceful shutdown short.
    for signum in _STOP_SIGNALS if parent is None else (signal.SIGTERM,):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    in_flight = _count_requests(runner)
    admin_runner: web.AppRunner | None = None
    fa_listener: Listener | None = None
    try:
        site = web.TCPSite(
            runner, config.server.host, config.server.port, backlog=BACKLOG,
            reuse_port=parent is not None,
        )  # fmt: skip
        await site.start()
        if config.session.forward_auth_listen is not None:
            fa_listener = await start_forward_auth(
                runner.app[SERVICES], config, runner.app[METRICS].observe,
                reuse_port=parent is not None, sock=forward_auth,
            )  # fmt: skip
        if admin and config.admin.enabled:
            admin_runner = await run_admin_site(runner.app, config)
        if ready is not None:
            os.write(ready, b"1")
            os.close(ready)
        while not stop.is_set():
            if parent is not None and os.getppid() != parent:
                log.event("worker.orphaned", pid=os.getpid())
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                pass
    finally:
        if fa_listener is not None:
            await fa_listener.stop()
        await _drain(runner, in_flight)
        if admin_runner is not None:
            await admin_runner.cleanup()
        await runner.cleanup()


class _InFlight:
    """How many requests the main listener's handlers are running, and when none is."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()


def _count_requests(runner: web.AppRunner) -> _InFlight:
    """Wrap the server's request handler to count the requests in flight (connections made
    later take the wrapped one)."""
    server = runner.server
    assert server is not None  # after setup()
    handle = server.request_handler
    in_flight = _InFlight()

    async def counted(request: web.BaseRequest) -> web.StreamResponse:
        in_flight.count += 1
        in_flight.idle.clear()
        try:
            return await handle(request)
        finally:
            in_flight.count -= 1
            if in_flight.count == 0:
                in_flight.idle.set()

    server.request_handler = counted
    return in_flight


async def _drain(runner: web.AppRunner, in_flight: _InFlight) -> None:
    """Refuse new connections, then let the requests in flight be read to the end and
    answered, for up to ``DRAIN_TIMEOUT``; ``runner.cleanup()`` does the rest.

    aiohttp's own shutdown stops reading open connections at once: a login whose body was
    still arriving waited out ``server.body_timeout`` and got 408. Here the connections are
    left alone until no handler runs (or the drain timeout passes), and only then closed.
    """
    for site in runner.sites:
        await site.stop()  # closes the listening socket only; connections stay open
    if in_flight.count:
        log.event("serve.draining", requests=in_flight.count)
        try:
            await asyncio.wait_for(in_flight.idle.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.event("serve.drain_timeout", requests=in_flight.count)


class _Supervisor:
    """Forks the workers and watches them; all state lives in this one parent process."""

    def __init__(self, config: Config, workers: int, forward_auth: socket.socket | None) -> None:
        self._config = config
        self._workers = workers
        self._forward_auth = forward_auth  # the Unix socket every worker accepts on
        self._children: dict[int, int] = {}  # pid -> read end of its readiness pipe
        self._admin_pid: int | None = None  # the worker that binds the admin listener
        self._stopping_since: float | None = None
        self._status = 0

    def run(self) -> int:
        # Signals are taken synchronously with sigtimedwait: no handler can run between
        # a check and a wait, and forked workers unblock them before anything else.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        try:
            for _ in range(self._workers):
                self._spawn()
            while self._children:
                received = signal.sigtimedwait(_WATCHED, 1.0)
                if received is not None and received.si_signo in _STOP_SIGNALS:
                    self._stop(f"signal {signal.Signals(received.si_signo).name}")
                self._reap()
                self._kill_stragglers()
        finally:
            self._stop("supervisor exiting")  # a no-op unless something above raised
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
        return self._status

    def _spawn(self) -> None:
        parent = os.getpid()
        admin = self._admin_pid is None
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                os.close(ready_r)
                for fd in self._children.values():
                    os.close(fd)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                status = _run_worker(
                    self._config, parent=parent, ready=ready_w, admin=admin,
                    forward_auth=self._forward_auth,
                )  # fmt: skip
            except BaseException as exc:  # a worker must never return into the parent's code
                log.event("worker.failed", pid=os.getpid(), error=f"{type(exc).__name__}: {exc}")
            finally:
                sys.stderr.flush()
                os._exit(status)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        self._children[pid] = ready_r
        if admin:
            self._admin_pid = pid
        log.event("worker.started", pid=pid, admin=admin)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            ready_r = self._children.pop(pid, None)
            if ready_r is None:
                continue
            if pid == self._admin_pid:
                self._admin_pid = None  # its replacement binds the admin listener again
            code = os.waitstatus_to_exitcode(wait_status)
            was_ready = _was_ready(ready_r)
            if self._stopping_since is not None:
                if code != 0:
                    log.event("worker.exited", pid=pid, code=code)
                    self._status = 1
                continue
            log.event("worker.died", pid=pid, code=code)
            if not was_ready:
                self._status = 1
                self._stop("a worker failed at start")
            else:
                self._spawn()

    def _stop(self, reason: str) -> None:
        if self._stopping_since is not None:
            return
        self._stopping_since = time.monotonic()
        log.event("serve.stopping", reason=reason, workers=len(self._children))
        for pid in self._children:
            _signal(pid, signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        since = self._stopping_since
        if since is None or time.monotonic() - since < KILL_AFTER:
            return
        for pid in self._children:
            log.event("worker.killed", pid=pid)
            _signal(pid, signal.SIGKILL)
        self._status = 1


def _was_ready(fd: int) -> bool:
    """Whether the worker wrote its ready byte; closes the pipe."""
    try:
        return os.read(fd, 1) == b"1"
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already gone; the next reap collects it
