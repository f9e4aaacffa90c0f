"""The console's Keys page, on the app in process: owners list, create, revoke and rotate API keys (secrets shown
once); editors and viewers are refused, forms need their CSRF token, and each change is audited with who made it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rejoinder.service.keys import key_status
from rejoinder.skills import Bot
from rejoinder.store.records import ApiKeyRecord, AuditRecord
from tests.helpers.app import Server, running
from tests.helpers.console import FAST_HASHER, SignedInClient, create_user, sign_in

KEYS = "/dashboard/keys"
_SECRET = re.compile(r'value="((?:pk|sk)_[A-Za-z0-9_-]{43})"')


@pytest.fixture
async def console(tmp_path: Path, shop_bot: Bot) -> AsyncIterator[Server]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot}) as server:
        server.app.state.accounts.hasher = FAST_HASHER
        await create_user(server.store, "owner@example.com", "owner")
        yield server


@pytest.fixture
async def owner(console: Server) -> SignedInClient:
    return await sign_in(console.client, console.store, "owner@example.com")


async def keys_of(console: Server) -> list[ApiKeyRecord]:
    return await console.store.credentials.list_api_keys("shop")


async def the_key(console: Server, kind: str) -> ApiKeyRecord:
    (key,) = [key for key in await keys_of(console) if key.kind == kind and key.revoked_at is None]
    return key


async def starts(console: Server, sdk_key: str) -> int:
    answer = await console.client.post(
        "/v1/conversations", json={"event": "welcome"}, headers={"Authorization": f"Bearer {sdk_key}"}
    )
    return answer.status_code


async def test_the_page_lists_each_bots_keys_by_id(console: Server, owner: SignedInClient) -> None:
    page = await owner.client.get(KEYS)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    for key in await keys_of(console):
        assert key.id in page.text
        assert f'action="/dashboard/keys/{key.id}/rotate"' in page.text
        assert f'href="/dashboard/keys/{key.id}/revoke"' in page.text
    assert console.keys["shop"].sdk_key not in page.text and console.keys["shop"].secret_key not in page.text
    assert 'aria-current="page">Keys<' in page.text
    assert '<label for="overlap-' in page.text


async def test_creating_a_pair_shows_the_secrets_once(console: Server, owner: SignedInClient) -> None:
    made = await owner.client.post(KEYS, data={"bot": "shop", "csrf_token": owner.csrf_token})
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    assert "only time" in made.text
    sdk_key, secret_key = _SECRET.findall(made.text)
    assert sdk_key.startswith("pk_") and secret_key.startswith("sk_")
    assert await starts(console, sdk_key) == 201
    assert len(await keys_of(console)) == 4
    listed = await owner.client.get(KEYS)
    assert sdk_key not in listed.text and secret_key not in listed.text

    (event,) = await key_events(console)
    assert event.kind == "keys_created" and event.detail is not None
    assert event.detail["key_id"] == "console:owner@example.com"

    unknown = await owner.client.post(KEYS, data={"bot": "nope", "csrf_token": owner.csrf_token})
    assert unknown.status_code == 404 and "no such bot" in unknown.text


async def test_revoking_asks_first_then_stops_the_key(console: Server, owner: SignedInClient) -> None:
    sdk = await the_key(console, "sdk")
    confirm = await owner.client.get(f"{KEYS}/{sdk.id}/revoke")
    assert confirm.status_code == 200
    assert f'action="/dashboard/keys/{sdk.id}/revoke"' in confirm.text and "cannot be undone" in confirm.text
    assert await starts(console, console.keys["shop"].sdk_key) == 201  # asking changed nothing

    revoked = await owner.client.post(f"{KEYS}/{sdk.id}/revoke", data={"csrf_token": owner.csrf_token})
    assert revoked.status_code == 303 and revoked.headers["location"] == f"{KEYS}?notice=revoked"
    assert await starts(console, console.keys["shop"].sdk_key) == 401
    page = await owner.client.get(revoked.headers["location"])
    assert "The key was revoked" in page.text
    (event,) = await key_events(console)
    assert event.kind == "key_revoked" and event.detail is not None
    assert event.detail == {"key_id": "console:owner@example.com", "api_key_id": sdk.id}

    missing = await owner.client.get(f"{KEYS}/key_000000000000000000000000/revoke")
    assert missing.status_code == 404


async def test_rotating_shows_the_new_key_once_and_the_old_works_for_the_overlap(
    console: Server, owner: SignedInClient
) -> None:
    sdk = await the_key(console, "sdk")
    rotated = await owner.client.post(
        f"{KEYS}/{sdk.id}/rotate", data={"overlap": "3600", "csrf_token": owner.csrf_token}
    )
    assert rotated.status_code == 200, rotated.text
    (new_key,) = _SECRET.findall(rotated.text)
    assert new_key.startswith("pk_") and sdk.id in rotated.text
    assert await starts(console, new_key) == 201
    assert await starts(console, console.keys["shop"].sdk_key) == 201
    old = next(key for key in await keys_of(console) if key.id == sdk.id)
    assert old.revoked_at is not None
    assert key_status(old, console.app.state.keys.clock()) == "retiring"
    assert (old.revoked_at - old.created_at).total_seconds() >= 3600
    page = await owner.client.get(KEYS)
    assert "retires" in page.text and new_key not in page.text

    again = await owner.client.post(
        f"{KEYS}/{sdk.id}/rotate", data={"overlap": "3600", "csrf_token": owner.csrf_token}
    )
    assert again.status_code == 409 and "already revoked or retiring" in again.text


@pytest.mark.parametrize("overlap", ["", "-5", "soon", "9999999999", str(31 * 86400)])
async def test_a_bad_overlap_is_refused_on_the_page(
    console: Server, owner: SignedInClient, overlap: str
) -> None:
    sdk = await the_key(console, "sdk")
    refused = await owner.client.post(
        f"{KEYS}/{sdk.id}/rotate", data={"overlap": overlap, "csrf_token": owner.csrf_token}
    )
    assert refused.status_code == 400
    assert 'class="flash flash-error"' in refused.text
    assert len(await keys_of(console)) == 2


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_only_owners_reach_the_keys(console: Server, role: str) -> None:
    await create_user(console.store, f"{role}@example.com", role)
    signed = await sign_in(console.client, console.store, f"{role}@example.com")
    page = await signed.client.get(KEYS)
    assert page.status_code == 403 and "needs the owner role" in page.text
    assert 'href="/dashboard/keys"' not in (await signed.client.get("/dashboard")).text
    sdk = await the_key(console, "sdk")
    assert (await signed.client.get(f"{KEYS}/{sdk.id}/revoke")).status_code == 403
    forged = [
        (KEYS, {"bot": "shop"}),
        (f"{KEYS}/{sdk.id}/revoke", {}),
        (f"{KEYS}/{sdk.id}/rotate", {"overlap": "0"}),
    ]
    for path, data in forged:
        refused = await signed.client.post(path, data={**data, "csrf_token": signed.csrf_token})
        assert refused.status_code == 403, path
    assert {key_status(key, console.app.state.keys.clock()) for key in await keys_of(console)} == {"active"}
    assert len(await keys_of(console)) == 2
    assert await key_events(console) == []


async def test_a_change_without_its_csrf_token_is_refused(console: Server, owner: SignedInClient) -> None:
    sdk = await the_key(console, "sdk")
    for path, data in (
        (KEYS, {"bot": "shop"}),
        (f"{KEYS}/{sdk.id}/revoke", {}),
        (f"{KEYS}/{sdk.id}/rotate", {}),
    ):
        refused = await owner.client.post(path, data=data)
        assert refused.status_code == 403, path
        wrong = await owner.client.post(path, data={**data, "csrf_token": "0" * 64})
        assert wrong.status_code == 403, path
    assert len(await keys_of(console)) == 2
    assert await starts(console, console.keys["shop"].sdk_key) == 201


async def key_events(console: Server) -> list[AuditRecord]:
    events, _cursor = await console.store.audit.list(bot_id="shop")
    return [event for event in events if event.kind.startswith("key")]
