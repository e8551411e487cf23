"""[legacy_db]: the legacy app's own database as a source (proxy/legacy_db), with the shipped
templates of recipes/legacy-db run against the real apps' tables: Django's auth_user migrated
by Django itself (SQLite and PostgreSQL), WordPress's wp_users/wp_usermeta on MariaDB with
hashes made by PHP, and Drupal 7's users table with published hashes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import main
from proxy.config import LookupConfig, ProfileMap, parse_config
from proxy.config.legacy_db import LegacyDbConfig, read_legacy_db
from proxy.config.login import read_profile_map
from proxy.config.reader import Reader, Secret
from proxy.errors import ConfigError, LookupFailed
from proxy.legacy_db import Source, create_legacy_db
from proxy.legacy_db.base import compile_template
from proxy.legacy_db.errors import LegacyDbUnavailable
from proxy.legacy_db.importing import import_from_db
from proxy.legacy_db.judge import DatabaseJudge, Verdict
from proxy.legacy_db.lookup import DatabaseLookup
from store.factory import create_store
from store.hashes import Hashes, identify, verify
from store.passwords import HashParams, PasswordPool
from tests.accounts import accounts, post_form
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import EXAMPLE, SECRET, StartProxy
from tests.fixtures.store import PG_DSN

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "legacy-db"
PHPASS_CLASS = Path("/usr/share/wordpress/wp-includes/class-phpass.php")
# Django's users: (username, email, password, active); "dave" has an unusable password.
DJANGO_USERS = [
    ("alice", "Alice@Example.com", "wonderland-1", True),
    ("bob", "bob@example.com", "builder-22", True),
    ("carol", "carol@example.com", "singer-333", False),
    ("erin", "erin@example.com", "erin-pass-4", True),
    ("frank", "frank@example.com", "frank-pass-5", True),
]
DJANGO_SCRIPT = """
import os, sys, django
from django.conf import settings
db = {"ENGINE": "django.db.backends." + os.environ["DJ_ENGINE"], "NAME": os.environ["DJ_NAME"]}
if os.environ["DJ_ENGINE"] == "postgresql":
    db.update(HOST="127.0.0.1", PORT="5432", USER="postgres",
              OPTIONS={"options": "-c search_path=" + os.environ["DJ_SCHEMA"]})
settings.configure(
    DATABASES={"default": db},
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher",
                      "django.contrib.auth.hashers.MD5PasswordHasher"],
    USE_TZ=True,
)
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth.models import User
for name, email, password, active in %r:
    User.objects.create_user(name, email, password, first_name=name.title(), is_active=active)
