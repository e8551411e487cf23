"""bench/locustfile.py runs headless against ``authshim serve`` in front of the legacy stub."""

from __future__ import annotations

import csv
import sqlite3
import sys
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
from proxy.demo_site import DEMO_USERS


def authshim_cli() -> list[str]:
    return [sys.executable, "-m", "proxy.cli"]


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


DEMO_CONFIG = """
[session]
cookie = "authshim"

[[login]]
path = "/accounts/login/"
format = "form"
identifier = "username"
password = "password"
"""


@pytest.mark.slow
def test_site_locustfile_against_the_demo_without_failures(tmp_path: Path) -> None:
    """bench/sitelocust.py reads the login route from a config and users from a CSV, and runs
    first logins, migrated logins, wrong passwords and page views against `authshim demo`
    with no failures."""
    port, legacy_port, admin_port = free_port(), free_port(), free_port()
    (tmp_path / "authshim.toml").write_text(DEMO_CONFIG)
    with (tmp_path / "users.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["login", "password"])
        writer.writerows((name, password) for _, name, _, password, _ in DEMO_USERS)
    demo = [*authshim_cli(), "demo", "--port", str(port), "--legacy-port", str(legacy_port),
            "--admin-port", str(admin_port), "--dir", str(tmp_path / "demo")]  # fmt: skip
    with started(demo, port, tmp_path / "demo.log"):
        done = mixed.locust(
            f"http://127.0.0.1:{port}", tmp_path / "users.csv", seconds=8, users=12,
            out=tmp_path / "locust", locustfile="sitelocust.py",
            env={"AUTHSHIM_CONFIG": str(tmp_path / "authshim.toml"),
                 "AUTHSHIM_LOCUST_USERS": str(tmp_path / "users.csv"),
                 "AUTHSHIM_LOCUST_PAGES": "/,/private/"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    stats = mixed.stats(tmp_path / "locust")
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats
    for name in ("[first login]", "[migrated]", "[wrong password]", "/private/ [page]"):
        assert any(name in key for key in stats), f"no {name} in {sorted(stats)}"
    first = stats["POST /accounts/login/ [first login]"]
    assert int(first["Request Count"]) == len(DEMO_USERS)  # each row's first login, once
