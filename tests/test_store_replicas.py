"""The store methods replicas and the copy need, on every backend (the contract style)."""

from __future__ import annotations

import dataclasses

import pytest

from store.base import NewUser, Store, User
from store.errors import UserExists
from tests.test_store_contract import HASH


def _new(i: int) -> NewUser:
    return NewUser(f"u{i}@x.io", f"user{i}", HASH, {"n": i, "Name": f"U{i}"}, str(i))


async def test_identifiers_page_in_creation_order(store: Store) -> None:
    """identifiers_after pages through users by (created_at, id), the last row the next cursor."""
    users = [await store.insert_user(_new(i)) for i in range(5)]
    first = await store.identifiers_after((float("-inf"), ""), 3)
    rest = await store.identifiers_after((first[-1].created_at, first[-1].id), 3)
    seen = first + rest
    assert [(r.id, r.email, r.username) for r in seen] == [
        (u.id, u.email, u.username) for u in sorted(users, key=lambda u: (u.created_at, u.id))
    ]
    assert [r.created_at for r in seen] == sorted(u.created_at for u in users)
    assert await store.identifiers_after((seen[-1].created_at, seen[-1].id), 3) == []


async def test_users_after_pages_in_id_order(store: Store) -> None:
    """users_after returns whole users in id order after the given id."""
    users = sorted([await store.insert_user(_new(i)) for i in range(5)], key=lambda u: u.id)
    assert await store.users_after("", 2) == users[:2]
    assert await store.users_after(users[1].id, 10) == users[2:]


async def test_upsert_keeps_every_field_and_replaces_same_ids(store: Store) -> None:
    """Upserted users come back equal, field for field; a second upsert replaces, not adds."""
    base = await store.insert_user(_new(1))
    await store.delete_user(base.id)
    copies = [
        dataclasses.replace(
            base,
            id=f"{i:032x}",
            email=f"c{i}@x.io",
            username=f"c{i}",
            legacy_id=f"L{i}",
            created_at=1_600_000_000.25 + i,
            last_login_at=1_700_000_000.5 if i % 2 else None,
            login_count=i,
            blocked=bool(i % 2),
            session_epoch=i * 3,
            source="import",
        )
        for i in range(3)
    ]
    await store.upsert_users(copies)
    await store.upsert_users(copies)
    assert await store.users_after("", 10) == copies
    changed = dataclasses.replace(copies[0], login_count=99, profile={"changed": True})
    await store.upsert_users([changed])
    assert await store.get_user(changed.id) == changed
    assert await store.count_users() == 3


async def test_upsert_refuses_an_email_held_by_another_id(store: Store) -> None:
    """An upserted user whose email another id holds raises UserExists and writes nothing."""
    held = await store.insert_user(_new(1))
    other: User = dataclasses.replace(held, id="f" * 32, username="someone", legacy_id=None)
    fresh = dataclasses.replace(held, id="0" * 32, email="new@x.io", username="new", legacy_id=None)
    with pytest.raises(UserExists):
        await store.upsert_users([fresh, other])
    assert await store.count_users() == 1


async def test_upsert_of_many_users_spans_chunks(store: Store) -> None:
    """A batch larger than a backend's statement chunk is stored whole."""
    base = await store.insert_user(_new(1))
    await store.delete_user(base.id)
    many = [
        dataclasses.replace(
            base, id=f"{i:032x}", email=f"m{i}@x.io", username=f"m{i}", legacy_id=None
        )
        for i in range(1203)
    ]
    await store.upsert_users(many)
    assert await store.count_users() == 1203


async def test_settings_and_counters_for_a_copy(store: Store) -> None:
    """all_settings lists every setting; set_counters sets values rather than adding them."""
    await store.set_setting("mode", "cutover")
    await store.set_setting("other", "x")
    assert await store.all_settings() == {"mode": "cutover", "other": "x"}
    await store.incr("login.ok", 5, day="2024-01-01")
    values = {("2024-01-01", "login.ok"): 7, ("2024-01-02", "capture"): 2}
    await store.set_counters(values)
    await store.set_counters(values)
    await store.set_counters({})
    assert await store.counters() == values
