"""bench/locustfile.py runs headless against ``authshim serve`` in front of the legacy stub."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench import mixed
from bench.procs import authshim, free_port, python, started
from bench.seed import (
    Argon2,
    mail_folder,
    seed_sqlite,
    shared_hash,
    write_config,
    write_csv,
)

CHEAP = Argon2(time_cost=1, memory_cost=64, parallelism=1)


@pytest.mark.slow
def test_locustfile_mix_makes_requests_without_failures(tmp_path: Path) -> None:
    """Every user class of the locustfile logs in, browses or resets a password (following the
    mailed link to the end), and nothing fails unexpectedly."""
    legacy_port, port = free_port(), free_port()
    store = tmp_path / "authshim.db"
    seed_sqlite(store, 50, shared_hash(CHEAP))
    users = write_csv(tmp_path / "users.csv", migrated=50, unmigrated=500)
    config = write_config(
        tmp_path / "authshim.toml", port=port, upstream=f"http://127.0.0.1:{legacy_port}",
        store=f"sqlite:///{store}", argon2=CHEAP,
    )  # fmt: skip
    legacy = python("-m", "bench.stubs", "--port", str(legacy_port), "--login-delay", "0.01")
    with (
        started(legacy, legacy_port, tmp_path / "legacy.log"),
        started(authshim(config, 1), port, tmp_path / "authshim.log"),
    ):
        done = mixed.locust(
            f"http://127.0.0.1:{port}", users, seconds=6, users=20, out=tmp_path / "locust",
            mail=mail_folder(tmp_path),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stats = mixed.stats(tmp_path / "locust")
    assert int(stats["Aggregated"]["Request Count"]) > 50
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
    names = " ".join(stats)
    for kind in ("[first login]", "[migrated]", "[wrong,", "/page/[n]"):
        assert kind in names, f"no {kind} requests in {sorted(stats)}"
    # A reset user's first turn goes the whole way, for an unmigrated user.
    for name in (
        "POST /accounts/password_reset/ [unmigrated]",
        "MAIL reset link",
        "GET /.authshim/reset [page]",
        "POST /.authshim/reset [new password]",
        "POST /accounts/login/ [after reset]",
    ):
        made = int(stats.get(name, {}).get("Request Count", 0))
        assert made > 0, f"no {name!r} in {sorted(stats)}"
    with sqlite3.connect(store) as db:
        (by_reset,) = db.execute("SELECT count(*) FROM users WHERE source = 'reset'").fetchone()
    assert by_reset > 0, "no user was migrated by a password reset"
