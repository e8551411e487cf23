"""Reset tokens, the mail outbox and identity changes, on every store backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from store.base import NewMail, NewResetToken, NewUser, Store
from store.errors import UserExists, UserNotFound

HASH = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


async def add_user(store: Store, email: str, username: str | None = None) -> str:
    user = await store.insert_user(NewUser(email, username, HASH, {"email": email}))
    return user.id


def token(name: str, email: str, **kwargs: object) -> NewResetToken:
    return NewResetToken(name * 64, email, time.time() + 60, **kwargs)  # type: ignore[arg-type]


async def test_a_token_is_found_by_its_hash_and_used_once(store: Store) -> None:
    """A stored token is found by hash; use_reset_token returns it once, then None."""
    user_id = await add_user(store, "bob@example.com")
    stored = await store.insert_reset_token(token("a", "Bob@Example.com", user_id=user_id, epoch=3))
    assert stored.email == "bob@example.com" and stored.epoch == 3 and stored.used_at is None
    assert await store.find_reset_token("a" * 64) == stored
    used = await store.use_reset_token("a" * 64, now=time.time())
    assert used is not None and used.user_id == user_id and used.used_at is not None
    assert await store.use_reset_token("a" * 64, now=time.time()) is None
    assert await store.use_reset_token("f" * 64, now=time.time()) is None


async def test_an_expired_token_cannot_be_used(store: Store) -> None:
    """A token past its expiry is refused by use_reset_token."""
    await store.insert_reset_token(NewResetToken("b" * 64, "x@example.com", time.time() - 1))
    assert await store.use_reset_token("b" * 64, now=time.time()) is None


async def test_using_one_token_retires_the_others_of_the_email(store: Store) -> None:
    """Using one token marks every other live token of its email used; others stay."""
    profile = {"id": 7, "email": "Legacy@Example.com"}
    await store.insert_reset_token(token("c", "legacy@example.com", profile=profile, legacy_id="7"))
    await store.insert_reset_token(token("d", "legacy@example.com"))
    await store.insert_reset_token(token("e", "other@example.com"))
    used = await store.use_reset_token("c" * 64, now=time.time())
    assert used is not None and used.profile == profile and used.legacy_id == "7"
    assert await store.use_reset_token("d" * 64, now=time.time()) is None
    assert await store.use_reset_token("e" * 64, now=time.time()) is not None


async def test_racing_uses_of_one_token_have_one_winner(store: Store) -> None:
    """Twenty concurrent uses of one token: exactly one gets it."""
    await store.insert_reset_token(token("1", "race@example.com"))
    results = await asyncio.gather(
        *(store.use_reset_token("1" * 64, now=time.time()) for _ in range(20))
    )
    assert sum(r is not None for r in results) == 1


async def test_deleting_a_user_deletes_their_tokens(store: Store) -> None:
    """A user's reset tokens go with the user."""
    user_id = await add_user(store, "gone@example.com")
    await store.insert_reset_token(token("2", "gone@example.com", user_id=user_id))
    assert await store.delete_user(user_id)
    assert await store.find_reset_token("2" * 64) is None


async def test_the_outbox_leases_retries_and_keeps_mail(store: Store) -> None:
    """A claimed mail is leased (no second claim), a failure makes it due later with the
    error kept, and a sent mail is never claimed again and loses its data."""
    now = time.time()
    mail_id = await store.enqueue_mail(NewMail("reset", "a@example.com", {"seed": "ab"}), now=now)
    assert await store.count_pending_mail() == 1
    [claimed] = await store.claim_mail(now=now, lease=60, limit=10)
    assert (claimed.id, claimed.data, claimed.attempts) == (mail_id, {"seed": "ab"}, 0)
    assert await store.claim_mail(now=now + 1, lease=60, limit=10) == []
    await store.mark_mail_failed(mail_id, error="SMTP down", retry_at=now + 30)
    assert await store.claim_mail(now=now + 10, lease=60, limit=10) == []
    [again] = await store.claim_mail(now=now + 31, lease=60, limit=10)
    assert again.attempts == 1 and again.last_error == "SMTP down"
    await store.mark_mail_sent(mail_id, now=now + 32)
    assert await store.claim_mail(now=now + 1000, lease=60, limit=10) == []
    assert await store.count_pending_mail() == 0