User.objects.create_user("dave", "dave@example.com", None)  # an unusable password
"""
WP_PASSWORDS = {"admin": "wp-admin-pass", "editor": "wp-editor-pass", "author": "wp-pass-ü"}
WP_PHP = r"""
require $argv[1];
$wp = new PasswordHash(8, true);
echo json_encode([
  'admin' => $wp->HashPassword($argv[2]),
  'editor' => $wp->HashPassword($argv[3]),
  // WordPress 6.8's wp_hash_password, written out (Debian's WordPress predates 6.8):
  'author' => '$wp' . password_hash(
      base64_encode(hash_hmac('sha384', $argv[4], 'wp-sha384', true)), PASSWORD_BCRYPT,
      ['cost' => 5]),
]);
"""
# WordPress's own definitions (wp-admin/includes/schema.php, single site).
WP_SCHEMA = [
    """CREATE TABLE wp_users (
    ID bigint(20) unsigned NOT NULL auto_increment,
    user_login varchar(60) NOT NULL default '',
    user_pass varchar(255) NOT NULL default '',
    user_nicename varchar(50) NOT NULL default '',
    user_email varchar(100) NOT NULL default '',
    user_url varchar(100) NOT NULL default '',
    user_registered datetime NOT NULL default '0000-00-00 00:00:00',
    user_activation_key varchar(255) NOT NULL default '',
    user_status int(11) NOT NULL default '0',
    display_name varchar(250) NOT NULL default '',
    PRIMARY KEY  (ID),
    KEY user_login_key (user_login),
    KEY user_nicename (user_nicename),
    KEY user_email (user_email)
    ) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci""",
    """CREATE TABLE wp_usermeta (
    umeta_id bigint(20) unsigned NOT NULL auto_increment,
    user_id bigint(20) unsigned NOT NULL default '0',
    meta_key varchar(255) default NULL,
    meta_value longtext,
    PRIMARY KEY  (umeta_id),
    KEY user_id (user_id),
    KEY meta_key (meta_key(191))
    ) DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci""",
]
# Drupal 7's users table (modules/user/user.install, the columns read) and published hashes.
DRUPAL_SCHEMA = """CREATE TABLE users (
    uid INTEGER NOT NULL DEFAULT 0 PRIMARY KEY, name VARCHAR(60) NOT NULL DEFAULT '',
    pass VARCHAR(128) NOT NULL DEFAULT '', mail VARCHAR(254) DEFAULT '',
    created INTEGER NOT NULL DEFAULT 0, status INTEGER NOT NULL DEFAULT 0)"""
DRUPAL_USERS = [
    (0, "", "", "", 0, 0),  # the anonymous user
    (1, "admin", "$S$D2sypG2KL6EjTo08zxDCAx4D3lcAQx7Tk.hydYvH/hEDiNfo2AHS", "a@d7.test", 1, 1),
    (2, "huan", "$S$DXZrp425p2VN9LXpDWxiBeqSZSPexyZNNPUo80fTTN2e/W15a97G", "h@d7.test", 1, 1),
    (3, "cook", "$S$Dr3Hm8Od9X0Ux/olZ.B8Uwh6./3E1l4nPfXebovKVvMB9zcmjkTn", "c@d7.test", 1, 0),
]
DRUPAL_PASSWORDS = {"admin": "admin1", "huan": "huan", "cook": "Cookies1"}


def recipe(name: str, url: str) -> tuple[LegacyDbConfig, ProfileMap]:
    """A shipped template with its url set, read as authshim reads its config."""
    doc = tomllib.loads((RECIPES / f"{name}.toml").read_text())
    doc["legacy_db"]["url"] = url
    r = Reader({})
    config = read_legacy_db(r, doc)
    mapping = read_profile_map(r, doc)
    r.check()
    assert config is not None
    return config, mapping


def parse(section: dict[str, Any]) -> LegacyDbConfig | None:
    r = Reader({})
    config = read_legacy_db(r, {"legacy_db": section})
    r.check()
    return config


# --- config and placeholders ---------------------------------------------------------------


def test_placeholders_are_bound_in_each_drivers_style() -> None:
    """:names become $n, %s (a literal % doubled) or ?; a PostgreSQL cast :: is left alone."""
    sql = "SELECT id::text FROM u WHERE e = :email AND n LIKE 'a%' AND e <> :email"
    assert compile_template(sql, "dollar") == (
        "SELECT id::text FROM u WHERE e = $1 AND n LIKE 'a%' AND e <> $2",
        ("email", "email"),
    )
    assert compile_template(sql, "format")[0].endswith("e = %s AND n LIKE 'a%%' AND e <> %s")
    assert compile_template(sql, "qmark")[0].endswith("e = ? AND n LIKE 'a%' AND e <> ?")


def test_config_refuses_templates_that_do_not_read_or_bind() -> None:
    """A template that writes, lacks its placeholder or uses another one is refused by key;
    a bad URL is named by its scheme only (the URL may carry a password)."""
    with pytest.raises(ConfigError) as caught:
        parse(
            {
                "url": "mssql://sa:hunter2@db/x",
                "find_user": {
                    "by_email": "UPDATE u SET x = 1 WHERE e = :email",
                    "by_username": "SELECT * FROM u WHERE n = 'x'",
                },
                "list_users": {"sql": "SELECT * FROM u WHERE id > :after AND e = :email"},
            }
        )
    text = str(caught.value)
    assert "legacy_db.find_user.by_email: must be one SELECT statement" in text
    assert "legacy_db.find_user.by_username: must bind :username" in text
    assert "legacy_db.list_users.sql: must bind :limit" in text
    assert "legacy_db.list_users.sql: has no value for :email" in text
    assert "legacy_db.url: must start with" in text and "hunter2" not in text


def test_lookup_source_database_needs_legacy_db(tmp_path: Path) -> None:
    """[lookup] source = "database" without [legacy_db] is refused; with it, it parses."""
    doc = {**EXAMPLE, "lookup": {"source": "database"}}
    env = {"AUTHSHIM_SECRET": SECRET}
    with pytest.raises(ConfigError, match=r"lookup.source: 'database' needs \[legacy_db\]"):
        parse_config(doc, env)
    db = tmp_path / "x.db"
    doc["legacy_db"] = {
        "url": f"sqlite:///{db}",
        "find_user": {"by_email": "SELECT * FROM u WHERE e = :email"},
    }
    config = parse_config(doc, env)
    assert config.lookup is not None and config.lookup.source == "database"
    assert config.legacy_db is not None and config.legacy_db.driver == "sqlite"


# --- Django: auth_user migrated by Django -------------------------------------------------


def _django(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-c", DJANGO_SCRIPT % (DJANGO_USERS,)],
        env={**os.environ, **env},
        check=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def django_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database migrated by Django, with its users made by Django."""
    path = tmp_path_factory.mktemp("django") / "legacy.sqlite3"
    _django({"DJ_ENGINE": "sqlite3", "DJ_NAME": str(path)})
    return f"sqlite:///{path}"


