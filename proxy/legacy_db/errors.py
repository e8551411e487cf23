"""The legacy database's errors, translated from each driver's at exactly one boundary
(its module in this package)::

    LegacyDbError            root, never raised itself
    ├── LegacyDbUnavailable  no connection, or the database refused the query
    └── LegacyDbTimeout      no answer within [legacy_db] timeout
"""

from __future__ import annotations


class LegacyDbError(Exception):
    """Something went wrong asking the legacy database."""


class LegacyDbUnavailable(LegacyDbError):
    """The legacy database could not be reached or refused the query."""


class LegacyDbTimeout(LegacyDbError):
    """The legacy database did not answer in time."""
