"""Keys, origins, CORS and sessions: who may call what, from where."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import Depends

from rejoinder.server.auth import KeyCaller, hash_secret, require_secret_key, verify_user
from rejoinder.skills import Bot
from tests.helpers.tables import open_session

if TYPE_CHECKING:
    from tests.helpers.app import Server

ALLOWED = "http://127.0.0.1:8000"
EVIL = "https://evil.example"


async def start(server: Server, headers: dict[str, str]) -> Any:
    return await server.client.post("/v1/conversations", json={"event": "welcome"}, headers=headers)


# ------------------------------------------------------------------------------------------------ keys


async def test_a_missing_or_unknown_key_is_401(server: Server) -> None:
    missing = await start(server, {})
    basic = await start(server, {"Authorization": "Basic dXNlcjpwYXNz"})
    unknown = await start(server, {"Authorization": "Bearer pk_" + "x" * 43})

    for response in (missing, basic, unknown):
        assert response.status_code == 401
        assert response.json()["type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


async def test_the_secret_key_or_a_session_cannot_start_a_conversation(server: Server) -> None:
    session = (await server.start())["session"]

    for credential in (server.keys["shop"].secret_key, session):
        response = await start(server, server.bearer(credential))
        assert response.status_code == 403
        assert response.json()["type"] == "forbidden"
        assert "SDK key" in response.json()["detail"]


async def test_keys_and_sessions_are_stored_only_as_hashes(server: Server) -> None:
    session = (await server.start())["session"]
    keys = server.keys["shop"]

    def stored(conn: sa.Connection) -> str:
        return repr(conn.execute(sa.text("SELECT * FROM api_keys")).all()) + repr(
            conn.execute(sa.text("SELECT * FROM sessions")).all()
        )

    dump = await server.store.database.read(stored)

    assert keys.sdk_key.startswith("pk_") and keys.secret_key.startswith("sk_")
    for secret in (keys.sdk_key, keys.secret_key, session):
        assert len(secret.split("_", 1)[1]) >= 43  # 256 bits in URL-safe base64
        assert secret not in dump
        assert hash_secret(secret) in dump


# ------------------------------------------------------------------------------------------------ origins and CORS


async def test_the_sdk_key_works_from_an_allowed_origin_and_without_one(server: Server) -> None:
    from_page = await start(server, server.sdk(Origin=ALLOWED))
    from_server = await start(server, server.sdk())

    assert from_page.status_code == from_server.status_code == 201
    assert from_page.headers["access-control-allow-origin"] == "*"


async def test_the_sdk_key_is_refused_from_another_origin(server: Server) -> None:
    response = await start(server, server.sdk(Origin=EVIL))

    assert response.status_code == 403
    assert response.json()["type"] == "origin_not_allowed"
    assert EVIL in response.json()["detail"]
    # The page may read the refusal (and tell its developer which origin to add), never cookies.
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_an_origin_allowed_for_one_bot_is_refused_for_another(server: Server) -> None:
    response = await start(server, server.sdk("other", Origin=ALLOWED))

    assert response.status_code == 403
    assert response.json()["type"] == "origin_not_allowed"


PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_cors_preflight_of_the_client_api_lets_every_origin_hear_its_answer(server: Server) -> None:
    # The route itself then refuses an origin its bot does not allow, with 403 origin_not_allowed.
    for path in (
        "/v1/conversations",
        "/v1/conversations/resume",
        "/v1/conversations/c1/messages",
        "/v1/widget",
    ):
        allowed = await server.client.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})
        stranger = await server.client.options(path, headers={"Origin": EVIL, **PREFLIGHT})

        assert allowed.status_code == stranger.status_code == 200, path
        assert allowed.headers["access-control-allow-origin"] == "*"
        assert stranger.headers["access-control-allow-origin"] == "*"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in stranger.headers


async def test_cors_preflight_of_other_routes_is_answered_for_allowed_origins_only(server: Server) -> None:
    for path in ("/v1/conversations/c1/tokens", "/v1/skills", "/v1/audit"):
        allowed = await server.client.options(path, headers={"Origin": ALLOWED, **PREFLIGHT})
        refused = await server.client.options(path, headers={"Origin": EVIL, **PREFLIGHT})

        assert allowed.status_code == 200, path
        assert allowed.headers["access-control-allow-origin"] == ALLOWED
        assert refused.status_code == 400, path
        assert "access-control-allow-origin" not in refused.headers


async def test_a_session_is_refused_from_another_origin(server: Server) -> None:
    started = await server.start()

    response = await server.client.get(
        f"/v1/conversations/{started['conversation_id']}/messages",
        headers=server.bearer(started["session"], Origin=EVIL),
    )

    assert response.status_code == 403
    assert response.json()["type"] == "origin_not_allowed"


@pytest.fixture
def secret_route(server: Server) -> str:
    """A route guarded by the secret key, as the admin API's are."""

    async def whoami(caller: Annotated[KeyCaller, Depends(require_secret_key)]) -> dict[str, str]:
        return {"bot": caller.bot.id}

    server.app.add_api_route("/test/whoami", whoami)
    return "/test/whoami"