def _pg_down() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return None
    except OSError as exc:
        return f"no PostgreSQL at 127.0.0.1:5432 ({exc.strerror or exc})"


@pytest.fixture(scope="module")
def django_postgres() -> Iterator[str]:
    """Django's auth_user migrated by Django into a private PostgreSQL schema."""
    if reason := _pg_down():
        pytest.skip(reason)
    pytest.importorskip("psycopg")
    import asyncpg

    schema = f"dj_{uuid.uuid4().hex[:10]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    try:
        _django({"DJ_ENGINE": "postgresql", "DJ_NAME": "test", "DJ_SCHEMA": schema})
        yield f"{PG_DSN}?search_path={schema}"
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def django_url(request: pytest.FixtureRequest) -> str:
    """Django's database on each backend."""
    name = "django_sqlite" if request.param == "sqlite" else "django_postgres"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def django_source(django_url: str) -> AsyncIterator[tuple[Source, ProfileMap]]:
    config, mapping = recipe("django", django_url)
    source = Source(config, create_legacy_db(config))
    try:
        yield source, mapping
    finally:
        await source.close()


async def test_django_find_user_reads_profile_and_hash(
    django_source: tuple[Source, ProfileMap],
) -> None:
    """The Django template finds a user by email (any case) and by username: the profile
    without the hash, and Django's own hash, which the legacy verifier accepts."""
    source, _ = django_source
    [by_email] = await source.find_user("email", "alice@EXAMPLE.com")
    [by_name] = await source.find_user("username", "alice")
    assert by_email == by_name
    assert by_email.profile["given_name"] == "Alice"
    assert "password_hash" not in by_email.profile and "password" not in by_email.profile
    assert by_email.password_hash is not None
    assert by_email.password_hash.startswith("pbkdf2_sha256$")
    assert verify(by_email.password_hash, "wonderland-1")
    assert not verify(by_email.password_hash, "wonderland-2")
    assert isinstance(by_email.profile["date_joined"], str)  # a datetime, as JSON holds it
    assert await source.find_user("username", "nobody") == []