async def test_an_expired_lease_lets_another_worker_take_the_mail(store: Store) -> None:
    """A worker that died with a lease leaves the mail to the next one after the lease."""
    now = time.time()
    await store.enqueue_mail(NewMail("reset", "b@example.com"), now=now)
    assert len(await store.claim_mail(now=now, lease=5, limit=1)) == 1
    assert len(await store.claim_mail(now=now + 6, lease=5, limit=1)) == 1


async def test_two_replicas_claim_each_mail_once(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Two stores on one database claiming at once split the mail: each row goes to one."""
    now = time.time()
    for i in range(40):
        await store.enqueue_mail(NewMail("reset", f"{i}@example.com"), now=now)
    other = make_store()
    await other.open()
    try:
        claims = await asyncio.gather(
            *(s.claim_mail(now=now, lease=60, limit=3) for s in [store, other] * 10)
        )
    finally:
        await other.close()
    ids = [mail.id for batch in claims for mail in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_update_identity_changes_email_username_and_profile(store: Store) -> None:
    """update_identity sets the given fields (stored lower-case) and leaves None ones."""
    user_id = await add_user(store, "old@example.com", "olduser")
    user = await store.update_identity(
        user_id, email="New@Example.com", username=None, profile={"email": "New@Example.com"}
    )
    assert (user.email, user.username) == ("new@example.com", "olduser")
    assert user.profile == {"email": "New@Example.com"}
    assert await store.find_user("NEW@example.com") == user
    assert await store.find_user("old@example.com") is None
    renamed = await store.update_identity(user_id, email=None, username="Renamed")
    assert renamed.username == "renamed" and renamed.profile == {"email": "New@Example.com"}


async def test_update_identity_refuses_a_taken_value_and_an_unknown_user(store: Store) -> None:
    """A taken email or username (any case) is UserExists; an unknown id is UserNotFound."""
    first = await add_user(store, "first@example.com", "first")
    await add_user(store, "second@example.com", "second")
    with pytest.raises(UserExists) as caught:
        await store.update_identity(first, email="SECOND@example.com", username=None)
    assert caught.value.field == "email"
    with pytest.raises(UserExists):
        await store.update_identity(first, email=None, username="Second")
    user = await store.get_user(first)
    assert user is not None and (user.email, user.username) == ("first@example.com", "first")
    with pytest.raises(UserNotFound):
        await store.update_identity("no-such-id", email="x@example.com", username=None)
    with pytest.raises(UserNotFound):
        await store.update_profile("no-such-id", {})


async def test_update_profile_replaces_the_profile(store: Store) -> None:
    """update_profile stores a new profile and nothing else."""
    user_id = await add_user(store, "p@example.com", "p")
    user = await store.update_profile(user_id, {"first_name": "Pia"})
    assert user.profile == {"first_name": "Pia"} and user.email == "p@example.com"


async def test_purge_removes_old_tokens_and_sent_mail(store: Store) -> None:
    """Purging drops expired tokens and mail sent before the cut, and keeps the rest."""
    now = time.time()
    await store.insert_reset_token(NewResetToken("3" * 64, "a@example.com", now - 10))
    await store.insert_reset_token(NewResetToken("4" * 64, "a@example.com", now + 600))
    sent = await store.enqueue_mail(NewMail("reset", "a@example.com"), now=now)
    await store.enqueue_mail(NewMail("reset", "b@example.com"), now=now)
    await store.claim_mail(now=now, lease=60, limit=1)
    await store.mark_mail_sent(sent, now=now - 5)
    assert await store.purge_reset_data(before=now) == 2
    assert await store.find_reset_token("3" * 64) is None
    assert await store.find_reset_token("4" * 64) is not None
    assert await store.count_pending_mail() == 1
