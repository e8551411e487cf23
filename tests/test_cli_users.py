"""``authshim users ...``, ``authshim stats`` and ``authshim mode --json``, called through main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.admin.export import user_from_record
from proxy.cli import main
from store.factory import create_store
from tests import admin_seed


@pytest.fixture
async def seeded(sqlite_url: str) -> str:
    """A SQLite store with 120 generated users."""
    store = create_store(sqlite_url)
    await store.open()
    await store.close()
    await admin_seed.seed(sqlite_url, 120)
    return sqlite_url


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_users_list_pages_and_prints_json(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`users list --json` pages with the printed token; the table names the next page."""
    assert main(["users", "list", "--store", seeded, "--limit", "100", "--json"]) == 0
    first = _json(capsys)
    assert isinstance(first, dict) and len(first["users"]) == 100 and first["next_page"]
    args = ["users", "list", "--store", seeded, "--limit", "100", "--page", first["next_page"]]
    assert main([*args, "--json"]) == 0
    assert len(_json(capsys)["users"]) == 20  # type: ignore[index]
    assert main(["users", "list", "--store", seeded, "--limit", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["id", "email", "username"] and out[-1].startswith("more: --page")


def test_users_search_and_show(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`users search` finds by prefix; `users show` takes an email and never prints a hash."""
    assert main(["users", "search", "heidi1", "--store", seeded, "--json"]) == 0
    found = _json(capsys)["users"]  # type: ignore[index]
    assert found and all(u["username"].startswith("heidi.1") for u in found)
    assert main(["users", "show", found[0]["email"], "--store", seeded]) == 0
    out = capsys.readouterr().out
    assert found[0]["id"] in out and "argon2" not in out
    assert main(["users", "show", "nobody@x.io", "--store", seeded]) == 1
    assert main(["users", "list", "--store", seeded, "--since", "yesterday-ish"]) == 2


def test_users_block_unblock_delete(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """block and unblock flip the flag; delete needs --yes when nobody can be asked."""
    assert main(["users", "block", "alice.0", "--store", seeded, "--json"]) == 0
    assert _json(capsys)["blocked"] is True  # type: ignore[index]
    assert main(["users", "unblock", "alice.0", "--store", seeded, "--json"]) == 0
    assert _json(capsys)["blocked"] is False  # type: ignore[index]
    assert main(["users", "delete", "alice.0", "--store", seeded]) == 2
    assert main(["users", "delete", "alice.0", "--store", seeded, "--yes"]) == 0
    assert main(["users", "show", "alice.0", "--store", seeded]) == 1


def test_users_export_writes_ndjson(
    seeded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`users export -o FILE` writes every user, one readable record a line."""
    target = tmp_path / "users.ndjson"
    assert main(["users", "export", "--store", seeded, "-o", str(target)]) == 0
    lines = target.read_text().splitlines()
    assert len(lines) == 120
    assert user_from_record(json.loads(lines[7])).password_hash == admin_seed.HASH


def test_stats_and_mode_json(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --json` reports the users; `mode --json` prints an object; tables by default."""
    assert main(["stats", "--store", seeded, "--json", "--days", "3"]) == 0
    stats = _json(capsys)
    assert stats["users"]["total"] == 120 and len(stats["migrated_per_day"]) == 3  # type: ignore[index]
    assert main(["stats", "--store", seeded]) == 0
    assert "users migrated: 120" in capsys.readouterr().out
    assert main(["mode", "--store", seeded, "--json"]) == 0
    assert _json(capsys) == {"mode": "migrate", "store": seeded}
