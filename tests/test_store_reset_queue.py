"""The durable queue of reset requests, on every store backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from store.base import NewMail, NewResetToken, Store


def token(name: str, email: str = "a@example.com") -> NewResetToken:
    return NewResetToken(name * 64, email, time.time() + 600)


def mail(email: str = "a@example.com") -> NewMail:
    return NewMail("reset", email, {"seed": "ab"})


async def test_a_claimed_request_is_leased_and_claimed_again_when_the_lease_ends(
    store: Store,
) -> None:
    """A queued request goes to one claim; nobody else gets it until its lease runs out (a
    worker that died), and then the next claim does."""
    now = time.time()
    request_id = await store.queue_reset_request("a@example.com", now=now)
    assert await store.count_pending_reset_requests() == 1
    [claimed] = await store.claim_reset_requests(now=now, lease=30, limit=10)
    assert (claimed.id, claimed.email, claimed.done_at) == (request_id, "a@example.com", None)
    assert await store.claim_reset_requests(now=now + 29, lease=30, limit=10) == []
    [again] = await store.claim_reset_requests(now=now + 31, lease=30, limit=10)
    assert again.id == request_id
    assert await store.count_pending_reset_requests() == 1


async def test_finishing_stores_the_token_and_one_mail_and_forgets_the_email(
    store: Store,
) -> None:
    """finish_reset_request stores the token, queues the mail under the request's id and marks
    the request done without its email; a done request is never claimed again."""
    now = time.time()
    request_id = await store.queue_reset_request("a@example.com", now=now)
    await store.claim_reset_requests(now=now, lease=30, limit=10)
    assert await store.finish_reset_request(request_id, now=now, token=token("a"), mail=mail())
    assert (await store.find_reset_token("a" * 64)) is not None
    [queued] = await store.claim_mail(now=now, lease=60, limit=10)
    assert (queued.id, queued.recipient, queued.data) == (
        request_id,
        "a@example.com",
        {"seed": "ab"},
    )
    assert await store.count_pending_reset_requests() == 0
    assert await store.claim_reset_requests(now=now + 100, lease=30, limit=10) == []


async def test_finishing_twice_writes_nothing_the_second_time(store: Store) -> None:
    """A request finished again (a worker whose lease ran out) gets no second token or mail."""
    now = time.time()
    request_id = await store.queue_reset_request("a@example.com", now=now)
    assert await store.finish_reset_request(request_id, now=now, token=token("b"), mail=mail())
    assert not await store.finish_reset_request(request_id, now=now, token=token("c"), mail=mail())
    assert await store.find_reset_token("c" * 64) is None
    assert await store.count_pending_mail() == 1


async def test_racing_finishes_of_one_request_queue_one_mail(store: Store) -> None:
    """Ten workers finishing one request at once: one reports it, one mail is queued."""
    now = time.time()
    request_id = await store.queue_reset_request("a@example.com", now=now)
    results = await asyncio.gather(
        *(
            store.finish_reset_request(request_id, now=now, token=token(str(i)), mail=mail())
            for i in range(10)
        )
    )
    assert sum(results) == 1
    assert len(await store.claim_mail(now=now, lease=60, limit=100)) == 1


async def test_an_unknown_email_is_finished_without_token_or_mail(store: Store) -> None:
    """A request nobody gets mail for is marked done and queues nothing."""
    now = time.time()
    request_id = await store.queue_reset_request("nobody@example.com", now=now)
    assert await store.finish_reset_request(request_id, now=now)
    assert await store.count_pending_reset_requests() == 0
    assert await store.count_pending_mail() == 0


async def test_two_replicas_claim_each_request_once(
    store: Store, make_store: Callable[[], Store]
) -> None:
    """Two stores on one database claiming at once split the requests: each goes to one."""
    now = time.time()
    for i in range(40):
        await store.queue_reset_request(f"{i}@example.com", now=now)
    other = make_store()
    await other.open()
    try:
        claims = await asyncio.gather(
            *(s.claim_reset_requests(now=now, lease=60, limit=3) for s in [store, other] * 10)
        )
    finally:
        await other.close()
    ids = [r.id for batch in claims for r in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_purge_removes_old_done_requests_and_keeps_pending_ones(store: Store) -> None:
    """Purging drops requests done before the cut and keeps the pending ones."""
    now = time.time()
    done = await store.queue_reset_request("a@example.com", now=now - 20)
    await store.queue_reset_request("b@example.com", now=now - 20)
    await store.finish_reset_request(done, now=now - 10)
    assert await store.purge_reset_data(before=now) == 1
    assert await store.count_pending_reset_requests() == 1
