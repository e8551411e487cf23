"""The Store contract: every backend passes these, through the protocol alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from store.base import NewUser, Store, User, utc_day
from store.errors import RejectedCapture, StoreUnavailable, UserExists, UserNotFound

HASH = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def bob(**changes: Any) -> NewUser:
    fields: dict[str, Any] = {
        "email": "bob@x.io",
        "username": "bob",
        "password_hash": HASH,
        "profile": {"name": "Bob"},
        "legacy_id": "17",
        "source": "login",
    }
    fields.update(changes)
    return NewUser(**fields)


async def stored(store: Store, user_id: str) -> User:
    """The stored user with this id, which must exist."""
    user = await store.get_user(user_id)
    assert user is not None
    return user


async def test_insert_returns_a_fresh_user(store: Store) -> None:
    """A new user has an id, the given fields, no logins, epoch 0 and is not blocked."""
    before = time.time()
    user = await store.insert_user(bob())
    after = time.time()
    assert len(user.id) == 32
    assert (user.email, user.username, user.legacy_id) == ("bob@x.io", "bob", "17")
    assert user.password_hash == HASH
    assert user.profile == {"name": "Bob"}
    assert user.source == "login"
    assert before - 1 <= user.created_at <= after + 1
    assert (user.last_login_at, user.login_count, user.blocked, user.session_epoch) == (
        None,
        0,
        False,
        0,
    )
    assert await store.get_user(user.id) == user


async def test_find_by_email_and_by_username(store: Store) -> None:
    """find_user finds a user by its email and by its username, and nobody else."""
    user = await store.insert_user(bob())
    assert await store.find_user("bob@x.io") == user
    assert await store.find_user("bob") == user
    assert await store.find_user("alice") is None
    assert await store.get_user("0" * 32) is None


async def test_upper_case_input_is_stored_lower_case(store: Store) -> None:
    """Email and username given in upper case are stored, and found, lower-cased."""
    user = await store.insert_user(bob(email="Bob@X.io", username="BoB"))
    assert (user.email, user.username) == ("bob@x.io", "bob")
    assert await store.find_user("bob@x.io") == user
    assert await store.find_user("bob") == user


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "Bob@x.io", "username": "other", "legacy_id": "2"}, "email"),
        ({"email": "other@x.io", "username": "BOB", "legacy_id": "2"}, "username"),
        ({"email": "other@x.io", "username": "other", "legacy_id": "17"}, "legacy_id"),
    ],
)
async def test_duplicate_is_refused_with_its_field(
    store: Store, changes: dict[str, Any], field: str
) -> None:
    """A taken email, username (in any case) or legacy id raises UserExists naming it."""
    await store.insert_user(bob())
    with pytest.raises(UserExists) as caught:
        await store.insert_user(bob(**changes))
    assert caught.value.field == field
    assert await store.count_users() == 1


async def test_missing_email_username_and_legacy_id_may_repeat(store: Store) -> None:
    """Absent (NULL) unique fields never collide with each other."""
    await store.insert_user(bob(email=None, legacy_id=None))
    await store.insert_user(bob(email=None, username="carol", legacy_id=None))
    await store.insert_user(bob(email="dan@x.io", username=None, legacy_id=None))
    await store.insert_user(bob(email="erin@x.io", username=None, legacy_id=None))
    assert await store.count_users() == 4


async def test_email_match_wins_over_another_users_username(store: Store) -> None:
    """When one user's email is another's username, the email's owner is found."""
    first = await store.insert_user(bob(username="first", legacy_id="1"))
    await store.insert_user(bob(email="second@x.io", username="bob@x.io", legacy_id="2"))
    assert await store.find_user("bob@x.io") == first


async def test_concurrent_inserts_of_one_user_store_one_row(store: Store) -> None:
    """50 tasks inserting the same user at once: one row, 49 UserExists."""
    results = await asyncio.gather(
        *(store.insert_user(bob()) for _ in range(50)), return_exceptions=True
    )
    users = [r for r in results if isinstance(r, User)]
    refused = [r for r in results if isinstance(r, UserExists)]
    assert len(users) == 1
    assert len(refused) == 49
    assert await store.count_users() == 1
    assert await store.find_user("bob") == users[0]


