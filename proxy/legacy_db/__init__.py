"""The legacy app's own database as a source (issue 17): look-ups and the import.

    errors    the package's errors
    base      the ``LegacyDb`` protocol, placeholders, rows as profiles and import records
    postgres  asyncpg
    mysql     aiomysql (MySQL and MariaDB)
    sqlite    aiosqlite
    lookup    ``[lookup] source = "database"``
    importing ``authshim import --from-db``
    judge     a login's password checked against the database's hash (``judge = "database"``)
"""

from __future__ import annotations

from proxy.config.legacy_db import LegacyDbConfig
from proxy.legacy_db.base import LegacyDb, Row, Source


def create_legacy_db(config: LegacyDbConfig) -> LegacyDb:
    """The driver for the URL's scheme (not yet opened)."""
    if config.driver == "postgresql":
        from proxy.legacy_db.postgres import PostgresDb

        return PostgresDb(config)
    if config.driver == "mysql":
        from proxy.legacy_db.mysql import MysqlDb

        return MysqlDb(config)
    from proxy.legacy_db.sqlite import SqliteDb

    return SqliteDb(config)


def create_source(config: LegacyDbConfig | None) -> Source | None:
    """The templates over a pool opened at first use, when ``[legacy_db]`` is configured."""
    return None if config is None else Source(config, create_legacy_db(config))


__all__ = ["LegacyDb", "LegacyDbConfig", "Row", "Source", "create_legacy_db", "create_source"]
