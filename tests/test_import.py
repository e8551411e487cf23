"""`authshim import` (store/importing.py, proxy/commands/importer.py): the bulk import of
legacy users, and their first logins through a real proxy, which upgrade them to argon2id."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import bcrypt
import orjson
import pytest

from proxy.cli import main
from store.base import NewUser, Store
from store.hashes import Hashes
from store.hashes.phpass import crypt_private
from store.importing import run_import
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import StartProxy

PHPASS = crypt_private(b"pw", "$P$BsaltSALT", "md5")  # one cheap legacy hash for the bulk


def record(n: int, *, hash_value: str = PHPASS, **extra: Any) -> dict[str, Any]:
    """One Auth0 bulk-import object."""
    return {
        "user_id": str(n),
        "email": f"user{n}@example.com",
        "username": f"user{n}",
        "given_name": f"User {n}",
        "custom_password_hash": {"algorithm": "phpass", "hash": {"value": hash_value}},
        **extra,
    }


def write_ndjson(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


class Interrupted(Exception):
    """Raised from the progress callback: the import stops between two batches."""


@pytest.mark.slow
async def test_100k_users_interrupted_resumed_nothing_doubled_migrated_kept(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    """100,000 users import in batches; an import cut short and run again doubles nobody, and
    a user who migrated or changed their password meanwhile is not overwritten."""
    records = [record(n) for n in range(100_000)]
    hashes = Hashes()

    def stop(read: int) -> None:
        if read >= 40_000:
            raise Interrupted()

    with pytest.raises(Interrupted):
        await run_import(store, iter(records), hashes, batch=5000, progress=stop)
    assert await store.count_users() == 40_000
    logged_in = await store.find_user("user7")
    assert logged_in is not None
    assert await store.upgrade_password(logged_in.id, PHPASS, "$argon2id$upgraded")
    reset = await store.find_user("user8")
    assert reset is not None
    await store.set_password(reset.id, "$argon2id$reset")
    # Not imported yet, captured by a legacy login meanwhile.
    await store.insert_user(
        NewUser("user99999@example.com", "user99999", "$argon2id$captured", {}, "99999", "login")
    )

    # The legacy table changed meanwhile: every user has a new hash now.
    new_hash = crypt_private(b"new", "$P$BsaltSALT", "md5")
    changed = [record(n, hash_value=new_hash) for n in range(100_000)]
    path = write_ndjson(tmp_path / "users.ndjson", changed)
    args = ["import", str(path), "--store", store_url, "--json", "--batch", "5000"]
    assert await asyncio.to_thread(main, args) == 0  # the command runs its own event loop
    assert await store.count_users() == 100_000
    assert await store.count_by_source() == {"import": 99_999, "login": 1}
    for name, kept in (("user7", "$argon2id$upgraded"), ("user8", "$argon2id$reset"),
                       ("user99999", "$argon2id$captured")):  # fmt: skip
        user = await store.find_user(name)
        assert user is not None and user.password_hash == kept
    other = await store.find_user("user12345")
    assert other is not None and other.password_hash != PHPASS  # brought over what changed
    assert other.profile == {"given_name": "User 12345"}

    again = await run_import(store, iter(changed), hashes, batch=5000)
    assert (again.inserted, again.updated) == (0, 0)


async def test_dry_run_reports_formats_and_refusals(
    store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run writes nothing and reports users by hash format, how many are verifiable,
    and how many the import rules refuse, by reason."""
    bcrypt_hash = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    records = [
        record(1),
        record(2, hash_value=bcrypt_hash),
        record(3, email="not-an-email"),
        record(4, blocked=True),
        record(5, hash_value="what-is-this"),
        {"user_id": "6", "email": "six@example.com"},
        record(1),  # twice in the file
        {**record(7), "custom_password_hash": {"algorithm": "recipe:nope", "hash": {"value": "x"}}},
    ]
    path = write_ndjson(tmp_path / "users.ndjson", records)
    with path.open("ab") as handle:
        handle.write(b"{not json\n\n")
    args = ["import", str(path), "--store", store_url, "--dry-run", "--json"]
    assert await asyncio.to_thread(main, args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True
    assert (report["read"], report["verifiable"]) == (9, 2)
    assert report["formats"] == {"bcrypt": 1, "phpass": 1}
    assert report["refused"] == {
        "bad_email": 1, "blocked": 1, "unknown_hash_format": 1, "no_password_hash": 1,
        "duplicate_in_file": 1, "unknown_recipe": 1, "not_an_object": 1,
    }  # fmt: skip
    assert await store.count_users() == 0


async def test_auth0_bulk_json_array(store: Store, store_url: str, tmp_path: Path) -> None:
    """Auth0's bulk-import file (one JSON array), with a salted sha256 custom_password_hash,
    imports with source import."""
    salted = hashlib.sha256(b"NaCl" + b"pw").hexdigest()
    users = [
        {
            "email": "ann@example.com", "user_id": "a1", "user_metadata": {"plan": "gold"},
            "custom_password_hash": {
                "algorithm": "sha256",
                "hash": {"value": salted, "encoding": "hex",
                         "salt": {"value": "NaCl", "encoding": "utf8", "position": "prefix"}},
            },
        }
    ]  # fmt: skip
    path = tmp_path / "auth0.json"
    path.write_text(json.dumps(users))
    assert await asyncio.to_thread(main, ["import", str(path), "--store", store_url]) == 0
    ann = await store.find_user("ann@example.com")
    assert ann is not None and ann.source == "import" and ann.legacy_id == "a1"
    assert ann.profile == {"plan": "gold"}
    assert Hashes().verify(ann.password_hash, "pw")


def _formats() -> dict[str, str]:
    """A stored hash of "s3cret pw" in each format, made by the format's own definition."""
    pw = b"s3cret pw"
    salt = b"0123456789abcdef"
    b64 = lambda raw: base64.b64encode(raw).decode().rstrip("=")  # noqa: E731
    from argon2.low_level import Type, hash_secret

    from store.hashes.crypt import sha_crypt

    asp = b"\x01" + (1).to_bytes(4, "big") + (1000).to_bytes(4, "big") + (16).to_bytes(4, "big")
    asp += salt + hashlib.pbkdf2_hmac("sha256", pw, salt, 1000, 32)
    bc = bcrypt.hashpw(pw, bcrypt.gensalt(4)).decode()
    wp = bcrypt.hashpw(base64.b64encode(_wp(pw)), bcrypt.gensalt(4)).decode()  # WordPress 6.8
    return {
        "django": "pbkdf2_sha256$1000$NaCl$"
        + base64.b64encode(hashlib.pbkdf2_hmac("sha256", pw, b"NaCl", 1000)).decode(),
        "bcrypt": bc.replace("$2b$", "$2y$"),
        "wordpress": "$wp" + wp.replace("$2b$", "$2y$"),
        "phpass": crypt_private(pw, "$P$BsaltSALT", "md5"),
        "drupal7": crypt_private(pw, "$S$CsaltSALT", "sha512")[:55],
        "sha512_crypt": "$6$saltsalt$" + sha_crypt(pw, b"saltsalt", 5000, "sha512"),
        "ldap": "{SSHA}" + base64.b64encode(hashlib.sha1(pw + b"salt").digest() + b"salt").decode(),
        "aspnet": base64.b64encode(asp).decode(),
        "pbkdf2_phc": f"$pbkdf2-sha256$i=1000,l=32${b64(salt)}$"
        + b64(hashlib.pbkdf2_hmac("sha256", pw, salt, 1000)),
        "argon2i": hash_secret(
            pw, salt, time_cost=1, memory_cost=64, parallelism=1, hash_len=32, type=Type.I
        ).decode(),
    }


def _wp(pw: bytes) -> bytes:
    import hmac

    return hmac.new(b"wp-sha384", pw, hashlib.sha384).digest()


async def test_imported_users_log_in_locally_with_each_format_and_are_upgraded(
    start_proxy: StartProxy, legacy: FakeLegacy
) -> None:
    """An imported user of every format logs in through the proxy without the legacy app,
    is upgraded to argon2id at once (outcome upgraded), then logs in with argon2id; a wrong
    password is refused; an operator's recipe works the same."""
    inner = hashlib.sha1(b"s3cret pw").hexdigest()
    recipe_hash = hashlib.sha1(b"NaCl" + inner.encode()).hexdigest()
    test_hash = hashlib.sha1(b"S" + hashlib.sha1(b"t").hexdigest().encode()).hexdigest()
    recipe = {
        "name": "shop", "steps": ["sha1", "hex", "concat salt value", "sha1", "hex"],
        "test": {"password": "t", "salt": "S", "hash": test_hash},
    }  # fmt: skip
    proxy = await start_proxy(
        lambda raw: raw.update(hashes={"recipe": [recipe]}, limits={"enabled": False})
    )
    formats = _formats()
    records = [record(i, hash_value=value) for i, value in enumerate(formats.values())]
    records.append({
        **record(99),
        "custom_password_hash": {
            "algorithm": "recipe:shop", "hash": {"value": recipe_hash, "salt": {"value": "NaCl"}}
        },
    })  # fmt: skip
    report = await run_import(proxy.svc.store, iter(records), proxy.svc.passwords.legacy)
    assert report.inserted == len(formats) + 1, report.as_dict()

    for n in [*range(len(formats)), 99]:
        name = f"user{n}"
        proxy.client.cookie_jar.clear()
        wrong = await proxy.form_login(name, "s3cret pw!")
        assert wrong.headers["Location"] == "/accounts/login/?error=1", name
        proxy.client.cookie_jar.clear()
        right = await proxy.form_login(name, "s3cret pw")
        assert right.status == 302 and right.headers["Location"] == "/private/", name
        user = await proxy.svc.store.find_user(name)
        assert user is not None and user.password_hash.startswith("$argon2id$"), name
        assert user.login_count == 1 and user.source == "import"
        proxy.client.cookie_jar.clear()
        again = await proxy.form_login(name, "s3cret pw")
        assert again.headers["Location"] == "/private/", name
    assert legacy.logins() == []
    assert proxy.svc.counters.totals["login.upgraded"] == len(formats) + 1