async def test_concurrent_inserts_of_distinct_users_all_succeed(store: Store) -> None:
    """50 different users inserted at once are all stored."""
    await asyncio.gather(
        *(
            store.insert_user(bob(email=f"u{i}@x.io", username=f"u{i}", legacy_id=str(i)))
            for i in range(50)
        )
    )
    assert await store.count_users() == 50


async def test_record_login_counts_and_keeps_the_hash(store: Store) -> None:
    """record_login bumps the count and the time, and leaves hash and epoch alone."""
    user = await store.insert_user(bob())
    await store.record_login(user.id)
    await store.record_login(user.id)
    after = await stored(store, user.id)
    assert after.login_count == 2
    assert after.last_login_at is not None and after.last_login_at >= user.created_at - 1
    assert (after.password_hash, after.session_epoch) == (HASH, 0)


async def test_record_logins_counts_a_batch_in_one_call(store: Store) -> None:
    """Each entry counts once, the latest time wins whatever the order, unknown ids are
    skipped, and hash and epoch stay as they were."""
    a = await store.insert_user(bob())
    b = await store.insert_user(bob(email="carol@x.io", username="carol", legacy_id="18"))
    await store.record_logins(
        [(a.id, 1_800_000_002.0), (b.id, 1_800_000_001.0), (a.id, 1_800_000_001.0), ("0" * 32, 1.0)]
    )
    after_a, after_b = await stored(store, a.id), await stored(store, b.id)
    assert (after_a.login_count, after_a.last_login_at) == (2, 1_800_000_002.0)
    assert (after_b.login_count, after_b.last_login_at) == (1, 1_800_000_001.0)
    assert (after_a.password_hash, after_a.session_epoch) == (HASH, 0)
    await store.record_logins([])  # nothing to do
    assert (await stored(store, a.id)).login_count == 2


async def test_record_login_with_new_hash_rehashes(store: Store) -> None:
    """record_login(new_hash=...) replaces the hash without revoking sessions."""
    user = await store.insert_user(bob())
    await store.record_login(user.id, new_hash="$argon2id$new")
    after = await stored(store, user.id)
    assert (after.password_hash, after.login_count, after.session_epoch) == ("$argon2id$new", 1, 0)


async def test_set_password_replaces_hash_and_bumps_epoch(store: Store) -> None:
    """set_password stores the new hash and returns the bumped session epoch."""
    user = await store.insert_user(bob())
    assert await store.set_password(user.id, "$argon2id$changed") == 1
    after = await stored(store, user.id)
    assert (after.password_hash, after.session_epoch, after.login_count) == (
        "$argon2id$changed",
        1,
        0,
    )


async def test_revoke_sessions_bumps_epoch_each_time(store: Store) -> None:
    """revoke_sessions returns 1, then 2, and the stored epoch follows."""
    user = await store.insert_user(bob())
    assert await store.revoke_sessions(user.id) == 1
    assert await store.revoke_sessions(user.id) == 2
    after = await stored(store, user.id)
    assert after.session_epoch == 2 and after.password_hash == HASH


async def test_revoked_sessions_come_with_the_user_until_they_expire(store: Store) -> None:
    """A revoked session id is read with its user while live; other users' are not."""
    user = await store.insert_user(bob())
    other = await store.insert_user(bob(email="eve@x.io", username="eve", legacy_id="18"))
    now = time.time()
    assert await store.get_session_user(user.id, now=now) == (user, frozenset())
    await store.revoke_session(user.id, "n1", expires_at=now + 3600)
    await store.revoke_session(user.id, "n2", expires_at=now + 60)
    await store.revoke_session(user.id, "n1", expires_at=now + 3600)  # twice: once
    await store.revoke_session(other.id, "n3", expires_at=now + 3600)
    found, revoked = await store.get_session_user(user.id, now=now)
    assert found == await stored(store, user.id)
    assert revoked == frozenset({"n1", "n2"})
    assert (await store.get_session_user(user.id, now=now + 120))[1] == frozenset({"n1"})
    assert await store.get_session_user("no-such-id", now=now) == (None, frozenset())


