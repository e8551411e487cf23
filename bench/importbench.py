"""``python -m bench.importbench``: the bulk import and the legacy hashes (issue 17).

- import rate: an NDJSON file of N users (phpass hashes, WordPress's table) through
  ``authshim import``'s code path (read, parse, check, batch insert), into SQLite and
  PostgreSQL, users/s; then the same file again (a re-run: nothing to write);
- verify time per legacy format at the cost its app ships with by default, beside argon2id
  at authshim's defaults (OWASP's m=19 MiB, t=2, p=1), one thread;
- the first-login upgrade: the padded legacy verify on the pool, the argon2id hash and the
  guarded ``upgrade_password``, per login.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import statistics
import tempfile
import time
from pathlib import Path

import bcrypt
import orjson
from argon2 import PasswordHasher

from store.base import Store
from store.factory import create_store
from store.hashes import Hashes
from store.hashes.crypt import sha_crypt
from store.hashes.phpass import crypt_private
from store.importing import read_records, run_import
from store.passwords import HashParams, PasswordPool

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test?schema=importbench"
PASSWORD = b"correct horse battery staple"


def write_file(path: Path, users: int) -> None:
    stored = crypt_private(PASSWORD, "$P$BsaltSALT", "md5")
    with path.open("wb") as out:
        for n in range(users):
            record = {
                "user_id": str(n), "email": f"user{n}@example.com", "username": f"user{n}",
                "given_name": f"User {n}",
                "custom_password_hash": {"algorithm": "phpass", "hash": {"value": stored}},
            }  # fmt: skip
            out.write(orjson.dumps(record) + b"\n")


async def import_rate(url: str, path: Path, batch: int) -> tuple[float, float, int]:
    store = create_store(url)
    await store.open()
    try:
        rates = []
        for _ in range(2):  # the first run inserts, the second finds nothing to write
            started = time.perf_counter()
            with path.open("rb") as handle:
                report = await run_import(
                    store, read_records(handle, orjson.loads), Hashes(), batch=batch
                )
            rates.append(report.read / (time.perf_counter() - started))
        return rates[0], rates[1], await store.count_users()
    finally:
        await _drop(store, url)
        await store.close()


async def _drop(store: Store, url: str) -> None:
    if url.startswith("postgresql"):
        pool = getattr(store, "_pool", None)
        if pool is not None:
            await pool.execute("DROP SCHEMA IF EXISTS importbench CASCADE")


def formats() -> dict[str, str]:
    """One hash per format, at the default cost of the app that writes it."""
    salt = b"0123456789abcdef"
    wp = base64.b64encode(hmac.new(b"wp-sha384", PASSWORD, hashlib.sha384).digest())
    pbkdf2 = hashlib.pbkdf2_hmac("sha256", PASSWORD, b"NaCl", 1_000_000)
    asp = b"\x01" + (2).to_bytes(4, "big") + (100_000).to_bytes(4, "big") + (16).to_bytes(4, "big")
    asp += salt + hashlib.pbkdf2_hmac("sha512", PASSWORD, salt, 100_000, 32)
    return {
        "argon2id (authshim, m=19456 t=2 p=1)": PasswordHasher(
            time_cost=2, memory_cost=19456, parallelism=1
        ).hash(PASSWORD),
        "django pbkdf2_sha256 (1,000,000)": "pbkdf2_sha256$1000000$NaCl$"
        + base64.b64encode(pbkdf2).decode(),
        "bcrypt cost 10 (PHP password_hash)": bcrypt.hashpw(PASSWORD, bcrypt.gensalt(10)).decode(),
        "bcrypt cost 12 (Django)": bcrypt.hashpw(PASSWORD, bcrypt.gensalt(12)).decode(),
        "wordpress 6.8 $wp$2y$ (cost 10)": "$wp"
        + bcrypt.hashpw(wp, bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$"),
        "phpass $P$ (8192)": crypt_private(PASSWORD, "$P$BsaltSALT", "md5"),
        "drupal 7 $S$ (32768)": crypt_private(PASSWORD, "$S$DsaltSALT", "sha512")[:55],
        "sha512-crypt (5000)": "$6$saltsalt$" + sha_crypt(PASSWORD, b"saltsalt", 5000, "sha512"),
        "aspnet identity v3 (100,000)": base64.b64encode(asp).decode(),
        "ldap {SSHA}": "{SSHA}"
        + base64.b64encode(hashlib.sha1(PASSWORD + b"salt").digest() + b"salt").decode(),
    }


def verify_ms(stored: str, samples: int) -> float:
    hashes = Hashes()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        assert hashes.verify(stored, PASSWORD.decode())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def upgrade_ms(url: str, samples: int) -> tuple[float, float]:
    """Median ms of a padded legacy verify on the pool, and of hash + upgrade_password."""
    from store.base import NewUser

    store = create_store(url)
    await store.open()
    pool = PasswordPool(HashParams(), workers=1)
    stored = crypt_private(PASSWORD, "$P$BsaltSALT", "md5")
    verify, upgrade = [], []
    try:
        for n in range(samples):
            user = await store.insert_user(
                NewUser(f"up{n}@example.com", None, stored, {}, None, "import")
            )
            started = time.perf_counter()
            await pool.verify(user.password_hash, PASSWORD.decode())
            middle = time.perf_counter()
            new = await pool.hash(PASSWORD.decode())
            assert await store.upgrade_password(user.id, stored, new)
            verify.append((middle - started) * 1000)
            upgrade.append((time.perf_counter() - middle) * 1000)
    finally:
        pool.close()
        await store.close()
    return statistics.median(verify), statistics.median(upgrade)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.importbench", description=__doc__)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--postgres", default=POSTGRES, help="PostgreSQL URL, or 'off'")
    p.add_argument("--samples", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.ndjson"
        write_file(path, args.users)
        targets: list[tuple[str, str]] = [("sqlite", f"sqlite:///{tmp}/import.db")]
        if args.postgres != "off":
            targets.append(("postgresql", args.postgres))
        for name, url in targets:
            first, again, count = asyncio.run(import_rate(url, path, args.batch))
            print(f"import {name}: {args.users} users, {first:,.0f} users/s;"
                  f" re-run {again:,.0f} users/s; {count} stored")  # fmt: skip
        print("verify, median ms, one thread:")
        for label, stored in formats().items():
            print(f"  {label:40} {verify_ms(stored, args.samples):8.1f}")
        verify, upgrade = asyncio.run(upgrade_ms(f"sqlite:///{tmp}/up.db", args.samples))
        print(f"first login: padded phpass verify {verify:.1f} ms, argon2id hash +"
              f" upgrade_password {upgrade:.1f} ms")


if __name__ == "__main__":
    main()
