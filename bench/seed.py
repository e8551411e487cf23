"""What the bench seeds: authshim's config, migrated users in the store, the users CSV.

Migrated users are ``m1..mN@bench.test``; unmigrated users (known only to the legacy stub)
are ``u1..uN@bench.test``. Every user's password is ``bench.stubs.PASSWORD``, so migrated users
share one argon2id hash made at the configured parameters: a verify costs the same whatever
the password, and seeding a million users then takes seconds rather than hours.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher, Type

from bench.stubs import DOMAIN, PASSWORD, WRONG_PASSWORD
from store.factory import create_store, split_schema

CSV_COLUMNS = ("kind", "email", "username", "password", "wrong_password")
SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
# Seeded users migrated a day before the run, as real ones did over time: not "just now",
# which authshim's loader of who has migrated (proxy/known.py) re-reads every poll for a minute.
MIGRATED_AGO = 86400.0


@dataclass(frozen=True)
class Argon2:
    """argon2id parameters, as in ``[passwords]``."""

    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1

    def hasher(self) -> PasswordHasher:
        return PasswordHasher(
            time_cost=self.time_cost,
            memory_cost=self.memory_cost,
            parallelism=self.parallelism,
            type=Type.ID,
        )


def write_config(
    path: Path,
    *,
    port: int,
    upstream: str,
    store: str,
    argon2: Argon2,
    queue_limit: int = 64,
    hash_workers: int = 0,
    failure_floor: str = "auto",
    forward_auth: str | None = None,
) -> Path:
    """An authshim config in front of the legacy stub (form and JSON login routes, password
    resets answered by authshim, their mail written to ``mail_folder(path.parent)``), with
    the lean forward-auth listener on ``forward_auth`` (``host:port`` or ``unix:PATH``)."""
    fa_listen = f"forward_auth_listen = {json.dumps(forward_auth)}" if forward_auth else ""
    s = json.dumps
    legacy = upstream.rstrip("/")
    path.write_text(
        f"""
[server]
listen = {s(f"127.0.0.1:{port}")}
# The load generators send X-Forwarded-For, one address per simulated client, so that the
# brute-force limits count per client as they do behind a real load balancer.
trusted_proxies = ["127.0.0.1"]

[upstream]
url = {s(upstream)}

[store]
url = {s(store)}

[[login]]
path = "/accounts/login/"
format = "form"
identifier = "username"
password = "password"
success = {{ status = [302], cookie = "sessionid" }}
profile = {{ fetch = "/api/me" }}
answer = {{ redirect = "/", next_param = "next" }}
failure = {{ redirect = "/accounts/login/?error=1" }}

[[login]]
path = "/api/login"
format = "json"
identifier = "email"
password = "password"
success = {{ status = [200], json = "/ok" }}
profile = {{ json = "/user" }}
answer = {{ json = {{ ok = true, user = "{{profile}}" }} }}
failure = {{ status = 401, json = {{ error = "invalid credentials" }} }}
failure_floor = {s(failure_floor)}

# Password resets: the stub's look-up finds unmigrated users, so they are mailed a link and
# migrated when they choose a password; the mail goes to a folder (no mail server), where the
# locustfile reads the links (AUTHSHIM_BENCH_MAIL).
[lookup]
by_email = {s(legacy + "/internal/users?email={email}")}
by_username = {s(legacy + "/internal/users?username={username}")}
timeout = "5s"

[reset]
request_path = "/accounts/password_reset/"
format = "form"
email = "email"
answer = {{ redirect = "/accounts/password_reset/done/" }}
link = {s(f"http://127.0.0.1:{port}/.authshim/reset?token={{token}}")}
done = {{ redirect = "/accounts/login/" }}

[mail]
transport = "file"
folder = {s(str(mail_folder(path.parent)))}
from = {s("noreply@" + DOMAIN)}

[session]
secret = {s(SECRET)}
secure = false
{fa_listen}

[identity]
"X-Forwarded-User" = "username"

[passwords]
time_cost = {argon2.time_cost}
memory_cost = {argon2.memory_cost}
parallelism = {argon2.parallelism}
workers = {hash_workers}
queue_limit = {queue_limit}
"""
    )
    return path


def mail_folder(work: Path) -> Path:
    """Where authshim writes the mail of a config written in ``work`` (one ``.eml`` each)."""
    return work / "mail"


def shared_hash(argon2: Argon2) -> str:
    return argon2.hasher().hash(PASSWORD)


def email(name: str) -> str:
    return f"{name}@{DOMAIN}"


async def _migrate(url: str) -> None:
    store = create_store(url)
    await store.open()
    await store.close()


def seed_sqlite(path: Path, users: int, phc: str) -> None:
    """Create the store at ``path`` holding migrated users m1..m``users``."""
    asyncio.run(_migrate(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # seeding only; authshim reopens with FULL
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " INSERT INTO users (id, legacy_id, email, username, username_key, password_hash,"
            " profile, source, created_at) SELECT lower(hex(randomblob(16))), 'm' || i,"
            " 'm' || i || ?, 'm' || i, 'm' || i, ?,"
            " json_object('id', 'm' || i, 'email', 'm' || i || ?, 'username', 'm' || i),"
            " 'import', CAST(strftime('%s', 'now') AS REAL) - ? FROM n",
            (users, "@" + DOMAIN, phc, "@" + DOMAIN, MIGRATED_AGO),
        )
    finally:
        conn.close()


async def seed_postgres(url: str, users: int, phc: str) -> None:
    """Recreate the store's schema at ``url`` holding migrated users m1..m``users``."""
    import asyncpg

    dsn, schema = split_schema(url)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    await _migrate(url)
    conn = await asyncpg.connect(dsn, server_settings={"search_path": f'"{schema}"'})
    try:
        await conn.execute(
            "INSERT INTO users (id, legacy_id, email, username, username_key, password_hash,"
            " profile, source, created_at) SELECT md5(i::text), 'm' || i, 'm' || i || $2,"
            " 'm' || i, 'm' || i, $3,"
            " jsonb_build_object('id', 'm' || i, 'email', 'm' || i || $2, 'username', 'm' || i),"
            " 'import', extract(epoch FROM now()) - $4 FROM generate_series(1, $1) AS i",
            users,
            "@" + DOMAIN,
            phc,
            MIGRATED_AGO,
        )
        await conn.execute("ANALYZE users")
    finally:
        await conn.close()


def write_csv(path: Path, *, migrated: int, unmigrated: int) -> Path:
    """The users CSV the locustfile reads: one row per user, columns ``CSV_COLUMNS``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for kind, prefix, count in (("migrated", "m", migrated), ("unmigrated", "u", unmigrated)):
            for i in range(1, count + 1):
                name = f"{prefix}{i}"
                out.writerow((kind, email(name), name, PASSWORD, WRONG_PASSWORD))
    return path
