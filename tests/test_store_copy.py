"""Copying a store into another (``authshim store migrate-to``): exact, repeatable, batched."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.commands.store import _TerminalProgress, masked
from store.base import NewUser, Store, User
from store.copy import copy_store
from store.factory import create_store
from tests.test_store_contract import HASH


@pytest.fixture
def source_url(tmp_path: Path) -> str:
    """The URL of the SQLite store copied from."""
    return f"sqlite:///{tmp_path / 'source' / 'authshim.db'}"


@pytest.fixture
async def source(source_url: str) -> AsyncIterator[Store]:
    """A SQLite store with 7 users in varied states, settings and counters over two days."""
    s = create_store(source_url)
    await s.open()
    for i in range(7):
        user = await s.insert_user(
            NewUser(f"u{i}@x.io", f"user{i}", HASH, {"n": i, "nested": {"a": [1, 2]}}, f"L{i}")
        )
        if i % 2:
            await s.record_login(user.id, new_hash=f"{HASH}{i}")
        if i % 3 == 0:
            await s.revoke_sessions(user.id)
    blocked = await s.find_user("user5")
    assert blocked is not None
    await s.set_blocked(blocked.id, True)
    await s.set_setting("mode", "cutover")
    await s.set_setting("other", "kept")
    await s.incr("login.captured", 7, day="2024-05-01")
    await s.incr("login.local_ok", 3, day="2024-05-02")
    yield s
    await s.close()


async def _all(store: Store) -> list[User]:
    return await store.users_after("", 1000)


async def test_copy_keeps_users_settings_and_counters_exactly(source: Store, store: Store) -> None:
    """Every user comes over field for field (id, hash, times, epoch), with settings, counters."""
    report = await copy_store(source, store)
    assert (report.users, report.settings, report.counters) == (7, 2, 2)
    assert await _all(store) == await _all(source)
    assert await store.all_settings() == {"mode": "cutover", "other": "kept"}
    assert await store.counters() == await source.counters()
    copied = await store.find_user("user3")
    assert copied is not None and (copied.login_count, copied.session_epoch) == (1, 1)


async def test_a_second_copy_changes_nothing_and_adds_what_is_new(
    source: Store, store: Store
) -> None:
    """Run twice, counters are not doubled and users not duplicated; later changes come over."""
    await copy_store(source, store)
    await copy_store(source, store)
    assert await store.counters() == {
        ("2024-05-01", "login.captured"): 7,
        ("2024-05-02", "login.local_ok"): 3,
    }
    assert await store.count_users() == 7
    late = await source.insert_user(NewUser("late@x.io", "late", HASH))
    first = await source.find_user("user0")
    assert first is not None
    await source.revoke_sessions(first.id)
    await source.incr("login.captured", 1, day="2024-05-01")
    await copy_store(source, store)
    assert await _all(store) == await _all(source)
    assert await store.get_user(late.id) == late
    assert (await store.counters())[("2024-05-01", "login.captured")] == 8


async def test_small_batches_copy_everything_and_report_progress(
    source: Store, store: Store
) -> None:
    """With batches of 3, seven users are copied in three writes, progress after each."""
    seen: list[tuple[int, int]] = []
    await copy_store(
        source, store, batch=3, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert await _all(store) == await _all(source)


async def test_users_only_in_the_target_are_kept(source: Store, store: Store) -> None:
    """A user a replica already captured into the target (another id, other names) stays."""
    own = await store.insert_user(NewUser("replica@x.io", "replica", HASH))
    await copy_store(source, store)
    assert await store.get_user(own.id) == own
    assert await store.count_users() == 8


async def test_cli_migrate_to_from_a_config(
    source: Store,
    source_url: str,
    store: Store,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`authshim store migrate-to URL --config FILE` copies the config's store and says what."""
    config = tmp_path / "authshim.toml"
    config.write_text(f'[store]\nurl = "{source_url}"\n')
    argv = ["store", "migrate-to", store_url, "--config", str(config), "--batch", "2"]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr()
    assert out.out.startswith("copied 7 users, 2 settings and 2 counters from sqlite:///")
    assert out.err == ""  # not a terminal: no progress line
    assert await _all(store) == await _all(source)
    assert await asyncio.to_thread(main, argv) == 0  # and again, to the same result
    assert await store.counters() == await source.counters()


async def test_cli_explains_a_conflicting_user_in_the_target(
    source: Store, source_url: str, store: Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target user with a source user's email under another id stops the copy, exit 1."""
    await store.insert_user(NewUser("u4@x.io", "someone-else", HASH))
    argv = ["store", "migrate-to", store_url, "--from", source_url]
    assert await asyncio.to_thread(main, argv) == 1
    assert "another user (another id) with the same email" in capsys.readouterr().err


def test_cli_refuses_the_same_store_and_bad_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Copying a store onto itself or to a URL of no known kind exits 2 with a reason."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert main(["store", "migrate-to", url, "--from", url]) == 2
    assert "the same store" in capsys.readouterr().err
    assert main(["store", "migrate-to", "mysql://x/y", "--from", url]) == 2
    assert "unsupported store URL scheme" in capsys.readouterr().err


def test_masked_hides_a_password() -> None:
    """Printed URLs never show the database password."""
    assert masked("postgresql://app:s3cret@db:5432/x") == "postgresql://app:****@db:5432/x"
    assert masked("postgresql://app@db/x") == "postgresql://app@db/x"


def test_terminal_progress_rewrites_one_line() -> None:
    """On a terminal, each batch rewrites one status line with the count and the share."""
    out = io.StringIO()
    progress = _TerminalProgress(out)
    progress(1000, 4000)
    progress(4000, 4000)
    assert out.getvalue() == (
        "\rcopying users: 1,000 of 4,000 (25%)\rcopying users: 4,000 of 4,000 (100%)"
    )
