"""The admin queries of every store backend: listing, search, stats and login activity."""

from __future__ import annotations

import time

import pytest

from store.base import NewUser, Store, User
from store.listing import prefix_upper_bound
from tests import admin_seed

HASH = admin_seed.HASH


async def _add(
    store: Store, email: str | None, username: str | None, legacy_id: str | None = None, **kw: str
) -> User:
    return await store.insert_user(
        NewUser(email, username, HASH, {"email": email}, legacy_id, kw.get("source", "login"))
    )


async def _all_pages(store: Store, prefix: str, per_page: int, **filters: object) -> list[str]:
    """Walk every page of a search, as the API does, and return the keys in order."""
    keys: list[str] = []
    after: tuple[str, str] | None = None
    while True:
        page = await store.search_users(prefix, after=after, limit=per_page, **filters)  # type: ignore[arg-type]
        keys += [key for key, _ in page]
        if len(page) < per_page:
            return keys
        after = (page[-1][0], page[-1][1].id)


def test_prefix_upper_bound() -> None:
    """The bound of a prefix is its last character's successor, skipping surrogates."""
    assert prefix_upper_bound("ab") == "ac"
    assert prefix_upper_bound("a\ud7ff") == "a\ue000"
    assert prefix_upper_bound("a\U0010ffff") == "b"


async def test_search_matches_email_username_and_legacy_id(store: Store) -> None:
    """A prefix finds emails and usernames; an exact legacy id comes first; each user once."""
    ann = await _add(store, "ann@x.io", "annie", "42")
    await _add(store, "bob@x.io", "ann.b", "7")
    await _add(store, "zed@x.io", "zed", "ann")  # legacy id equals the query: listed first
    await _add(store, "anne@y.io", None)
    found = await store.search_users("ann")
    assert [key for key, _ in found] == ["ann", "ann.b", "ann@x.io", "anne@y.io"]
    # Emails and usernames are case-blind; a legacy id is matched exactly as typed.
    assert [key for key, _ in await store.search_users(" ANN")] == [
        "ann.b",
        "ann@x.io",
        "anne@y.io",
    ]
    assert [u.id for key, u in found if key == "ann@x.io"] == [ann.id]
    assert [u.email for _, u in await store.search_users("42")] == ["ann@x.io"]
    assert await store.search_users("nobody") == []


async def test_search_pages_without_gaps_or_repeats(store: Store) -> None:
    """Every page size walks the same matches in the same order, none twice."""
    for i in range(23):
        await _add(store, f"kim{i:02d}@x.io", f"k{i}" if i % 2 else f"kim.{i}", str(i))
    await _add(store, "other@x.io", "kim")  # matched by its username only
    whole = [key for key, _ in await store.search_users("kim", limit=1000)]
    assert len(whole) == 24 and whole == sorted(whole)
    for per_page in (1, 5, 7, 24):
        assert await _all_pages(store, "kim", per_page) == whole


async def test_search_and_list_filters(store: Store) -> None:
    """source and since narrow both a listing and a search."""
    old = await _add(store, "old@x.io", "old", source="import")
    await _add(store, "new@x.io", "new", source="signup")
    since = time.time() + 1000  # nobody was created in the future
    assert [u.email for u in await store.list_users(source="import")] == ["old@x.io"]
    assert await store.list_users(since=since) == []
    assert await store.search_users("o", source="signup") == []
    assert [u.id for _, u in await store.search_users("old", source="import")] == [old.id]
    assert await store.search_users("old", since=since) == []


async def test_list_users_pages_in_creation_order(store: Store) -> None:
    """Listing walks users in creation order with a (created_at, id) cursor."""
    made = [await _add(store, f"u{i}@x.io", None) for i in range(7)]
    seen: list[str] = []
    after: tuple[float, str] | None = None
    while page := await store.list_users(after=after, limit=3):
        seen += [u.id for u in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == [u.id for u in sorted(made, key=lambda u: (u.created_at, u.id))]


async def test_counts_by_source_and_day(store: Store) -> None:
    """Users are counted per source and per UTC day of their creation."""
    await _add(store, "a@x.io", None)
    await _add(store, "b@x.io", None, source="signup")
    assert await store.count_by_source() == {"login": 1, "signup": 1}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert await store.migrated_per_day(since=time.time() - 86400) == {today: 2}
    assert await store.migrated_per_day(since=time.time() + 60) == {}


async def test_login_activity_keeps_the_latest_day(store: Store) -> None:
    """A later day's status replaces an earlier one; on one day, migrated wins."""
    await store.note_logins("2024-01-01", [("a", False), ("b", False), ("c", True)])
    await store.note_logins("2024-01-01", [("a", True), ("a", False)])
    await store.note_logins("2024-01-03", [("b", True), ("c", False)])
    await store.note_logins("2024-01-02", [("b", False)])  # a late flush never goes back
    assert await store.login_readiness(since_day="2024-01-01") == (3, 2)
    assert await store.login_readiness(since_day="2024-01-02") == (2, 1)
    assert await store.prune_logins(before_day="2024-01-02") == 1
    assert await store.login_readiness(since_day="2000-01-01") == (2, 1)
    await store.note_logins("2024-01-04", [])


@pytest.mark.slow
async def test_search_and_pagination_on_100k_users(store: Store, store_url: str) -> None:
    """On 100k generated users, listing and prefix search walk every match exactly once."""
    n = 100_000
    await admin_seed.seed(store_url, n)
    users = list(admin_seed.generate(n))
    assert sum((await store.count_by_source()).values()) == n

    seen: list[str] = []
    after: tuple[float, str] | None = None
    while page := await store.list_users(after=after, limit=5000):
        seen += [u.id for u in page]
        after = (page[-1].created_at, page[-1].id)
    assert seen == [g.id for g in users]

    want = sorted(
        g.email if g.email.startswith("grace1") else g.username
        for g in users
        if g.email.startswith("grace1") or g.username.startswith("grace1")
    )
    assert await _all_pages(store, "Grace1", 500) == want
    signups = [u for _, u in await store.search_users("alice", source="signup", limit=10)]
    assert signups and all(u.source == "signup" and u.email for u in signups)
    legacy = await store.search_users(users[77_777].legacy_id)
    assert [u.id for _, u in legacy] == [users[77_777].id]


async def test_search_lists_each_user_once_at_every_prefix_length(store: Store) -> None:
    """Whatever length email and username share, a user is listed once: by email if it matches."""
    long = "l" * 40
    made = [
        await _add(store, "sam@x.io", "sam"),  # the username is a prefix of the email
        await _add(store, "samuel@x.io", "sammy"),  # they share "sam"
        await _add(store, "sa@y.io", "sasha"),  # they share "sa"
        await _add(store, None, "samantha"),  # no email at all
        await _add(store, "tom@x.io", "sal"),  # they share nothing
        await _add(store, f"{long}@x.io", f"{long}z"),  # they share more than 32 characters
        await _add(store, f"{long}y@x.io", f"{long}@"),
    ]
    queries = [prefix for name in ("samuel@x.io", "sasha", f"{long}@x.io", f"{long}z")
               for prefix in (name[:n] for n in range(1, len(name) + 1))]  # fmt: skip
    for q in queries:
        want = sorted(
            (u.email if u.email and u.email.startswith(q) else u.username or "", u.id)
            for u in made
            if (u.email or "").startswith(q) or (u.username or "").startswith(q)
        )
        found = await store.search_users(q)
        assert [(key, u.id) for key, u in found] == want, q
        for per_page in (1, 2):
            assert await _all_pages(store, q, per_page) == [key for key, _ in want], q
