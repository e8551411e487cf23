"""GET /admin/export: every user as NDJSON, in the documented format, and back again."""

from __future__ import annotations

import json

import orjson
from argon2 import PasswordHasher

from proxy.admin.export import export_lines, user_from_record
from store.base import Store
from store.factory import create_store
from tests import admin_seed
from tests.fixtures.admin import Admin, conforms


async def test_export_streams_every_user_and_reads_back(admin: Admin) -> None:
    """The export carries hash and profile; each line reads back to the very same user."""
    for name, password in (("bob", "builder-22"), ("carol", "singer-333")):
        await admin.proxy.form_login(name, password)
    store = admin.proxy.svc.store
    async with admin.client.get(admin.url("/admin/export")) as response:
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        lines = (await response.read()).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["username"] for r in records] == ["bob", "carol"]
    for record in records:
        conforms(record, "ExportRecord")
        user = user_from_record(record)
        stored = await store.get_user(user.id)
        assert stored is not None
        # Times are exported to the second.
        assert user == stored.__class__(
            **{
                **{k: getattr(stored, k) for k in stored.__slots__},
                "created_at": float(int(stored.created_at)),
                "last_login_at": user.last_login_at,
            }
        )
    bob = user_from_record(records[0])
    assert PasswordHasher().verify(bob.password_hash, "builder-22")
    assert bob.profile["email"] == "bob@example.com" and bob.legacy_id == "2"


async def test_an_export_loads_into_a_new_store(store: Store, store_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Exported users load into an empty store of any backend with ids and hashes intact."""
    await admin_seed.seed(store_url, 1500)  # more than one export batch
    lines = [line async for line in export_lines(store, batch=400)]
    assert len(lines) == 1500
    users = [user_from_record(orjson.loads(line)) for line in lines]
    target = create_store(f"sqlite:///{tmp_path / 'copy.db'}")
    await target.open()
    try:
        await target.upsert_users(users)
        assert await target.count_users() == 1500
        copy = await target.get_user(users[1234].id)
        assert copy is not None and copy.password_hash == admin_seed.HASH
        assert copy.email == users[1234].email and copy.legacy_id == users[1234].legacy_id
    finally:
        await target.close()