async def test_django_import_from_db_pages_and_resumes(
    django_source: tuple[Source, ProfileMap], tmp_path: Path
) -> None:
    """--from-db lists every Django user in pages of 2: the active users with usable hashes
    are imported, the inactive and the unusable refused; a second run doubles nobody."""
    source, mapping = django_source
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    await store.open()
    try:
        first = await import_from_db(store, source, mapping, Hashes(), page=2)
        again = await import_from_db(store, source, mapping, Hashes(), page=2)
        alice = await store.find_user("alice@example.com")
    finally:
        await store.close()
    assert first.read == 6 and first.inserted == 4
    assert first.refused == {"blocked": 1, "unknown_hash_format": 1}
    assert again.inserted == 0 and again.updated == 0 and again.unchanged == 4
    assert alice is not None and alice.password_hash.startswith("pbkdf2_sha256$")


async def test_database_lookup_answers_like_the_http_one(
    django_source: tuple[Source, ProfileMap],
) -> None:
    """[lookup] source = "database": found, not found, and a database that is gone is
    LookupFailed (never "not found")."""
    source, mapping = django_source
    lookup = DatabaseLookup(LookupConfig(source="database"), source, None, mapping)  # type: ignore[arg-type]
    assert lookup.by_email_enabled and lookup.by_username_enabled
    found = await lookup.by_email("bob@example.com")
    assert found is not None and found.fields.username == "bob"
    assert "password_hash" not in found.profile
    assert await lookup.by_username("zed") is None
    gone = LegacyDbConfig(
        Secret("sqlite:////nonexistent/x.db"), "sqlite", by_email=source.config.by_email
    )
    broken = DatabaseLookup(
        LookupConfig(source="database"),
        Source(gone, create_legacy_db(gone)),
        None,
        mapping,  # type: ignore[arg-type]
    )
    with pytest.raises(LookupFailed):
        await broken.by_email("bob@example.com")


async def test_two_rows_for_one_identifier_fail_the_lookup(django_sqlite: str) -> None:
    """A template that finds two users for one email is LookupFailed, never a guess."""
    config, mapping = recipe("django", django_sqlite)
    loose = LegacyDbConfig(
        config.url,
        "sqlite",
        by_email=(
            "SELECT id, email, username FROM auth_user WHERE :email <> '' ORDER BY id LIMIT 2"
        ),
    )
    source = Source(loose, create_legacy_db(loose))
    lookup = DatabaseLookup(LookupConfig(source="database"), source, None, mapping)  # type: ignore[arg-type]
    try:
        with pytest.raises(LookupFailed, match="2 rows"):
            await lookup.by_email("bob@example.com")
    finally:
        await source.close()


async def test_connections_are_read_only(django_url: str) -> None:
    """A statement that writes fails in the database itself, past the config's check."""
    writes = LegacyDbConfig(
        Secret(django_url),
        "postgresql" if "postgres" in django_url else "sqlite",
        by_email="UPDATE auth_user SET first_name = 'x' WHERE email = :email",
    )
    source = Source(writes, create_legacy_db(writes))
    refused = "ReadOnlySQLTransaction" if "postgres" in django_url else "OperationalError"
    try:
        with pytest.raises(LegacyDbUnavailable, match=refused):
            await source.find_user("email", "bob@example.com")
    finally:
        await source.close()
    config, _ = recipe("django", django_url)
    check = Source(config, create_legacy_db(config))
    try:
        [bob] = await check.find_user("username", "bob")
    finally:
        await check.close()
    assert bob.profile["given_name"] == "Bob"


async def test_cli_import_from_db(django_sqlite: str, tmp_path: Path) -> None:
    """`authshim import --from-db --json` imports Django's users and reports them by format."""
    store = create_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.open()
    await store.close()
    text = (
        (RECIPES / "django.toml")
        .read_text()
        .replace('"env:LEGACY_DB_URL"', json.dumps(django_sqlite))
    )
    config = tmp_path / "authshim.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n\n' + text)
    out = io.StringIO()
    with redirect_stdout(out):
        args = ["import", "--from-db", "--config", str(config), "--json", "--batch", "2"]
        code = await asyncio.to_thread(main, args)
    assert code == 0
    report = json.loads(out.getvalue())
    assert report["read"] == 6 and report["formats"] == {"django_pbkdf2": 4}
    assert report["inserted"] == 4 and report["dry_run"] is False


