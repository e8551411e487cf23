"""The migration at a glance, from the store alone: what ``/admin/stats``, the dashboard and
``authshim stats`` show. Every replica's counters end up in the store, so all agree.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from proxy.readiness import day_before
from store.base import Store, utc_day

# Login outcomes (proxy/flows/login.py) by who answered them.
LOCAL = ("local_ok", "rehashed", "upgraded", "local_failed", "blocked", "unknown_refused")
FORWARDED = ("captured", "legacy_ok", "legacy_refused", "forwarded_unread", "upstream_error")


def _day_start(day: str) -> float:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()


def _grouped(totals: Counter[str], prefix: str) -> dict[str, int]:
    return {
        name.removeprefix(prefix): n
        for name, n in sorted(totals.items())
        if name.startswith(prefix)
    }


async def gather(store: Store, *, days: int, readiness_days: int, mode: str) -> dict[str, Any]:
    """The stats document: users, migrated per day, outcomes, readiness and the mode."""
    today = utc_day()
    first = day_before(days - 1, today)
    by_source = await store.count_by_source()
    total = sum(by_source.values())
    per_day = await store.migrated_per_day(since=_day_start(first))
    cumulative = total - sum(per_day.values())
    series = []
    for i in range(days):
        day = day_before(days - 1 - i, today)
        cumulative += per_day.get(day, 0)
        series.append({"day": day, "migrated": per_day.get(day, 0), "cumulative": cumulative})

    totals: Counter[str] = Counter()
    for (_, name), n in (await store.counters(since=first)).items():
        totals[name] += n
    logins = _grouped(totals, "login.")
    active, migrated = await store.login_readiness(since_day=day_before(readiness_days - 1, today))
    return {
        "mode": mode,
        "days": days,
        "users": {"total": total, "by_source": dict(sorted(by_source.items()))},
        "migrated_per_day": series,
        "logins": {
            "local": sum(logins.get(k, 0) for k in LOCAL),
            "forwarded": sum(logins.get(k, 0) for k in FORWARDED),
            "by_outcome": logins,
        },
        "captures_rejected": _grouped(totals, "capture.rejected."),
        "resets": _grouped(totals, "reset."),
        "signups": _grouped(totals, "signup."),
        "upstream_errors": totals.get("upstream.error", 0),
        "readiness": {
            "days": readiness_days,
            "active": active,
            "migrated": migrated,
            "share": round(migrated / active, 4) if active else None,
        },
    }
