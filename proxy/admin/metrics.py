"""Request metrics on the proxy's request path, and ``GET /metrics`` in Prometheus text.

``Metrics.observe`` costs a counter bump and a histogram bucket per request (the dispatcher in
``proxy/app.py`` has looked the route up already); the text is only built when scraped.
Figures are per process: with ``--workers N`` the admin listener (one worker) reports its own
worker's requests, plus store-wide totals.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping

from aiohttp import web

from proxy.routes import PASSTHROUGH
from proxy.stats import Counters

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CLASSES = ("1xx", "1xx", "2xx", "3xx", "4xx", "5xx")
_UPSTREAM_FAILURES = (502, 504)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RouteStats:
    """One route's requests by status class and its latency histogram."""

    __slots__ = ("buckets", "count", "outcomes", "sum")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = dict.fromkeys(_CLASSES[1:], 0)
        self.buckets = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum = 0.0
        self.count = 0


class Metrics:
    """The process's request counters; ``answered`` and ``observe`` are all the request path
    calls (``proxy/app.py``)."""

    def __init__(self) -> None:
        self.routes: dict[str, RouteStats] = {PASSTHROUGH: RouteStats()}
        self.upstream_errors: dict[int, int] = dict.fromkeys(_UPSTREAM_FAILURES, 0)
        # Set once the app's services exist: upstream failures also go to the store's counters.
        self.counters: Counters | None = None

    def answered(self, response: web.StreamResponse) -> None:
        """Count authshim's own 502/504 answers (the forwarder's failure answer, a plain
        ``Response``); an upstream's relayed 502 is the legacy app's, not ours."""
        status = response.status
        if status in _UPSTREAM_FAILURES and type(response) is web.Response:
            self.upstream_errors[status] += 1
            if self.counters is not None:
                self.counters.add("upstream.error")

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        stats = self.routes.get(route)
        if stats is None:
            stats = self.routes[route] = RouteStats()
        stats.outcomes[_CLASSES[min(max(status // 100, 1), 5)]] += 1
        stats.buckets[bisect_left(BUCKETS, seconds)] += 1
        stats.sum += seconds
        stats.count += 1


METRICS = web.AppKey("metrics", Metrics)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _samples(name: str, label: str, items: Iterable[tuple[str, float]]) -> list[str]:
    return [f'{name}{{{label}="{_escape(key)}"}} {value}' for key, value in sorted(items)]


def render(
    metrics: Metrics,
    *,
    queue_depth: int,
    users_by_source: Mapping[str, int],
    events: Mapping[str, int],
    mode: str,
    readiness: float | None,
) -> str:
    """The Prometheus text exposition (version 0.0.4) of everything /metrics reports."""
    lines = _family(
        "authshim_requests_total", "counter", "Requests answered, by route and status class."
    )
    for route, stats in sorted(metrics.routes.items()):
        for outcome, n in stats.outcomes.items():
            lines.append(
                f'authshim_requests_total{{route="{_escape(route)}",outcome="{outcome}"}} {n}'
            )
    lines += _family(
        "authshim_request_duration_seconds", "histogram", "Time to answer a request, by route."
    )
    for route, stats in sorted(metrics.routes.items()):
        r = _escape(route)
        cumulative = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), stats.buckets, strict=True):
            cumulative += n
            lines.append(
                f'authshim_request_duration_seconds_bucket{{route="{r}",le="{bound}"}} {cumulative}'
            )
        lines.append(f'authshim_request_duration_seconds_sum{{route="{r}"}} {stats.sum}')
        lines.append(f'authshim_request_duration_seconds_count{{route="{r}"}} {stats.count}')
    lines += _family(
        "authshim_upstream_errors_total", "counter", "Requests the legacy app failed (502/504)."
    )
    errors = [(str(status), n) for status, n in metrics.upstream_errors.items()]
    lines += _samples("authshim_upstream_errors_total", "status", errors)
    lines += _family(
        "authshim_password_queue_depth", "gauge", "argon2id operations running or queued."
    )
    lines.append(f"authshim_password_queue_depth {queue_depth}")
    lines += _family("authshim_users", "gauge", "Users in the store, by source.")
    lines += _samples("authshim_users", "source", users_by_source.items())
    lines += _family("authshim_migrated_users", "gauge", "Users in the store (migrated).")
    lines.append(f"authshim_migrated_users {sum(users_by_source.values())}")
    lines += _family("authshim_events_total", "counter", "Login and capture outcomes.")
    lines += _samples("authshim_events_total", "name", events.items())
    lines += _family("authshim_mode", "gauge", "1 for the current migration mode.")
    lines += [f'authshim_mode{{mode="{m}"}} {int(m == mode)}' for m in ("migrate", "cutover")]
    if readiness is not None:
        lines += _family(
            "authshim_cutover_readiness_ratio", "gauge",
            "Share of recently active login identifiers already migrated.",
        )  # fmt: skip
        lines.append(f"authshim_cutover_readiness_ratio {readiness}")
    return "\n".join(lines) + "\n"