async def test_expired_revocations_are_purged(store: Store) -> None:
    """Revocations past their cookie's expiry are deleted, on purge and in passing on revoke."""
    user = await store.insert_user(bob())
    now = time.time()
    await store.revoke_session(user.id, "old", expires_at=now - 10)  # purged in passing
    await store.revoke_session(user.id, "live", expires_at=now + 3600)
    assert (await store.get_session_user(user.id, now=now - 20))[1] == frozenset({"live"})
    assert await store.purge_revoked_sessions(before=now) == 0
    assert await store.purge_revoked_sessions(before=now + 7200) == 1
    assert (await store.get_session_user(user.id, now=0))[1] == frozenset()


async def test_epoch_of_unknown_user_raises_lookup_error(store: Store) -> None:
    """There is no epoch to return for a user that does not exist."""
    with pytest.raises(UserNotFound):
        await store.set_password("0" * 32, HASH)
    with pytest.raises(UserNotFound):
        await store.revoke_sessions("0" * 32)


async def test_updates_of_unknown_user_change_nothing(store: Store) -> None:
    """record_login and set_blocked on an unknown id are no-ops, delete says False."""
    await store.record_login("0" * 32, new_hash=HASH)
    await store.set_blocked("0" * 32, True)
    assert await store.delete_user("0" * 32) is False
    assert await store.count_users() == 0


async def test_block_and_unblock(store: Store) -> None:
    """set_blocked flips the blocked flag both ways."""
    user = await store.insert_user(bob())
    await store.set_blocked(user.id, True)
    assert (await stored(store, user.id)).blocked is True
    await store.set_blocked(user.id, False)
    assert (await stored(store, user.id)).blocked is False


async def test_delete_removes_the_user_and_frees_its_fields(store: Store) -> None:
    """A deleted user is gone, counted out, and its email can be used again."""
    user = await store.insert_user(bob())
    assert await store.delete_user(user.id) is True
    assert await store.delete_user(user.id) is False
    assert await store.get_user(user.id) is None
    assert await store.find_user("bob") is None
    assert await store.count_users() == 0
    again = await store.insert_user(bob())
    assert again.id != user.id


async def test_settings_round_trip_and_overwrite(store: Store) -> None:
    """A setting is absent, then set, then replaced."""
    assert await store.get_setting("mode") is None
    await store.set_setting("mode", "cutover")
    assert await store.get_setting("mode") == "cutover"
    await store.set_setting("mode", "migrate")
    assert await store.get_setting("mode") == "migrate"


async def test_counters_sum_per_day_and_name(store: Store) -> None:
    """Many increments of one counter on one day make one (day, name) entry with the sum."""
    await asyncio.gather(*(store.incr("login.ok", day="2024-05-01") for _ in range(30)))
    await store.incr("login.ok", 5, day="2024-05-01")
    await store.incr("login.failed", day="2024-05-01")
    await store.incr("login.ok", 2, day="2024-05-02")
    assert await store.counters() == {
        ("2024-05-01", "login.ok"): 35,
        ("2024-05-01", "login.failed"): 1,
        ("2024-05-02", "login.ok"): 2,
    }


async def test_counters_since_filters_days(store: Store) -> None:
    """counters(since=day) keeps that day and later ones."""
    for day in ("2024-04-30", "2024-05-01", "2024-05-02"):
        await store.incr("capture", day=day)
    assert set(await store.counters(since="2024-05-01")) == {
        ("2024-05-01", "capture"),
        ("2024-05-02", "capture"),
    }
    assert await store.counters(since="2030-01-01") == {}


