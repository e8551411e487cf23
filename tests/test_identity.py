"""change_identity: a migrated user's new email or username, checked like a capture and
against the legacy app (what the admin API's PATCH /admin/users/{id} calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proxy.errors import IdentityConflict, LookupFailed
from proxy.flows.identity import change_identity
from proxy.modes import write_mode
from store.base import User
from store.errors import RejectedCapture, UserNotFound
from tests.accounts import accounts
from tests.fixtures.legacy import FakeLegacy
from tests.fixtures.proxy import Proxy, StartProxy


@pytest.fixture
async def proxy(start_proxy: StartProxy, tmp_path: Path) -> Proxy:
    """authshim with the look-up configured."""
    result: Proxy = await start_proxy(accounts(tmp_path / "outbox"))
    return result


async def captured(proxy: Proxy, username: str, password: str) -> User:
    await proxy.form_login(username, password)
    user = await proxy.svc.store.find_user(username)
    assert user is not None
    return user


async def test_a_new_email_and_username_are_stored_and_shown(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """The new values are stored lower-case, the profile keeps them as typed, and the identity
    headers of the user's session follow at once."""
    bob = await captured(proxy, "bob", "builder-22")
    user = await change_identity(proxy.svc, bob.id, email="Robert@Example.com", username="Robert")
    assert (user.email, user.username) == ("robert@example.com", "robert")
    assert user.profile["email"] == "Robert@Example.com" and user.profile["username"] == "Robert"
    async with proxy.client.get(proxy.url("/.authshim/session")) as answer:
        assert answer.headers["X-Forwarded-Email"] == "Robert@Example.com"
    assert proxy.svc.counters.totals["identity.changed.email+username"] == 1


async def test_another_stored_users_value_conflicts(proxy: Proxy) -> None:
    """A stored user's email (in another case) is IdentityConflict(email, store)."""
    bob = await captured(proxy, "bob", "builder-22")
    proxy.client.cookie_jar.clear()
    await captured(proxy, "carol", "singer-333")
    with pytest.raises(IdentityConflict) as caught:
        await change_identity(proxy.svc, bob.id, email="CAROL@example.com")
    assert (caught.value.field, caught.value.where) == ("email", "store")
    assert await proxy.svc.store.get_user(bob.id) == bob


@pytest.mark.parametrize(
    ("change", "field"),
    [({"email": "alice@example.com"}, "email"), ({"username": "ALICE"}, "username")],
)
async def test_a_legacy_users_value_conflicts(
    proxy: Proxy, change: dict[str, str], field: str
) -> None:
    """An unmigrated legacy user's email or username is IdentityConflict(field, legacy)."""
    bob = await captured(proxy, "bob", "builder-22")
    with pytest.raises(IdentityConflict) as caught:
        await change_identity(proxy.svc, bob.id, **change)
    assert (caught.value.field, caught.value.where) == (field, "legacy")


async def test_the_users_own_legacy_record_is_no_conflict(proxy: Proxy, legacy: FakeLegacy) -> None:
    """When the legacy app already has the new email on this user's record, it is allowed."""
    bob = await captured(proxy, "bob", "builder-22")
    legacy.users["bob"]["email"] = "robert@example.com"
    user = await change_identity(proxy.svc, bob.id, email="robert@example.com")
    assert user.email == "robert@example.com"


async def test_invalid_values_unknown_users_and_lookup_errors_change_nothing(
    proxy: Proxy, legacy: FakeLegacy
) -> None:
    """A bad email is RejectedCapture, an unknown id UserNotFound, and a failed look-up is
    LookupFailed (never "nobody has it"); the user stays as they were."""
    bob = await captured(proxy, "bob", "builder-22")
    with pytest.raises(RejectedCapture) as caught:
        await change_identity(proxy.svc, bob.id, email="not an address")
    assert caught.value.reason == "bad_email"
    with pytest.raises(UserNotFound):
        await change_identity(proxy.svc, "no-such-user", email="x@example.com")
    legacy.lookup_status = 500
    with pytest.raises(LookupFailed):
        await change_identity(proxy.svc, bob.id, email="free@example.com")
    assert await proxy.svc.store.get_user(bob.id) == bob


async def test_in_cutover_the_legacy_app_is_not_asked(
    proxy: Proxy, legacy_server: Any, legacy: FakeLegacy
) -> None:
    """In cut-over only the store is checked; the legacy app may be gone."""
    bob = await captured(proxy, "bob", "builder-22")
    await write_mode(proxy.svc.store, "cutover")
    await proxy.svc.modes.refresh()
    await legacy_server.close()
    user = await change_identity(proxy.svc, bob.id, email="alice@example.com")
    assert user.email == "alice@example.com"
