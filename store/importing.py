"""The bulk import (issue 17): users read from a file, checked by the capture's rules, stored
in batches with their legacy hash, which is upgraded to argon2id at their first login.

Two shapes of record are read, one JSON object each:

- authshim's export (``authshim users export``, ``app_metadata.authshim.format``): the
  legacy id, email, username, profile and hash as exported;
- Auth0's bulk-import objects: ``email``, ``username``, ``user_id`` (the legacy id),
  ``user_metadata`` and the root profile attributes, and ``custom_password_hash``:
  ``{"algorithm": ..., "hash": {"value": ..., "encoding": ..., "salt": {...}}}``.

A hash is kept when a verifier knows it (store/hashes): self-describing strings (bcrypt,
argon2, ldap, pbkdf2 and scrypt PHC strings, and every other built-in format under any
algorithm name), Auth0's md5/sha1/sha256/sha512 with an optional salt, and
``"recipe:NAME"`` with the operator's recipe. A user whose hash nothing here can verify, or
who is blocked in the legacy app, is not imported: they migrate at their next legacy login,
as before, or by reset (refusing keeps the lock and the login path as they were).

Re-running an import is safe: see ``Store.import_users`` for what is rewritten.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from store.base import NewUser, Store
from store.errors import RejectedCapture, UserExists
from store.hashes import Hashes
from store.hashes import digest as digests
from store.hashes.recipe import stored_form as recipe_form
from store.validation import ProfileFields, validate_capture

EXPORT_FORMAT = "authshim-export/1"
ROOT_PROFILE = ("name", "given_name", "family_name", "nickname", "picture")
DEFAULT_BATCH = 2000


class Refused(Exception):
    """A record the import rules refuse; ``reason`` is counted in the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ImportReport:
    """What an import (or a dry run) found and did."""

    read: int = 0
    formats: Counter[str] = field(default_factory=Counter)  # verifiable users by hash format
    refused: Counter[str] = field(default_factory=Counter)  # by reason
    inserted: int = 0
    updated: int = 0
    conflicts: int = 0  # batches retried one by one found these rows taken by another user

    @property
    def verifiable(self) -> int:
        return sum(self.formats.values())

    @property
    def unchanged(self) -> int:
        """Importable users the store already held as given, or held by a migrated user."""
        return self.verifiable - self.inserted - self.updated - self.conflicts

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "verifiable": self.verifiable,
            "formats": dict(sorted(self.formats.items())),
            "refused": dict(sorted(self.refused.items())),
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "conflicts": self.conflicts,
        }


def to_new_user(
    record: object, hashes: Hashes, *, requires_username: bool = False
) -> tuple[NewUser, str]:
    """The user a record describes and its hash format's name.

    Raises:
        Refused: the import rules refuse it; ``reason`` says why.
    """
    if not isinstance(record, dict):
        raise Refused("not_an_object")
    meta = _export_meta(record)
    legacy_id = meta.get("legacy_id") if meta is not None else record.get("user_id")
    if record.get("blocked") is True:
        # SECURITY: migration never removes a lock: a blocked user stays with the legacy app.
        raise Refused("blocked")
    try:
        fields = validate_capture(
            ProfileFields(legacy_id, record.get("email"), record.get("username")),
            requires_username=requires_username,
        )
    except RejectedCapture as exc:
        raise Refused(exc.reason) from None
    stored = _stored_hash(record.get("custom_password_hash"), hashes)
    verifier = hashes.identify(stored)
    if verifier is None:
        raise Refused("unknown_hash_format")
    profile = _profile(record)
    new = NewUser(fields.email, fields.username, stored, profile, fields.legacy_id, "import")
    return new, verifier.name