# --- WordPress on MariaDB -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wordpress_url() -> Iterator[str]:
    """WordPress's two user tables on MariaDB, with hashes made by PHP: phpass $P$ (up to
    WordPress 6.7) for admin and editor, 6.8's $wp$2y$ for author."""
    if not shutil.which("php") or not PHPASS_CLASS.exists():
        pytest.skip("php-cli or Debian's wordpress package is not installed (.ci/run does)")
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
    except OSError:
        pytest.skip("no MariaDB at 127.0.0.1:3306 (.ci/run starts it)")
    import pymysql

    hashes = json.loads(
        subprocess.run(
            ["php", "-r", WP_PHP, str(PHPASS_CLASS), *WP_PASSWORDS.values()],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    name = f"wp_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    try:
        with conn.cursor() as c:
            c.execute(f"CREATE DATABASE {name}")
            c.execute(f"USE {name}")
            for ddl in WP_SCHEMA:
                c.execute(ddl)
            for i, login in enumerate(WP_PASSWORDS, start=1):
                c.execute(
                    "INSERT INTO wp_users (ID, user_login, user_pass, user_nicename, user_email,"
                    " user_registered, display_name) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        i,
                        login,
                        hashes[login],
                        login,
                        f"{login}@wp.test",
                        "2024-01-02 03:04:05",
                        login.title(),
                    ),
                )
                c.execute(
                    "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES"
                    " (%s, 'first_name', %s), (%s, 'last_name', 'Press')",
                    (i, login.title(), i),
                )
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with conn.cursor() as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


async def test_wordpress_template_on_mariadb(wordpress_url: str, tmp_path: Path) -> None:
    """The WordPress template finds users by email (any case) and login with their usermeta
    names; both hash generations verify; the import lists them all; writes are refused."""
    config, mapping = recipe("wordpress", wordpress_url)
    source = Source(config, create_legacy_db(config))
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    await store.open()
    try:
        [admin] = await source.find_user("email", "ADMIN@wp.test")
        [author] = await source.find_user("username", "author")
        report = await import_from_db(store, source, mapping, Hashes(), page=2)
        writes = LegacyDbConfig(
            config.url, "mysql", by_email="DELETE FROM wp_users WHERE user_email = :email"
        )
        writer = Source(writes, create_legacy_db(writes))
        try:
            # 1792: "Cannot execute statement in a READ ONLY transaction"
            with pytest.raises(LegacyDbUnavailable, match="1792"):
                await writer.find_user("email", "admin@wp.test")
        finally:
            await writer.close()
        [still] = await source.find_user("username", "admin")
    finally:
        await source.close()
        await store.close()
    assert admin.profile == {
        "id": 1,
        "email": "admin@wp.test",
        "username": "admin",
        "name": "Admin",
        "given_name": "Admin",
        "family_name": "Press",
        "user_registered": "2024-01-02T03:04:05",
        "user_status": 0,
    }
    assert admin.password_hash is not None and admin.password_hash.startswith("$P$")
    assert author.password_hash is not None and author.password_hash.startswith("$wp$2y$")
    for row, login in ((admin, "admin"), (author, "author")):
        assert row.password_hash is not None
        assert verify(row.password_hash, WP_PASSWORDS[login])
        assert not verify(row.password_hash, WP_PASSWORDS[login] + "x")
    assert report.inserted == 3 and report.refused == {}
    assert still.profile["username"] == "admin"


# --- Drupal 7 -----------------------------------------------------------------------------


async def test_drupal7_template(tmp_path: Path) -> None:
    """The Drupal 7 template skips the anonymous uid 0, reads $S$ hashes that verify, and the
    import refuses the blocked user (status 0)."""
    path = tmp_path / "drupal.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(DRUPAL_SCHEMA)
        conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", DRUPAL_USERS)
    conn.close()
    config, mapping = recipe("drupal7", f"sqlite:///{path}")
    source = Source(config, create_legacy_db(config))
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    await store.open()
    try:
        [huan] = await source.find_user("email", "H@D7.test")
        assert await source.find_user("username", "") == []
        report = await import_from_db(store, source, mapping, Hashes(), page=10)
    finally:
        await source.close()
        await store.close()
    assert huan.password_hash is not None
    verifier = identify(huan.password_hash)
    assert verifier is not None and verify(huan.password_hash, DRUPAL_PASSWORDS["huan"])
    assert report.read == 3 and report.inserted == 2 and report.refused == {"blocked": 1}


async def test_lookup_command_asks_the_database(django_sqlite: str) -> None:
    """`authshim lookup` with [lookup] source = "database" finds a Django user by the
    template and prints the profile, never the hash; an unknown email is not found."""
    from proxy.commands.lookup import lookup_once

    doc = tomllib.loads((RECIPES / "django.toml").read_text())
    doc["legacy_db"]["url"] = django_sqlite
    config = parse_config({**EXAMPLE, **doc, "lookup": {"source": "database"}},
                          {"AUTHSHIM_SECRET": SECRET})  # fmt: skip
    out = io.StringIO()
    assert await lookup_once(config, "bob@example.com", by_username=False, out=out) == 0
    assert "Bob" in out.getvalue()
    assert "pbkdf2" not in out.getvalue()
    assert await lookup_once(config, "zed@example.com", by_username=False, out=io.StringIO()) == 1


# --- judge = "database" -------------------------------------------------------------------


@pytest.fixture
def cheap_pool() -> Iterator[PasswordPool]:
    pool = PasswordPool(HashParams(time_cost=1, memory_cost=64), workers=2, queue_limit=8)
    try:
        yield pool
    finally:
        pool.close()


async def test_database_judge_on_django(
    django_source: tuple[Source, ProfileMap], cheap_pool: PasswordPool
) -> None:
    """The judge accepts Django's password for the user (by email or username), and refuses a
    wrong one, an unknown user, an unusable password and an inactive user, each by name."""
    source, mapping = django_source
    judge = DatabaseJudge(source, mapping, cheap_pool)
    accepted = await judge.judge("ALICE@example.com", "wonderland-1")
    assert accepted.reason == "accepted" and accepted.user is not None
    assert accepted.user.fields.username == "alice" and "password_hash" not in accepted.user.profile
    assert (await judge.judge("bob", "builder-22")).reason == "accepted"
    assert (await judge.judge("bob", "builder-23")) == Verdict("wrong_password")
    assert (await judge.judge("nobody@example.com", "x")) == Verdict("unknown_user")
    assert (await judge.judge("dave", "anything")) == Verdict("no_hash")
    assert (await judge.judge("carol", "singer-333")) == Verdict("inactive")


async def test_database_judge_on_wordpress(wordpress_url: str, cheap_pool: PasswordPool) -> None:
    """The judge accepts WordPress's phpass ($P$) and 6.8 ($wp$2y$) hashes from MariaDB."""
    config, mapping = recipe("wordpress", wordpress_url)
    source = Source(config, create_legacy_db(config))
    judge = DatabaseJudge(source, mapping, cheap_pool)
    try:
        for login, password in WP_PASSWORDS.items():
            assert (await judge.judge(login, password)).reason == "accepted"
            assert (await judge.judge(f"{login}@wp.test", password + "!")).reason == (
                "wrong_password"
            )
    finally:
        await source.close()


async def test_database_judge_never_lets_someone_else_in(
    django_sqlite: str, cheap_pool: PasswordPool
) -> None:
    """A template that finds another user than the one named is "unknown_user"; two rows and
    a database that is gone are LookupFailed, never a wrong password."""
    config, mapping = recipe("django", django_sqlite)
    other = LegacyDbConfig(
        config.url, "sqlite",
        by_username="SELECT id, email, username, password AS password_hash FROM auth_user"
        " WHERE username = 'bob' AND :username <> ''",
    )  # fmt: skip
    two = LegacyDbConfig(
        config.url, "sqlite",
        by_username="SELECT id, email, username, password AS password_hash FROM auth_user"
        " WHERE :username <> '' LIMIT 2",
    )  # fmt: skip
    gone = LegacyDbConfig(Secret("sqlite:////nonexistent/x.db"), "sqlite", by_username="x")
    for db, outcome in ((other, "unknown_user"), (two, None), (gone, None)):
        source = Source(db, create_legacy_db(db))
        try:
            judge = DatabaseJudge(source, mapping, cheap_pool)
            if outcome is None:
                with pytest.raises(LookupFailed):
                    await judge.judge("alice", "builder-22")
            else:
                assert (await judge.judge("alice", "builder-22")).reason == outcome
        finally:
            await source.close()


# --- the running proxy --------------------------------------------------------------------


async def test_sign_up_checks_the_legacy_database(
    start_proxy: StartProxy, legacy: FakeLegacy, django_sqlite: str, tmp_path: Path
) -> None:
    """With [lookup] source = "database", a local sign-up under a Django user's email gets
    the conflict answer, the legacy app's HTTP look-up is never asked, and a new email signs up."""
    doc = tomllib.loads((RECIPES / "django.toml").read_text())
    doc["legacy_db"]["url"] = django_sqlite

    def change(raw: dict[str, Any]) -> None:
        accounts(tmp_path / "outbox")(raw)
        raw["lookup"] = {"source": "database"}
        raw["legacy_db"] = doc["legacy_db"]

    proxy = await start_proxy(change)
    fields = {"email": "Frank@Example.com", "username": "someone-new", "password": "new-pass-1"}
    answer = await post_form(proxy, "/accounts/signup/", fields)
    assert answer[:2] == (302, "/accounts/signup/?error=exists")
    fields = {"email": "zoe@example.com", "username": "zoe", "password": "new-pass-1"}
    assert (await post_form(proxy, "/accounts/signup/", fields))[:2] == (302, "/private/")
    assert legacy.lookups() == []
    assert await proxy.svc.store.count_users() == 1


async def test_a_login_judged_by_the_legacy_database(
    start_proxy: StartProxy, legacy: FakeLegacy, django_sqlite: str
) -> None:
    """judge = "database": Django's hash decides, the user is captured and answered here,
    the legacy app never hears of the login; a wrong password and an inactive user fail."""
    doc = tomllib.loads((RECIPES / "django.toml").read_text())
    doc["legacy_db"]["url"] = django_sqlite

    def change(raw: dict[str, Any]) -> None:
        raw["legacy_db"] = doc["legacy_db"]
        raw["profile"] = doc["profile"]  # the template's columns, is_active among them
        raw["login"][1]["judge"] = "database"  # the JSON login, email + password

    proxy = await start_proxy(change)

    async def login(email: str, password: str) -> int:
        async with proxy.client.post(proxy.url("/api/login"),
                                     json={"email": email, "password": password}) as response:
            await response.read()  # fmt: skip
            return response.status

    assert await login("alice@example.com", "wonderland-1") == 200
    user = await proxy.svc.store.find_user("alice@example.com")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert await login("alice@example.com", "wonderland-1") == 200  # now from the store
    assert await login("bob@example.com", "builder-23") == 401
    assert await login("carol@example.com", "singer-333") == 401  # inactive in Django
    assert legacy.logins() == []
    assert proxy.svc.counters.totals["login.database.inactive"] == 1


# --- Devise, phpBB 3, ASP.NET Identity: their tables, real hashes, on SQLite ---------------

ASPNET_V3 = ("my password", "AQAAAAEAACcQAAAAEAABAgMEBQYHCAkKCwwNDg+yWU7rLgUwPZb1Itsmra7cbxw2"
             "EFpwpVFIEtP+JIuUEw==")  # dotnet/aspnetcore PasswordHasherTest.cs  # fmt: skip


def _bcrypt(password: str, prefix: str) -> str:
    import bcrypt

    made = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + made[4:]  # $2a$/$2y$ are the same algorithm as pyca's $2b$


TEMPLATES: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {
    "devise": (
        ["""CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR NOT NULL DEFAULT '',
            encrypted_password VARCHAR NOT NULL DEFAULT '', locked_at DATETIME,
            created_at DATETIME NOT NULL)"""],
        [(1, "ann@rails.test", _bcrypt("ann-password", "$2a$"), None, "2020-01-01"),
         (2, "lou@rails.test", _bcrypt("lou-password", "$2a$"), "2024-05-01", "2020-01-01")],
    ),
    "phpbb3": (
        ["""CREATE TABLE phpbb_users (user_id INTEGER PRIMARY KEY, user_type INTEGER NOT NULL,
            username VARCHAR(255) NOT NULL, username_clean VARCHAR(255) NOT NULL,
            user_password VARCHAR(255) NOT NULL, user_email VARCHAR(100) NOT NULL,
            user_regdate INTEGER NOT NULL DEFAULT 0)"""],
        [(1, 2, "Googlebot", "googlebot", "", "", 0),
         (2, 0, "Ann", "ann", _bcrypt("ann-password", "$2y$"), "ann@bb.test", 1),
         (3, 1, "Lou", "lou", _bcrypt("lou-password", "$2y$"), "lou@bb.test", 1)],
    ),
    "aspnet-identity": (
        ["""CREATE TABLE "AspNetUsers" ("Id" TEXT PRIMARY KEY, "UserName" TEXT,
            "NormalizedUserName" TEXT, "Email" TEXT, "NormalizedEmail" TEXT,
            "PasswordHash" TEXT, "TwoFactorEnabled" INTEGER NOT NULL, "LockoutEnd" TEXT)"""],
        [("a1", "ann", "ANN", "ann@net.test", "ANN@NET.TEST", ASPNET_V3[1], 0, None),
         ("b2", "lou", "LOU", "lou@net.test", "LOU@NET.TEST", ASPNET_V3[1], 0, "2999-01-01"),
         ("c3", "tia", "TIA", "tia@net.test", "TIA@NET.TEST", ASPNET_V3[1], 1, None)],
    ),
}  # fmt: skip
PASSWORDS = {"devise": "ann-password", "phpbb3": "ann-password", "aspnet-identity": ASPNET_V3[0]}


@pytest.mark.parametrize("name", list(TEMPLATES))
async def test_more_templates_judge_and_import(
    name: str, tmp_path: Path, cheap_pool: PasswordPool
) -> None:
    """Devise, phpBB 3 and ASP.NET Identity: Ann's password is accepted by the template and
    the verifiers; the locked, inactive or two-factor user is refused, and bots never listed."""
    schema, rows = TEMPLATES[name]
    path = tmp_path / f"{name}.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in schema:
            conn.execute(statement)
        marks = ", ".join("?" * len(rows[0]))
        table = statement.split("(")[0].split()[-1]
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.close()
    config, mapping = recipe(name, f"sqlite:///{path}")
    source = Source(config, create_legacy_db(config))
    judge = DatabaseJudge(source, mapping, cheap_pool)
    domain = {"devise": "rails", "phpbb3": "bb", "aspnet-identity": "net"}[name]
    try:
        accepted = await judge.judge(f"Ann@{domain}.test", PASSWORDS[name])
        assert accepted.reason == "accepted" and accepted.user is not None
        assert "password_hash" not in accepted.user.profile
        assert (await judge.judge(f"ann@{domain}.test", "wrong")).reason == "wrong_password"
        lou = ASPNET_V3[0] if name == "aspnet-identity" else "lou-password"
        assert (await judge.judge(f"lou@{domain}.test", lou)).reason == "inactive"
        if name == "aspnet-identity":
            assert (await judge.judge("tia@net.test", ASPNET_V3[0])).reason == "second_factor"
        store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
        await store.open()
        try:
            report = await import_from_db(store, source, mapping, Hashes(), page=10)
        finally:
            await store.close()
    finally:
        await source.close()
    assert report.inserted == 1  # Ann; the bot is never listed, the others refused
