"""The admin API's API keys (secret key): list, create, revoke and rotate the bot's keys, with their refusals and
their audit events; the keys made or changed work (or stop) as the answers say."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.helpers.admin_api import Api
from tests.helpers.clients import bearer

pytestmark = pytest.mark.timeout(30)


async def keys_of(api: Api, secret_key: str | None = None) -> list[dict[str, Any]]:
    answer = await api.http.get("/v1/keys", headers=bearer(secret_key or api.secret_key))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def key_id_of(api: Api, kind: str) -> str:
    (key,) = [item for item in await keys_of(api) if item["kind"] == kind and item["status"] == "active"]
    return str(key["id"])


async def audit_events(api: Api, secret_key: str | None = None) -> list[dict[str, Any]]:
    answer = await api.http.get("/v1/audit", headers=bearer(secret_key or api.secret_key))
    assert answer.status_code == 200, answer.text
    return [item for item in answer.json()["items"] if item["kind"].startswith("key")]


async def starts(api: Api, sdk_key: str) -> int:
    answer = await api.http.post("/v1/conversations", json={"event": "hello"}, headers=bearer(sdk_key))
    return answer.status_code


async def test_listing_shows_the_bots_keys_and_never_a_secret(api: Api) -> None:
    answer = await api.http.get("/v1/keys", headers=api.admin)
    assert answer.status_code == 200
    body = answer.json()
    assert body["next_cursor"] is None
    assert sorted(item["kind"] for item in body["items"]) == ["sdk", "secret"]
    assert all(item["bot_id"] == "chat" and item["status"] == "active" for item in body["items"])
    assert all(
        set(item) == {"id", "bot_id", "kind", "status", "created_at", "revoked_at"} for item in body["items"]
    )
    assert api.secret_key not in answer.text and api.sdk_key not in answer.text
    # The other bot's keys are its own.
    assert {item["bot_id"] for item in await keys_of(api, api.other_secret_key)} == {"other"}


async def test_creating_a_pair_shows_the_secrets_once_and_they_work(api: Api) -> None:
    answer = await api.http.post("/v1/keys", headers=api.admin | {"user-agent": "ops-script/1"})
    assert answer.status_code == 201, answer.text
    sdk, secret = answer.json()["items"]
    assert sdk["kind"] == "sdk" and sdk["key"].startswith("pk_")
    assert secret["kind"] == "secret" and secret["key"].startswith("sk_")
    assert await starts(api, sdk["key"]) == 201
    assert (await api.http.get("/v1/keys", headers=bearer(secret["key"]))).status_code == 200
    assert len(await keys_of(api)) == 4
    listed = (await api.http.get("/v1/keys", headers=api.admin)).text
    assert sdk["key"] not in listed and secret["key"] not in listed

    (event,) = await audit_events(api)
    caller = await key_id_of_caller(api)
    assert event["kind"] == "keys_created" and event["user_agent"] == "ops-script/1"
    assert event["detail"] == {"key_id": caller, "sdk_key_id": sdk["id"], "secret_key_id": secret["id"]}


async def key_id_of_caller(api: Api) -> str:
    """The id of ``api.secret_key``: the first secret key the bot had."""
    secrets = sorted(
        (item for item in await keys_of(api) if item["kind"] == "secret"), key=lambda item: item["created_at"]
    )
    return str(secrets[0]["id"])


async def test_revoking_an_sdk_key_stops_it_at_once(api: Api) -> None:
    sdk_id = await key_id_of(api, "sdk")
    assert await starts(api, api.sdk_key) == 201

    answer = await api.http.delete(f"/v1/keys/{sdk_id}", headers=api.admin)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "revoked" and answer.json()["revoked_at"] is not None
    refused = await api.http.post("/v1/conversations", json={"event": "hello"}, headers=bearer(api.sdk_key))
    assert refused.status_code == 401 and refused.json()["type"] == "unauthorized"
    (event,) = await audit_events(api)
    assert event["kind"] == "key_revoked"
    assert event["detail"] == {"key_id": await key_id_of(api, "secret"), "api_key_id": sdk_id}
    # Again: the same answer, nothing more written.
    again = await api.http.delete(f"/v1/keys/{sdk_id}", headers=api.admin)
    assert again.status_code == 200 and again.json()["revoked_at"] == answer.json()["revoked_at"]
    assert len(await audit_events(api)) == 1


async def test_the_calling_key_is_revoked_only_when_the_caller_says_so(api: Api) -> None:
    own = await key_id_of(api, "secret")
    refused = await api.http.delete(f"/v1/keys/{own}", headers=api.admin)
    assert refused.status_code == 409 and refused.json()["type"] == "key_in_use"
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await api.http.get("/v1/keys", headers=api.admin)).status_code == 200

    done = await api.http.delete(f"/v1/keys/{own}", params={"revoke_own_key": "true"}, headers=api.admin)
    assert done.status_code == 200 and done.json()["status"] == "revoked"
    assert (await api.http.get("/v1/keys", headers=api.admin)).status_code == 401


async def test_rotating_answers_the_new_secret_and_both_keys_work_during_the_overlap(api: Api) -> None:
    sdk_id = await key_id_of(api, "sdk")
    answer = await api.http.post(f"/v1/keys/{sdk_id}:rotate", json={"overlap": "1h"}, headers=api.admin)

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["key"].startswith("pk_") and body["kind"] == "sdk" and body["status"] == "active"
    assert body["replaces"]["id"] == sdk_id and body["replaces"]["status"] == "retiring"
    assert await starts(api, body["key"]) == 201
    assert await starts(api, api.sdk_key) == 201  # the old key, during the overlap
    statuses = sorted(item["status"] for item in await keys_of(api) if item["kind"] == "sdk")
    assert statuses == ["active", "retiring"]
    (event,) = await audit_events(api)
    assert event["kind"] == "key_rotated"
    assert event["detail"]["api_key_id"] == sdk_id and event["detail"]["new_api_key_id"] == body["id"]
    assert event["detail"]["retires_at"] == body["replaces"]["revoked_at"]

    again = await api.http.post(f"/v1/keys/{sdk_id}:rotate", headers=api.admin)
    assert again.status_code == 409 and again.json()["type"] == "key_not_active"


async def test_rotating_with_no_overlap_stops_the_old_key_and_the_default_is_a_day(api: Api) -> None:
    sdk_id = await key_id_of(api, "sdk")
    now = await api.http.post(f"/v1/keys/{sdk_id}:rotate", json={"overlap": 0}, headers=api.admin)
    assert now.status_code == 201 and now.json()["replaces"]["status"] == "revoked"
    assert await starts(api, api.sdk_key) == 401

    secret_id = await key_id_of(api, "secret")
    default = await api.http.post(f"/v1/keys/{secret_id}:rotate", headers=api.admin)
    assert default.status_code == 201
    retires = default.json()["replaces"]["revoked_at"]
    created = default.json()["created_at"]
    assert _seconds_between(created, retires) == 24 * 3600


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"overlap": -1}, "body.overlap"),
        ({"overlap": 31 * 86400}, "body.overlap"),
        ({"overlap": "soon"}, "body.overlap"),
        ({"overlap_seconds": 60}, "body.overlap_seconds"),
    ],
)
async def test_a_bad_overlap_is_a_422(api: Api, body: dict[str, Any], field: str) -> None:
    sdk_id = await key_id_of(api, "sdk")
    answer = await api.http.post(f"/v1/keys/{sdk_id}:rotate", json=body, headers=api.admin)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "validation_error"
    assert [error["field"] for error in answer.json()["errors"]] == [field]
    assert len(await keys_of(api)) == 2


async def test_unknown_and_other_bots_keys_are_404(api: Api) -> None:
    other_keys = await keys_of(api, api.other_secret_key)
    for key_id in ("key_000000000000000000000000", other_keys[0]["id"], "x" * 100):
        for method, path in (("DELETE", f"/v1/keys/{key_id}"), ("POST", f"/v1/keys/{key_id}:rotate")):
            answer = await api.http.request(method, path, headers=api.admin)
            assert answer.status_code == 404, (key_id, method, answer.text)
            assert answer.json()["type"] == "key_not_found"
    too_long = await api.http.delete(f"/v1/keys/{'x' * 101}", headers=api.admin)
    assert too_long.status_code == 422
    assert {item["status"] for item in await keys_of(api, api.other_secret_key)} == {"active"}


async def test_keys_routes_take_only_the_secret_key(api: Api) -> None:
    sdk_id = await key_id_of(api, "sdk")
    for method, path in (
        ("GET", "/v1/keys"),
        ("POST", "/v1/keys"),
        ("DELETE", f"/v1/keys/{sdk_id}"),
        ("POST", f"/v1/keys/{sdk_id}:rotate"),
    ):
        assert (await api.http.request(method, path)).status_code == 401
        with_sdk = await api.http.request(method, path, headers=bearer(api.sdk_key))
        assert with_sdk.status_code == 403, (method, path)
        from_browser = await api.http.request(
            method, path, headers=api.admin | {"Origin": "http://shop.example"}
        )
        assert from_browser.status_code == 403, (method, path)
    assert {item["status"] for item in await keys_of(api)} == {"active"}
    assert len(await keys_of(api)) == 2


async def test_the_openapi_document_describes_the_keys_routes(api: Api) -> None:
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/keys"]) == {"get", "post"}
    rotate = paths["/v1/keys/{key_id}:rotate"]["post"]
    assert {"201", "404", "409", "422"} <= set(rotate["responses"])
    assert "revoke" in paths["/v1/keys/{key_id}"]["delete"]["summary"].lower()
