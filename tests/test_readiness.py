"""``proxy/readiness.py``: the cut-over readiness figure counts users, not their names."""

from __future__ import annotations

from proxy.readiness import LoginActivity, day_before
from store.base import Store, User


def _user(n: int, email: str | None, username: str | None) -> User:
    return User(
        id=f"u{n}", legacy_id=str(n), email=email, username=username, password_hash="x",
        profile={}, source="login", created_at=0.0, last_login_at=None, login_count=0,
        blocked=False, session_epoch=0,
    )  # fmt: skip


async def test_each_user_counts_once_whatever_name_they_typed(store: Store) -> None:
    """3 migrated users logging in by email and by username, 1 not captured: 3 of 4 users."""
    activity = LoginActivity(b"k" * 32)
    users = [_user(1, "alice@x.org", "alice"), _user(2, "bob@x.org", "bob"), _user(3, None, "cy")]
    for user in users:
        activity.note(user.username, user)  # captured: the legacy login typed the username
        activity.note(None, user)  # answered locally, by email on another route
        activity.note(user.email, user)
    activity.note("dora", None)  # accepted by the legacy app, capture rejected
    await activity.flush(store)
    assert await store.login_readiness(since_day=day_before(1)) == (4, 3)


async def test_an_uncaptured_login_becomes_migrated_under_the_same_name(store: Store) -> None:
    """A rejected capture by email, then a captured login of that user: one user, migrated."""
    activity = LoginActivity(b"k" * 32)
    activity.note("Eve@X.org", None)
    activity.note("eve@x.org", _user(5, "eve@x.org", "eve"))
    await activity.flush(store)
    assert await store.login_readiness(since_day=day_before(1)) == (1, 1)
