"""``authshim import --from-db``: the legacy database's users, listed by ``list_users`` a page
at a time, through the same checks and batches as an import from a file (store/importing.py).

Each row becomes an Auth0 bulk-import object: the ``[profile]`` pointers pick the legacy id,
email and username out of the row, a row ``[profile] active`` says is inactive is "blocked",
and the hash column is the ``custom_password_hash`` (every format a template reads is
self-describing). A row with a second factor at the legacy app is refused: a local login on
the password alone would skip it.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.config import ProfileMap
from proxy.legacy import has_second_factor, map_profile, profile_active
from proxy.legacy_db.base import DEFAULT_PAGE, Row, Source, import_record
from store.base import Store
from store.hashes import Hashes
from store.importing import ImportReport, run_import


def row_record(row: Row, mapping: ProfileMap) -> dict[str, object]:
    """The import object of one row."""
    fields = map_profile(row.profile, mapping)
    record = import_record(row, fields.legacy_id, fields.email, fields.username)
    if not profile_active(row.profile, mapping):
        # SECURITY: migration never removes a lock: an inactive user stays with the legacy app.
        record["blocked"] = True
    return record


async def import_from_db(
    store: Store,
    source: Source,
    mapping: ProfileMap,
    hashes: Hashes,
    *,
    page: int = DEFAULT_PAGE,
    dry_run: bool = False,
    requires_username: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """List every user and import them, one transaction per page (see ``run_import``)."""
    total = ImportReport()
    async for rows in source.list_users(page):
        records: list[object] = []
        for row in rows:
            if has_second_factor(row.profile, mapping):
                # SECURITY: never a local login on the password alone for a two-factor user.
                total.read += 1
                total.refused["second_factor"] += 1
            else:
                records.append(row_record(row, mapping))
        report = await run_import(
            store, records, hashes, batch=page, dry_run=dry_run,
            requires_username=requires_username,
        )  # fmt: skip
        _add(total, report)
        if progress is not None:
            progress(total.read)
    return total


def _add(total: ImportReport, part: ImportReport) -> None:
    total.read += part.read
    total.formats.update(part.formats)
    total.refused.update(part.refused)
    total.inserted += part.inserted
    total.updated += part.updated
    total.conflicts += part.conflicts
