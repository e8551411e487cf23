"""Processes the bench starts: authshim, nginx, the legacy stub; cores, ports and memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Missing(RuntimeError):
    """A tool the bench needs is not installed."""


def need(tool: str, package: str) -> str:
    """The path of ``tool``, or ``Missing`` naming the Debian package that provides it."""
    # nginx lives in /usr/sbin, which a non-root PATH may leave out.
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        raise Missing(f"{tool} is not installed: apt-get install -y {package}")
    return path


@dataclass(frozen=True)
class Cores:
    """Which cores drive the load (client and stubs) and which run the proxy under test."""

    driver: tuple[int, ...]
    sut: tuple[int, ...]

    @classmethod
    def split(cls) -> Cores:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) == 1:
            return cls(tuple(cores), tuple(cores))
        half = len(cores) // 2
        return cls(tuple(cores[:half]), tuple(cores[half:]))

    @property
    def all(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.driver) | set(self.sut)))


def pinned(cores: Sequence[int] | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run on ``cores`` only (all cores when None)."""
    if cores is None:
        return list(argv)
    return ["taskset", "-c", ",".join(map(str, cores)), *argv]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_socket(path: str, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Wait until something accepts connections on the Unix socket ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
            probe.connect(path)
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on unix:{path} after {timeout} s")


@contextlib.contextmanager
def started(
    argv: Sequence[str], port: int, log: Path, *, cores: Sequence[int] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the block ends; it must listen on ``port`` first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            pinned(cores, argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    try:
        wait_port(port, proc)
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def authshim(config: Path, workers: int) -> list[str]:
    return python("-m", "proxy.cli", "serve", "--config", str(config), "--workers", str(workers))


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (taskset execs in place, so the pid is the program's)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_ticks() -> dict[int, int]:
    """CPU ticks (user + system) used so far by every process on the machine."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


def machine_busy() -> int:
    """Ticks every core spent running processes (user, nice, system) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[1]) + int(fields[2]) + int(fields[3])


@dataclass
class Sampler:
    """While a load runs: the RSS and CPU of a process tree (``pid``), and how much CPU
    processes outside the bench took meanwhile (other work on a shared machine skews figures)."""

    pid: int | None = None
    interval: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    cpu: float = 0.0  # cores used by the ``pid`` tree
    foreign: float = 0.0  # cores used by processes that are not the bench's
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._busy0, self._ticks0, self._t0 = machine_busy(), cpu_ticks(), time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        busy, ticks, wall = machine_busy(), cpu_ticks(), time.monotonic() - self._t0
        mine = set(tree(os.getpid()))
        used = {pid: t - self._ticks0.get(pid, 0) for pid, t in ticks.items()}
        # The machine's busy time less the bench's own processes: this also counts processes
        # that started and ended during the load, which no process listing would show.
        ours = sum(t for pid, t in used.items() if pid in mine)
        self.foreign = max(busy - self._busy0 - ours, 0) / CLOCK_TICKS / wall
        if self.pid is not None:
            self.cpu = sum(used.get(p, 0) for p in tree(self.pid)) / CLOCK_TICKS / wall

    def _run(self) -> None:
        start = time.monotonic()
        while self.pid is not None and not self._stop.wait(self.interval):
            self.samples.append((time.monotonic() - start, rss_kib(tree(self.pid))))

    @property
    def peak_mib(self) -> float | None:
        if not self.samples:
            return None
        return max(kib for _, kib in self.samples) / 1024
