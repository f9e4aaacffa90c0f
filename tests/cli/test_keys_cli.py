"""``rejoinder keys create|list|revoke|rotate`` on a SQLite file: secrets printed once, keys that work or stop as
the command says, changes audited as the command line's, and clear errors without tracebacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from rejoinder.cli import app
from rejoinder.config import get_settings
from rejoinder.credentials import hash_secret
from rejoinder.service.keys import Keys
from rejoinder.store import Store
from rejoinder.store.records import ApiKeyRecord, AuditRecord
from tests.helpers.shop_backend import SHOP_DIR

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'rejoinder.db'}"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def keys(*args: str) -> Result:
    return CliRunner().invoke(app, ["keys", *args])


def valid(url: str, secret: str) -> ApiKeyRecord | None:
    """The key ``secret`` if it authenticates now, as a server on this database would find it."""

    async def find() -> ApiKeyRecord | None:
        store = Store.from_url(url)
        try:
            return await Keys(store).find(hash_secret(secret))
        finally:
            await store.close()

    return asyncio.run(find())


def audit_trail(url: str) -> list[AuditRecord]:
    async def read() -> list[AuditRecord]:
        store = Store.from_url(url)
        try:
            events, _cursor = await store.audit.list(bot_id="shop")
            return list(reversed(events))
        finally:
            await store.close()

    return asyncio.run(read())


def create(url: str) -> dict[str, Any]:
    result = keys("create", str(SHOP_DIR), "--json")
    assert result.exit_code == 0, result.output
    created: dict[str, Any] = json.loads(result.stdout)
    return created


def test_create_prints_a_working_pair_once(database: str) -> None:
    result = keys("create", str(SHOP_DIR))
    assert result.exit_code == 0, result.output
    assert "shown only this once" in result.stdout
    sdk_key = next(word for word in result.stdout.split() if word.startswith("pk_"))
    secret_key = next(word for word in result.stdout.split() if word.startswith("sk_"))
    assert valid(database, sdk_key) is not None and valid(database, secret_key) is not None

    created = create(database)
    assert created["bot"] == "shop"
    assert created["sdk_key"].startswith("pk_") and created["secret_key"].startswith("sk_")
    assert created["sdk_key_id"].startswith("key_") and created["secret_key_id"].startswith("key_")
    assert [event.kind for event in audit_trail(database)] == ["keys_created", "keys_created"]
    assert all(event.detail and event.detail["key_id"] == "cli" for event in audit_trail(database))


def test_list_shows_ids_kinds_and_status_never_a_secret(database: str) -> None:
    empty = keys("list", str(SHOP_DIR))
    assert empty.exit_code == 0 and "has no keys" in empty.stdout
    created = create(database)

    table = keys("list", str(SHOP_DIR))
    assert table.exit_code == 0, table.output
    assert created["sdk_key_id"] in table.stdout and created["secret_key_id"] in table.stdout
    assert created["sdk_key"] not in table.stdout and created["secret_key"] not in table.stdout
    assert table.stdout.splitlines()[0].split() == [
        "id",
        "kind",
        "status",
        "created",
        "(UTC)",
        "last",
        "used",
        "(UTC)",
        "stops",
        "(UTC)",
    ]

    listed = json.loads(keys("list", str(SHOP_DIR), "--json").stdout)
    assert listed["bot"] == "shop"
    assert {(item["id"], item["kind"], item["status"]) for item in listed["items"]} == {
        (created["sdk_key_id"], "sdk", "active"),
        (created["secret_key_id"], "secret", "active"),
    }


def test_revoke_stops_the_key(database: str) -> None:
    created = create(database)
    result = keys("revoke", created["sdk_key_id"])
    assert result.exit_code == 0, result.output
    assert f"Revoked sdk key {created['sdk_key_id']} of bot shop" in result.stdout
    assert valid(database, created["sdk_key"]) is None
    assert valid(database, created["secret_key"]) is not None
    assert audit_trail(database)[-1].kind == "key_revoked"

    again = keys("revoke", created["sdk_key_id"], "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["status"] == "revoked"


def test_rotate_prints_the_new_key_and_keeps_the_old_for_the_overlap(database: str) -> None:
    created = create(database)
    result = keys("rotate", created["secret_key_id"], "--overlap", "1h", "--json")
    assert result.exit_code == 0, result.output
    rotated = json.loads(result.stdout)
    assert rotated["key"].startswith("sk_") and rotated["kind"] == "secret" and rotated["status"] == "active"
    assert rotated["replaces"]["id"] == created["secret_key_id"]
    assert rotated["replaces"]["status"] == "retiring"
    stops = datetime.fromisoformat(rotated["replaces"]["revoked_at"])
    assert stops - datetime.fromisoformat(rotated["created_at"]) == timedelta(hours=1)
    assert valid(database, rotated["key"]) is not None
    assert valid(database, created["secret_key"]) is not None  # during the overlap
    event = audit_trail(database)[-1]
    assert event.kind == "key_rotated" and event.detail is not None
    assert event.detail["key_id"] == "cli" and event.detail["new_api_key_id"] == rotated["id"]

    text = keys("rotate", created["sdk_key_id"])  # the default overlap: a day
    assert text.exit_code == 0, text.output
    assert "shown only this once" in text.stdout
    new_key = next(word for word in text.stdout.split() if word.startswith("pk_"))
    assert valid(database, new_key) is not None
    statuses = {item["status"] for item in json.loads(keys("list", str(SHOP_DIR), "--json").stdout)["items"]}
    assert statuses == {"active", "retiring"}


def test_rotate_with_no_overlap_stops_the_old_key_at_once(database: str) -> None:
    created = create(database)
    result = keys("rotate", created["sdk_key_id"], "--overlap", "0")
    assert result.exit_code == 0, result.output
    assert valid(database, created["sdk_key"]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["revoke", "key_000000000000000000000000"], "rejoinder keys revoke: There is no API key"),
        (["rotate", "key_000000000000000000000000"], "rejoinder keys rotate: There is no API key"),
        (["rotate", "KEY", "--overlap", "soon"], "rejoinder keys rotate: --overlap: expected a duration"),
        (["rotate", "KEY", "--overlap", "31d"], "rejoinder keys rotate: --overlap: at most 30 days"),
        (["rotate", "KEY", "--overlap", "-1h"], "rejoinder keys rotate: --overlap: expected a duration"),
        (["list", "/no/such/bot"], "rejoinder keys list:"),
    ],
)
def test_refusals_are_one_clear_line(database: str, args: list[str], message: str) -> None:
    created = create(database)
    args = [created["sdk_key_id"] if arg == "KEY" else arg for arg in args]
    result = keys(*args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.output
    assert valid(database, created["sdk_key"]) is not None


def test_rotating_a_retiring_key_is_refused(database: str) -> None:
    created = create(database)
    assert keys("rotate", created["sdk_key_id"]).exit_code == 0
    again = keys("rotate", created["sdk_key_id"])
    assert again.exit_code == 1
    assert "already revoked or retiring" in again.stderr