async def run_import(
    store: Store,
    records: Iterable[object],
    hashes: Hashes,
    *,
    batch: int = DEFAULT_BATCH,
    dry_run: bool = False,
    requires_username: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check every record and, unless ``dry_run``, store the importable ones in batches.

    Each batch is one transaction: an import cut short keeps whole batches only, and running
    it again finishes it without doubling anyone.
    """
    if batch < 1:
        raise ValueError("batch must be 1 or more")
    report = ImportReport()
    pending: list[NewUser] = []
    seen: set[str] = set()
    # One batch is written (on the store's thread or server) while the next one is read and
    # checked here: the import takes the longer of the two, not their sum.
    writing: asyncio.Task[None] | None = None
    try:
        for record in records:
            report.read += 1
            try:
                new, name = to_new_user(record, hashes, requires_username=requires_username)
                key = new.legacy_id or new.email or ""
                if key in seen:
                    raise Refused("duplicate_in_file")
                seen.add(key)
            except Refused as exc:
                report.refused[exc.reason] += 1
            else:
                report.formats[name] += 1
                pending.append(new)
            if len(pending) >= batch:
                if writing is not None:
                    await writing
                writing = asyncio.create_task(_flush(store, pending, report, dry_run))
                pending = []
                if progress is not None:
                    progress(report.read)
        if writing is not None:
            await writing
        await _flush(store, pending, report, dry_run)
    finally:
        # Cut short (a refused batch, an interrupt): the batch being written finishes or
        # fails whole; nothing is left half-written or running.
        if writing is not None and not writing.done():
            await asyncio.wait([writing])
    if progress is not None:
        progress(report.read)
    return report


def read_records(lines: Iterable[bytes], loads: Callable[[bytes], Any]) -> Iterator[object]:
    """One record per NDJSON line (blank lines skipped); a line that is not JSON is yielded as
    None, which the import refuses as ``not_an_object``."""
    for line in lines:
        if not line.strip():
            continue
        try:
            yield loads(line)
        except ValueError:
            yield None


async def _flush(store: Store, pending: list[NewUser], report: ImportReport, dry: bool) -> None:
    if not pending or dry:
        return
    try:
        inserted, updated = await store.import_users(pending)
    except UserExists:
        # Two rows of one batch swap an email or username (PostgreSQL checks them per row):
        # import the batch one by one, and count the rows that still conflict.
        inserted = updated = 0
        for new in pending:
            try:
                one, two = await store.import_users([new])
            except UserExists:
                report.conflicts += 1
                continue
            inserted, updated = inserted + one, updated + two
    report.inserted += inserted
    report.updated += updated


def _export_meta(record: Mapping[str, Any]) -> dict[str, Any] | None:
    app = record.get("app_metadata")
    meta = app.get("authshim") if isinstance(app, dict) else None
    if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT:
        return meta
    return None


def _profile(record: Mapping[str, Any]) -> dict[str, Any]:
    metadata = record.get("user_metadata")
    profile: dict[str, Any] = dict(metadata) if isinstance(metadata, dict) else {}
    for name in ROOT_PROFILE:
        if isinstance(record.get(name), str):
            profile.setdefault(name, record[name])
    return profile


def _stored_hash(custom: object, hashes: Hashes) -> str:
    """The stored form of ``custom_password_hash``; raise ``Refused`` when it has none."""
    if not isinstance(custom, dict):
        raise Refused("no_password_hash")
    algorithm = custom.get("algorithm")
    value_obj = custom.get("hash")
    if not isinstance(algorithm, str) or not isinstance(value_obj, dict):
        raise Refused("no_password_hash")
    value = value_obj.get("value")
    if not isinstance(value, str) or not value:
        raise Refused("no_password_hash")
    if algorithm.startswith("recipe:"):
        name = algorithm[len("recipe:") :]
        if name not in hashes.recipes:
            raise Refused("unknown_recipe")
        return recipe_form(name, _salt_text(value_obj.get("salt")), value)
    if algorithm in digests.ALGORITHMS:
        return _digest(algorithm, value, value_obj)
    if algorithm == "md4" or algorithm == "hmac":
        raise Refused(f"unsupported_{algorithm}")
    return value  # self-describing: bcrypt, argon2, ldap, PHC strings, Django, phpass, ...


def _digest(algorithm: str, value: str, spec: Mapping[str, Any]) -> str:
    try:
        raw = _decode(value, spec.get("encoding", "hex"))
        salt_spec = spec.get("salt")
        salt, position = b"", "prefix"
        if isinstance(salt_spec, dict):
            salt = _decode(str(salt_spec.get("value", "")), salt_spec.get("encoding", "utf8"))
            position = str(salt_spec.get("position", "prefix"))
        return digests.stored_form(algorithm, raw, salt, position)
    except (ValueError, binascii.Error):
        raise Refused("bad_password_hash") from None


def _decode(text: str, encoding: object) -> bytes:
    if encoding == "hex":
        return bytes.fromhex(text)
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    if encoding == "utf8":
        return text.encode()
    raise ValueError(f"unknown encoding {encoding!r}")


def _salt_text(salt: object) -> str:
    if isinstance(salt, dict) and isinstance(salt.get("value"), str):
        return str(salt["value"])
    return ""
