"""wrk, the load generator: a Lua script per scenario, results back as JSON."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import need, pinned
from bench.stubs import DOMAIN, PASSWORD

# Every script ends by writing its summary, with latency percentiles in microseconds, as JSON.
_DONE = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local st = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then for k, v in pairs(s) do st[tostring(k)] = (st[tostring(k)] or 0) + v end end
  end
  local parts = {}
  for k, v in pairs(st) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  local f = io.open(OUT, "w")
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d,'
    .. ' "status_errors": %d, "timeouts": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d,'
    .. ' "statuses": {%s}}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, table.concat(parts, ", ")))
  f:close()
end
"""

_COUNT_STATUSES = """
statuses = {}
shed = 0
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  shed = 0
  if status == 503 or status == 429 then
    shed = tonumber(headers["Retry-After"] or "1") or 1
  end
end
"""

# A client that honours Retry-After: the connection waits as told before its next request.
# wrk calls delay() right after response() on the same connection, so one flag suffices.
RETRY_AFTER = """
function delay()
  return shed * 1000
end
"""

# JSON logins: migrated users m1..mN in turn, or (FRESH) users nobody has seen before, each
# from its own address (authshim trusts 127.0.0.1 as a proxy in the bench's config).
_LOGIN = """
local n = 0
local headers = {["Content-Type"] = "application/json"}
function request()
  n = n + 1
  local name
  if FRESH then
    name = string.format("%s%dx%d", PREFIX, tid, n)
  else
    name = string.format("m%d", (n * 7919 + tid * 104729) % USERS + 1)
  end
  local body = string.format('{"email": "%s@%s", "password": "%s"}', name, DOMAIN, PASSWORD)
  -- One client address per user, as behind a load balancer: limits count per client.
  local k = FRESH and (tid * 1000003 + n) or (n * 7919 + tid * 104729) % USERS + 1
  headers["X-Forwarded-For"] = string.format(
    "10.%d.%d.%d", math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
  return wrk.format("POST", PATH, headers, body)
end
"""

# A think time per connection: with C connections, about C * 1000 / DELAY_MS requests/s at most.
_DELAY = """
function delay()
  return DELAY_MS
end
"""


@dataclass(frozen=True)
class Result:
    """One wrk run: throughput, latency (milliseconds) and what went wrong."""

    requests: int
    seconds: float
    rps: float
    p50: float
    p90: float
    p99: float
    max: float
    errors: int  # connect/read/write errors and timeouts
    timeouts: int
    non_2xx: int  # answers other than 2xx or 3xx
    statuses: dict[str, int]
    mib_per_s: float

    def row(self) -> dict[str, object]:
        return dict(self.__dict__)


def merge(results: Sequence[Result]) -> Result:
    """Runs one after the other as one: counts added up, the median p50, the worst tails."""
    requests, seconds = sum(r.requests for r in results), sum(r.seconds for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    return Result(
        requests=requests, seconds=seconds, rps=requests / seconds,
        p50=statistics.median(r.p50 for r in results), p90=max(r.p90 for r in results),
        p99=max(r.p99 for r in results), max=max(r.max for r in results),
        errors=sum(r.errors for r in results), timeouts=sum(r.timeouts for r in results),
        non_2xx=sum(r.non_2xx for r in results), statuses=statuses,
        mib_per_s=sum(r.mib_per_s * r.seconds for r in results) / seconds,
    )  # fmt: skip


def login_script(path: str, *, users: int = 0, fresh_prefix: str | None = None) -> str:
    """Lua for JSON logins at ``path``: migrated users in turn, or first-time users."""
    consts = {
        "PATH": json.dumps(path),
        "USERS": str(max(users, 1)),
        "FRESH": "true" if fresh_prefix else "false",
        "PREFIX": json.dumps(fresh_prefix or ""),
        "DOMAIN": json.dumps(DOMAIN),
        "PASSWORD": json.dumps(PASSWORD),
    }
    return _consts(consts) + _LOGIN + _COUNT_STATUSES


def delay_script(delay_ms: int) -> str:
    return _DELAY.replace("DELAY_MS", str(delay_ms))


def _consts(consts: dict[str, str]) -> str:
    return "".join(f"{name} = {value}\n" for name, value in consts.items())


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    script: str = "",
    headers: Sequence[str] = (),
    cores: Sequence[int] | None = None,
    timeout: float = 30.0,
) -> Result:
    """Run wrk against ``url`` and return its summary."""
    wrk = need("wrk", "wrk")
    with tempfile.TemporaryDirectory(prefix="authshim-wrk-") as tmp:
        out = Path(tmp) / "out.json"
        lua = Path(tmp) / "script.lua"
        lua.write_text(f"OUT = {json.dumps(str(out))}\n" + script + _DONE)
        argv = [wrk, "-t", str(threads), "-c", str(max(connections, threads))]
        argv += ["-d", f"{max(int(seconds), 1)}s", "--timeout", f"{int(timeout)}s", "-s", str(lua)]
        for header in headers:
            argv += ["-H", header]
        done = subprocess.run(
            pinned(cores, [*argv, url]), capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        raw = json.loads(out.read_text())
    secs = raw["duration_us"] / 1e6
    return Result(
        requests=raw["requests"],
        seconds=round(secs, 2),
        rps=round(raw["requests"] / secs, 1),
        p50=raw["p50"] / 1000,
        p90=raw["p90"] / 1000,
        p99=raw["p99"] / 1000,
        max=raw["max"] / 1000,
        errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeouts"],
        timeouts=raw["timeouts"],
        non_2xx=raw["status_errors"],
        statuses=raw["statuses"],
        mib_per_s=round(raw["bytes"] / secs / 2**20, 1),
    )