async def test_the_secret_key_is_accepted_from_servers_only(server: Server, secret_route: str) -> None:
    secret = server.bearer(server.keys["shop"].secret_key)

    from_server = await server.client.get(secret_route, headers=secret)
    from_browser = await server.client.get(secret_route, headers={**secret, "Origin": ALLOWED})
    same_origin = await server.client.get(secret_route, headers={**secret, "Origin": "http://rejoinder.test"})
    sdk_key = await server.client.get(secret_route, headers=server.sdk())

    assert (from_server.status_code, from_server.json()) == (200, {"bot": "shop"})
    assert (from_browser.status_code, from_browser.json()["type"]) == (403, "forbidden")
    assert same_origin.status_code == 200  # the dashboard served by this very server
    assert (sdk_key.status_code, sdk_key.json()["type"]) == (403, "forbidden")


# ------------------------------------------------------------------------------------------------ sessions


async def test_a_session_of_a_bot_no_longer_served_is_refused(server: Server, shop_bot: Bot) -> None:
    started = await server.start()
    unknown_bot = Bot(config=shop_bot.config.model_copy(update={"id": "gone"}), skills=shop_bot.skills)
    secret, _ = await open_session(
        server.store, unknown_bot, started["conversation_id"], server.service.clock()
    )

    response = await server.client.get(
        f"/v1/conversations/{started['conversation_id']}/messages", headers=server.bearer(secret)
    )

    assert response.status_code == 401


async def test_a_session_lives_as_long_as_the_bot_says(server: Server) -> None:
    started = await server.start()
    session = await server.store.credentials.find_session(hash_secret(started["session"]))

    assert session is not None
    assert session.expires_at - session.created_at == timedelta(hours=12)
    assert session.conversation_id == started["conversation_id"]
    assert session.bot_id == "shop"


# ------------------------------------------------------------------------------------------------ identity


def test_verify_user_keeps_an_id_only_with_the_right_hash(
    shop_bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rejoinder.auth")
    environ = {"SHOP_IDENTITY_SECRET": "s3cret"}
    good = hmac.new(b"s3cret", b"u-1", hashlib.sha256).hexdigest()

    assert verify_user(shop_bot, {"id": "u-1", "hash": good}, environ) == {"id": "u-1", "verified": True}
    assert verify_user(shop_bot, {"id": "u-1", "hash": good.upper()}, environ)["verified"] is True
    assert verify_user(shop_bot, {"id": "u-2", "hash": good}, environ) == {"verified": False}
    assert verify_user(shop_bot, {"id": "u-1", "hash": "é" * 64}, environ) == {"verified": False}
    assert verify_user(shop_bot, {"id": "u-1", "hash": good}, {}) == {"verified": False}
    assert verify_user(shop_bot, {"name": "Ada"}, environ) == {"name": "Ada", "verified": False}
    assert verify_user(shop_bot, None, environ) == {}
    reasons = " ".join(record.getMessage() for record in caplog.records)
    assert "does not match" in reasons and "SHOP_IDENTITY_SECRET is not set" in reasons
    assert good not in reasons