async def test_incr_defaults_to_today_utc(store: Store) -> None:
    """Without a day, incr counts under today's UTC day."""
    await store.incr("signup")
    assert await store.counters(since=utc_day()) in (
        {(utc_day(), "signup"): 1},
        {},  # midnight passed between the two calls
    )


async def test_count_users(store: Store) -> None:
    """count_users follows inserts and deletes."""
    assert await store.count_users() == 0
    a = await store.insert_user(bob())
    await store.insert_user(bob(email="c@x.io", username="c", legacy_id=None))
    assert await store.count_users() == 2
    await store.delete_user(a.id)
    assert await store.count_users() == 1


async def test_profile_json_round_trips_unicode(store: Store) -> None:
    """Nested profiles with unicode, numbers, booleans and nulls come back equal."""
    profile = {
        "name": "Zoë Ångström 山田 🦊",
        "tags": ["a", "ß", "\u200d"],
        "age": 42,
        "score": 1.5,
        "active": True,
        "manager": None,
        "address": {"city": "Zürich", "lines": ["Straße 1"]},
    }
    user = await store.insert_user(bob(profile=profile))
    assert user.profile == profile
    assert (await stored(store, user.id)).profile == profile


async def test_data_survives_close_and_reopen(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Users, settings and counters are still there after a restart (migrations run again)."""
    user = await store.insert_user(bob())
    await store.set_password(user.id, "$argon2id$kept")
    await store.set_setting("mode", "cutover")
    await store.incr("capture", 3, day="2024-05-01")
    await store.close()
    again = make_store()
    await again.open()
    try:
        assert await again.find_user("bob") == await again.get_user(user.id)
        kept = await stored(again, user.id)
        assert (kept.password_hash, kept.session_epoch) == ("$argon2id$kept", 1)
        assert await again.get_setting("mode") == "cutover"
        assert await again.counters() == {("2024-05-01", "capture"): 3}
    finally:
        await again.close()


async def test_a_second_store_sees_the_first_ones_writes(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Two stores on one database (two replicas) share users and settings."""
    other = make_store()
    await other.open()
    try:
        user = await store.insert_user(bob())
        await store.set_setting("mode", "cutover")
        assert await other.find_user("bob@x.io") == user
        assert await other.get_setting("mode") == "cutover"
        with pytest.raises(UserExists):
            await other.insert_user(bob())
    finally:
        await other.close()


async def test_empty_identifiers_are_stored_absent(store: Store) -> None:
    """An empty email or username is stored as NULL, so find_user("") finds nobody."""
    user = await store.insert_user(NewUser(email="bob@x.io", username=" ", password_hash=HASH))
    assert user.username is None
    await store.insert_user(NewUser(email="", username="carol", password_hash=HASH))
    assert await store.find_user("") is None
    assert await store.find_user("  ") is None


async def test_profile_keys_become_text(store: Store) -> None:
    """Non-text profile keys are stored as text keys, as JSON requires."""
    profile: Any = {1: "x"}
    user = await store.insert_user(
        NewUser(email="bob@x.io", username="bob", password_hash=HASH, profile=profile)
    )
    assert user.profile == {"1": "x"}


@pytest.mark.parametrize("value", ["\ud800", 2**70])
async def test_unencodable_profile_is_rejected_and_writes_nothing(
    store: Store, value: object
) -> None:
    """A profile JSON cannot hold is RejectedCapture("bad_profile"), with nothing stored."""
    with pytest.raises(RejectedCapture) as caught:
        await store.insert_user(
            NewUser(email="bob@x.io", username="bob", password_hash=HASH, profile={"v": value})
        )
    assert caught.value.reason == "bad_profile"
    assert await store.count_users() == 0


async def test_a_pending_login_is_taken_once_and_expires(store: Store) -> None:
    """A multi-step login's pending capture comes back once, never after it expired, and the
    expired ones are purged and counted."""
    from store.base import PendingLogin

    now = time.time()
    await store.pending_put("k1", PendingLogin("bob@x.io", HASH, "/login", now + 300))
    await store.pending_put("k2", PendingLogin("eve@x.io", HASH, "/login", now - 1))
    await store.pending_put("k3", PendingLogin("amy@x.io", HASH, "/login", now - 1))
    taken = await store.pending_take("k1", now=now)
    assert taken == PendingLogin("bob@x.io", HASH, "/login", now + 300)
    assert await store.pending_take("k1", now=now) is None  # once only
    assert await store.pending_take("k2", now=now) is None  # expired: gone, not returned
    assert await store.pending_purge(now=now) == 1  # k3 was abandoned
    assert await store.pending_purge(now=now) == 0


# --- usernames as the legacy app spells them (issue 15) ---
async def test_first_letter_keeps_two_users_who_differ_past_the_first_letter(store: Store) -> None:
    """Under first_letter, Casey and CASEY are two users; casey finds Casey, not CASEY."""
    await store.use_username_case("first_letter")
    casey = await store.insert_user(bob(email="casey@x.io", username="Casey", legacy_id="1"))
    shout = await store.insert_user(bob(email="shout@x.io", username="CASEY", legacy_id="2"))
    assert (casey.username, shout.username) == ("Casey", "CASEY")
    assert (await stored(store, casey.id)).username == "Casey"
    for typed, expected in (("casey", casey), ("Casey", casey), ("CASEY", shout)):
        found = await store.find_user(typed)
        assert found is not None and found.id == expected.id, typed
    assert await store.find_user("cASEY") == shout  # the first letter alone folds
    assert await store.find_user("CAsey") is None
    assert await store.find_user("SHOUT@X.IO") == shout  # emails still fold to lower case
    with pytest.raises(UserExists) as exc:
        await store.insert_user(bob(email="c3@x.io", username="casey", legacy_id="3"))
    assert exc.value.field == "username"


async def test_exact_folds_no_letter_of_a_username(store: Store) -> None:
    """Under exact, every spelling is its own user and only that spelling finds it."""
    await store.use_username_case("exact")
    one = await store.insert_user(bob(username="Bob"))
    two = await store.insert_user(bob(email="b2@x.io", username="bob", legacy_id="18"))
    assert await store.find_user("Bob") == one
    assert await store.find_user("bob") == two
    assert await store.find_user("BOB") is None
    renamed = await store.update_identity(two.id, email=None, username="BOB")
    assert renamed.username == "BOB" and await store.find_user("BOB") == renamed
    with pytest.raises(UserExists):
        await store.update_identity(two.id, email=None, username="Bob")


async def test_lower_is_the_default_rule(store: Store) -> None:
    """A store folds usernames to lower case until told otherwise: CASEY finds casey."""
    assert store.username_case == "lower"
    user = await store.insert_user(bob(username="Casey"))
    assert user.username == "casey"
    assert await store.find_user("CASEY") == user


async def test_the_rule_cannot_change_once_users_exist(store: Store) -> None:
    """Another username_case is refused on a store with users; the store keeps its rule."""
    await store.use_username_case("first_letter")
    await store.use_username_case("first_letter")  # the same rule again is fine
    await store.insert_user(bob(username="Casey"))
    with pytest.raises(StoreUnavailable, match="username_case"):
        await store.use_username_case("lower")
    assert await store.get_setting("username_case") == "first_letter"
    with pytest.raises(ValueError, match="username_case"):
        await store.use_username_case("upper")


async def test_upserted_users_get_keys_by_the_stores_rule(store: Store) -> None:
    """A copy's upsert keys usernames by the target's rule: Casey and CASEY both land."""
    await store.use_username_case("first_letter")
    casey = await store.insert_user(bob(email="casey@x.io", username="Casey", legacy_id="1"))
    other = await store.insert_user(bob(email="shout@x.io", username="CASEY", legacy_id="2"))
    await store.delete_user(casey.id)
    await store.delete_user(other.id)
    await store.upsert_users([casey, other])
    assert await store.find_user("casey") == casey
    assert await store.find_user("CASEY") == other
    keys = {i.username for i in await store.identifiers_after((float("-inf"), ""), 10)}
    assert keys == {"casey", "cASEY"}  # the keys a login is looked up by


# --- legacy hashes and the bulk import (issue 17) ---
LEGACY = "$P$BUmsvj2rgOtAcUkbtvEtcC17sF9.Bk0"


def imported(n: int, **changes: Any) -> NewUser:
    fields: dict[str, Any] = {
        "email": f"u{n}@x.io",
        "username": f"u{n}",
        "password_hash": LEGACY,
        "profile": {"n": n},
        "legacy_id": str(n),
        "source": "import",
    }
    fields.update(changes)
    return NewUser(**fields)


async def test_upgrade_password_is_guarded_by_the_old_hash(store: Store) -> None:
    """upgrade_password replaces the hash and counts the login only while the old hash is
    stored; after a password change it leaves everything as it is."""
    user = await store.insert_user(bob(password_hash=LEGACY, source="import"))
    assert await store.upgrade_password(user.id, LEGACY, HASH)
    after = await stored(store, user.id)
    assert (after.password_hash, after.login_count, after.session_epoch) == (HASH, 1, 0)
    assert after.last_login_at is not None
    assert not await store.upgrade_password(user.id, LEGACY, "$argon2id$other")
    assert (await stored(store, user.id)).password_hash == HASH
    assert not await store.upgrade_password("0" * 32, LEGACY, HASH)


async def test_import_users_inserts_and_is_idempotent(store: Store) -> None:
    """A batch is inserted with source import; the same batch again changes nothing."""
    batch = [imported(i) for i in range(5)]
    assert await store.import_users(batch) == (5, 0)
    assert await store.import_users(batch) == (0, 0)
    assert await store.count_users() == 5
    user = await store.find_user("u3@x.io")
    assert user is not None
    assert (user.source, user.legacy_id, user.password_hash) == ("import", "3", LEGACY)
    assert await store.count_by_source() == {"import": 5}


async def test_import_users_updates_only_untouched_imported_users(store: Store) -> None:
    """A changed row rewrites an imported user who never logged in here; a user who logged
    in, had a password set, or was captured by login is never overwritten."""
    await store.import_users([imported(i) for i in range(3)])
    logged_in = await store.find_user("u1")
    changed = await store.find_user("u2")
    assert logged_in is not None and changed is not None
    await store.record_login(logged_in.id)
    await store.set_password(changed.id, HASH)
    captured = await store.insert_user(bob(legacy_id="9", email="u9@x.io", username="u9"))
    again = [imported(i, password_hash="$1$new$hash", profile={"v": 2}) for i in (0, 1, 2, 9)]
    assert await store.import_users(again) == (0, 1)
    assert (await stored(store, logged_in.id)).password_hash == LEGACY
    assert (await stored(store, changed.id)).password_hash == HASH
    assert (await stored(store, captured.id)).password_hash == HASH
    fresh = await store.find_user("u0")
    assert fresh is not None
    assert (fresh.password_hash, fresh.profile) == ("$1$new$hash", {"v": 2})


async def test_import_users_skips_conflicts_and_matches_by_email_without_legacy_id(
    store: Store,
) -> None:
    """A new row whose email another user holds is skipped, not raised; a row without a
    legacy id is matched by email; an update never takes another user's email."""
    await store.insert_user(bob())
    rows = [imported(1, email="bob@x.io"), imported(2, legacy_id=None)]
    assert await store.import_users(rows) == (1, 0)
    assert await store.import_users([imported(2, legacy_id=None, profile={"v": 3})]) == (0, 1)
    two = await store.find_user("u2@x.io")
    assert two is not None and two.profile == {"v": 3} and two.legacy_id is None
    await store.import_users([imported(3)])
    assert await store.import_users([imported(3, email="bob@x.io")]) == (0, 0)
    three = await store.find_user("u3")
    assert three is not None and three.email == "u3@x.io"
