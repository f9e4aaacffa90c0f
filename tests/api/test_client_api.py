"""The client API of API.md, through the real ASGI app: start, send, history, resume, sessions, restarts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from rejoinder.server.ratelimit import ResumeGuard
from rejoinder.skills import Bot
from rejoinder.skills.model import parse_duration
from rejoinder.tokens import hash_token

if TYPE_CHECKING:
    from tests.helpers.app import Launch, Server

WELCOME = "Hi! I'm the Demo Shop assistant. What can I do for you?"
MENU_CHOICES = [{"label": "My orders", "value": "orders"}, {"label": "Opening hours", "value": "hours"}]
UNKNOWN_TOKEN = "rjt_" + "B" * 43  # well formed, belongs to nothing
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def messages_path(conversation_id: str) -> str:
    return f"/v1/conversations/{conversation_id}/messages"


async def send(server: Server, started: dict[str, Any], client_message_id: str, **body: Any) -> Any:
    return await server.client.post(
        messages_path(started["conversation_id"]),
        json={"client_message_id": client_message_id, **body},
        headers=server.bearer(started["session"]),
    )


async def history(server: Server, started: dict[str, Any], session: str | None = None, **query: Any) -> Any:
    return await server.client.get(
        messages_path(started["conversation_id"]),
        params=query,
        headers=server.bearer(session or started["session"]),
    )


# ------------------------------------------------------------------------------------------------ start and send


async def test_start_by_event_answers_the_conversation_a_session_and_the_question(server: Server) -> None:
    started = await server.start(event="welcome")

    assert started["conversation_id"].startswith("cnv_")
    assert started["session"].startswith("ses_")
    assert started["status"] == "active"
    [greeting] = started["messages"]
    assert greeting["seq"] == 1
    assert greeting["sender"] == "bot"
    assert greeting["type"] == "buttons"
    assert greeting["text"] == WELCOME
    assert greeting["buttons"] == MENU_CHOICES
    assert ISO_Z.match(greeting["created_at"])
    assert started["pending"]["node"] == "menu"
    assert started["pending"]["choices"] == MENU_CHOICES


async def test_every_session_says_when_it_expires_so_a_client_can_refresh_in_time(server: Server) -> None:
    ttl = parse_duration(server.app.state.bots["shop"].config.sessions.ttl)
    started = await server.start(event="welcome")
    secret, _ = await server.service.issue_token(started["conversation_id"])
    resumed = (await resume(server, secret)).json()
    refreshed = (
        await server.client.post(
            f"/v1/conversations/{started['conversation_id']}/session/refresh",
            headers=server.bearer(started["session"]),
        )
    ).json()

    now = datetime.now(UTC)
    for answer in (started, resumed, refreshed):
        expires = datetime.fromisoformat(answer["session_expires_at"])
        assert ISO_Z.match(answer["session_expires_at"])
        assert abs((expires - now) - ttl) < timedelta(seconds=30)


async def test_start_by_text_echoes_the_customer_first(server: Server) -> None:
    started = await server.start(text="hello there")

    senders = [(m["sender"], m["text"]) for m in started["messages"]]
    assert senders == [("customer", "hello there"), ("bot", WELCOME)]
    assert [m["seq"] for m in started["messages"]] == [1, 2]


async def test_a_choice_runs_a_turn_and_answers_echo_then_replies(server: Server) -> None:
    started = await server.start()

    response = await send(server, started, "m-1", choice="hours")

    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"messages", "pending"}
    echo, reply = answer["messages"]
    assert (echo["seq"], echo["sender"], echo["text"]) == (2, "customer", "Opening hours")
    assert (reply["seq"], reply["sender"], reply["text"]) == (
        3,
        "bot",
        "We're open every day from 9:00 to 18:00.",
    )


async def test_text_the_bot_does_not_understand_asks_again(server: Server) -> None:
    started = await server.start()

    answer = (await send(server, started, "m-1", text="what's the weather?")).json()

    texts = [m["text"] for m in answer["messages"]]
    assert texts[0] == "what's the weather?"
    assert "Sorry, I can help with your orders or our opening hours." in texts
    assert answer["pending"]["node"] == "menu"


async def test_the_same_client_message_id_is_answered_from_the_first_time(server: Server) -> None:
    started = await server.start()

    first = await send(server, started, "same-id", choice="hours")
    again = await send(server, started, "same-id", choice="hours")

    assert again.status_code == 200
    assert again.json() == first.json()
    stored = (await history(server, started)).json()["messages"]
    assert [m["sender"] for m in stored].count("customer") == 1
    assert [m["seq"] for m in stored] == [1, 2, 3]


async def test_the_same_client_message_id_with_another_message_is_a_409(server: Server) -> None:
    started = await server.start()
    first = await send(server, started, "same-id", choice="hours")

    for changed in ({"choice": "orders"}, {"text": "hours"}):
        again = await send(server, started, "same-id", **changed)

        assert again.status_code == 409, again.text
        assert again.headers["content-type"] == "application/problem+json"
        assert again.json()["type"] == "client_message_id_reused"
        assert "same-id" in again.json()["detail"]
    # Nothing was stored for the refused messages, and the first one is still answered as before.
    assert (await send(server, started, "same-id", choice="hours")).json() == first.json()
    stored = (await history(server, started)).json()["messages"]
    assert [m["sender"] for m in stored].count("customer") == 1

    typed = await send(server, started, "typed", text="what's the weather?")
    assert (await send(server, started, "typed", text="what's the weather?")).json() == typed.json()
    assert (await send(server, started, "typed", text="what's the time?")).status_code == 409


async def test_a_start_with_neither_or_both_of_event_and_text_is_refused(server: Server) -> None:
    for body in ({}, {"event": "welcome", "text": "hi"}):
        response = await server.client.post("/v1/conversations", json=body, headers=server.sdk())
        assert response.status_code == 422
        assert response.json()["type"] == "validation_error"


async def test_an_unknown_event_is_a_clear_400(server: Server) -> None:
    response = await server.client.post(
        "/v1/conversations", json={"event": "no_such_event"}, headers=server.sdk()
    )

    assert response.status_code == 400
    assert response.json()["type"] == "unknown_event"


async def test_verified_user_ids_are_kept_and_unverified_ones_dropped(server: Server) -> None:
    good = await server.start(
        event="welcome", user={"id": "u-42", "name": "Ada", "hash": server.user_hash("u-42")}
    )
    forged = await server.start(
        event="welcome", user={"id": "u-42", "name": "Eve", "hash": server.user_hash("u-42", "x")}
    )
    bare = await server.start(event="welcome", user={"id": "u-42"})

    async def user_of(started: dict[str, Any]) -> dict[str, Any]:
        conversation = await server.store.conversations.get(started["conversation_id"])
        assert conversation is not None
        return conversation.user

    assert await user_of(good) == {"id": "u-42", "name": "Ada", "verified": True}
    assert await user_of(forged) == {"name": "Eve", "verified": False}
    assert await user_of(bare) == {"verified": False}


# ------------------------------------------------------------------------------------------------ history


async def test_history_pages_after_a_watermark(server: Server) -> None:
    started = await server.start(text="hello")
    await send(server, started, "m-1", choice="hours")  # seq 3 and 4

    first = (await history(server, started, after=0, limit=3)).json()
    rest = (await history(server, started, after=first["next_after"], limit=3)).json()
    beyond = (await history(server, started, after=rest["next_after"])).json()

    assert [m["seq"] for m in first["messages"]] == [1, 2, 3]
    assert first["next_after"] == 3
    assert [m["seq"] for m in rest["messages"]] == [4]
    assert rest["next_after"] == 4
    assert beyond == {"messages": [], "next_after": 4}


async def test_history_limits_are_validated(server: Server) -> None:
    started = await server.start()

    for query in ({"limit": 0}, {"limit": 501}, {"after": -1}, {"after": 2**40}, {"limit": "many"}):
        response = await history(server, started, **query)
        assert response.status_code == 422, query
        assert response.json()["type"] == "validation_error"


# ------------------------------------------------------------------------------------------------ resume


async def test_resume_by_token_gives_the_same_conversation_its_history_and_a_new_session(
    server: Server,
) -> None:
    started = await server.start()
    await send(server, started, "m-1", text="hmm")
    token = await server.token_for(started["conversation_id"])

    response = await server.client.post(
        "/v1/conversations/resume", json={"token": token}, headers=server.sdk()
    )

    assert response.status_code == 200
    resumed = response.json()
    assert resumed["conversation_id"] == started["conversation_id"]
    assert resumed["session"] != started["session"]
    assert resumed["messages"] == (await history(server, started)).json()["messages"]
    assert resumed["pending"]["node"] == "menu"
    assert resumed["status"] == "active"
    # The new session carries on the conversation where it stood.
    answer = (await send(server, {**started, "session": resumed["session"]}, "m-2", choice="hours")).json()
    assert answer["messages"][-1]["text"] == "We're open every day from 9:00 to 18:00."


async def resume(server: Server, token: str, bot_id: str = "shop") -> Any:
    return await server.client.post(
        "/v1/conversations/resume", json={"token": token}, headers=server.sdk(bot_id)
    )


async def test_every_token_outcome_of_the_api_table(server: Server) -> None:
    started = await server.start()
    conversation_id = started["conversation_id"]
    now = server.service.clock()

    malformed = await resume(server, "not-a-token")
    unknown = await resume(server, "rjt_" + "A" * 43)
    foreign = await resume(server, await server.token_for((await server.start("other"))["conversation_id"]))

    revoked_secret, revoked = await server.service.issue_token(conversation_id)
    await server.store.credentials.revoke_token(revoked.id, now)
    revoked_answer = await resume(server, revoked_secret)

    once = await server.token_for(conversation_id, uses=1)
    assert (await resume(server, once)).status_code == 200
    used_up = await resume(server, once)

    expiring = await server.token_for(conversation_id, ttl="1h")
    real_clock = server.service.clock
    server.service.clock = lambda: real_clock() + timedelta(hours=2)
    expired = await resume(server, expiring)
    server.service.clock = real_clock

    erased_token = await server.token_for((await server.start())["conversation_id"])
    erased_conversation = (
        await server.store.credentials.find_token_by_hash(hash_token(erased_token))
    ).conversation_id  # type: ignore[union-attr]
    await server.store.conversations.delete(erased_conversation)
    erased = await resume(server, erased_token)

    outcomes = {
        "malformed": malformed,
        "unknown": unknown,
        "foreign": foreign,
        "revoked": revoked_answer,
        "used_up": used_up,
        "expired": expired,
        "erased": erased,
    }
    assert {name: (r.status_code, r.json()["type"]) for name, r in outcomes.items()} == {
        "malformed": (400, "token_malformed"),
        "unknown": (404, "token_not_found"),
        "foreign": (404, "token_not_found"),
        "revoked": (410, "token_revoked"),
        "used_up": (410, "token_used_up"),
        "expired": (410, "token_expired"),
        "erased": (404, "token_not_found"),
    }
    # No oracle: another bot's token is answered exactly like a token that never existed.
    assert foreign.json() == unknown.json()
    assert foreign.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"


async def test_failed_resumes_are_rate_limited_per_client_ip(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    guard = ResumeGuard.in_memory(ip_limit=3, bot_limit=100, window=60)
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, resume_guard=guard) as server:
        started = await server.start()
        token = await server.token_for(started["conversation_id"])
        for _ in range(3):
            assert (await resume(server, "rjt_" + "B" * 43)).status_code == 404

        limited = await resume(server, token)

        assert limited.status_code == 429
        assert limited.json()["type"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
        # Another client is not affected.
        async with launch(
            tmp_path / "db.sqlite", {"shop": shop_bot}, keys=server.keys, client_ip="10.1.2.3"
        ) as other:
            other.app.state.resume_guard = guard
            assert (await resume(other, token)).status_code == 200


async def resume_from(server: Server, ip: str, token: str) -> Any:
    """A resume sent by a client at ``ip`` to the same app."""
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
        return await client.post("/v1/conversations/resume", json={"token": token}, headers=server.sdk())


async def test_failures_of_many_clients_never_refuse_a_valid_token_from_another(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    guard = ResumeGuard.in_memory(ip_limit=10, bot_limit=20, window=60)
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, resume_guard=guard) as server:
        token = await server.token_for((await server.start())["conversation_id"], uses=5)
        # 40 failures spread over 10 addresses: twice the bot's limit, each address within its own.
        for n in range(40):
            await resume_from(server, f"10.0.0.{n % 10}", UNKNOWN_TOKEN)

        # A failed attempt from a fresh address is slowed down by the bot's count...
        refused = await resume_from(server, "10.0.1.1", UNKNOWN_TOKEN)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        # ...but a valid token is not, from a fresh address nor from one of those that failed.
        assert (await resume_from(server, "10.0.1.2", token)).status_code == 200
        assert (await resume_from(server, "10.0.0.3", token)).status_code == 200


async def test_an_ipv6_client_is_counted_by_its_slash_64(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    guard = ResumeGuard.in_memory(ip_limit=3, bot_limit=1000, window=60)
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, resume_guard=guard) as server:
        token = await server.token_for((await server.start())["conversation_id"], uses=5)
        for n in range(1, 4):
            assert (await resume_from(server, f"2001:db8:1:2::{n:x}", UNKNOWN_TOKEN)).status_code == 404

        # Another address of the same /64 is the same client...
        assert (await resume_from(server, "2001:db8:1:2:ffff::1", token)).status_code == 429
        # ...and the next /64 another one.
        assert (await resume_from(server, "2001:db8:1:3::1", token)).status_code == 200


# ------------------------------------------------------------------------------------------------ sessions


async def test_a_session_opens_only_its_own_conversation(server: Server) -> None:
    mine = await server.start()
    theirs = await server.start()

    read = await history(server, theirs, session=mine["session"])
    write = await send(server, {**theirs, "session": mine["session"]}, "x", text="hi")

    assert (read.status_code, read.json()["type"]) == (403, "forbidden")
    assert (write.status_code, write.json()["type"]) == (403, "forbidden")
    assert [m["seq"] for m in (await history(server, theirs)).json()["messages"]] == [1]


async def test_refresh_gives_a_new_session_and_ends_the_old_one(server: Server) -> None:
    started = await server.start()

    response = await server.client.post(
        f"/v1/conversations/{started['conversation_id']}/session/refresh",
        headers=server.bearer(started["session"]),
    )

    assert response.status_code == 200
    fresh = response.json()["session"]
    assert fresh.startswith("ses_") and fresh != started["session"]
    assert (await history(server, started, session=fresh)).status_code == 200
    old = await history(server, started)
    assert (old.status_code, old.json()["type"]) == (401, "unauthorized")


async def test_revoking_a_token_ends_the_sessions_opened_with_it(server: Server) -> None:
    started = await server.start()
    secret, token = await server.service.issue_token(started["conversation_id"])
    resumed = (await resume(server, secret)).json()
    assert (await history(server, started, session=resumed["session"])).status_code == 200

    await server.store.credentials.revoke_token(token.id, server.service.clock())

    assert (await history(server, started, session=resumed["session"])).status_code == 401
    assert (await history(server, started)).status_code == 200  # the session from the start had no token


async def test_an_expired_session_is_refused(server: Server) -> None:
    started = await server.start()
    real_clock = server.service.clock
    server.service.clock = lambda: real_clock() + timedelta(hours=13)  # the shop's sessions live 12 h

    response = await history(server, started)

    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


# ------------------------------------------------------------------------------------------------ durability


async def test_a_restart_loses_nothing_and_the_conversation_goes_on(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    database = tmp_path / "durable.db"
    async with launch(database, {"shop": shop_bot}) as first:
        started = await first.start()
        before = (await send(first, started, "m-1", text="hmm")).json()
        keys = first.keys

    async with launch(database, {"shop": shop_bot}, keys=keys) as second:
        stored = (await history(second, started)).json()["messages"]
        assert [m["seq"] for m in stored] == [1, *[m["seq"] for m in before["messages"]]]
        # The same session, the same question: the conversation carries on, and an old id is still recognised.
        replayed = (await send(second, started, "m-1", text="hmm")).json()
        assert replayed == before
        answer = (await send(second, started, "m-2", choice="hours")).json()
        assert answer["messages"][0]["seq"] == stored[-1]["seq"] + 1
        assert answer["messages"][-1]["text"] == "We're open every day from 9:00 to 18:00."


# ------------------------------------------------------------------------------------------------ operations


async def test_health_readiness_and_metrics(server: Server) -> None:
    started = await server.start()
    await send(server, started, "m-1", choice="hours")
    await resume(server, "rjt_" + "C" * 43)

    assert (await server.client.get("/healthz")).json() == {"status": "ok"}
    assert (await server.client.get("/readyz")).json() == {"status": "ready"}
    metrics = await server.client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'rejoinder_turns_total{bot="shop",kind="start"} 1.0' in text
    assert 'rejoinder_turns_total{bot="shop",kind="message"} 1.0' in text
    assert 'rejoinder_resumes_total{bot="shop",outcome="token_not_found"} 1.0' in text
    assert "rejoinder_http_request_duration_seconds_bucket" in text


async def test_integrate_calls_are_counted_by_outcome(server: Server) -> None:
    # The orders skill posts its token to the shop backend, which is down in tests.
    answer = await server.start(event="orders")

    assert (
        answer["messages"][-1]["text"]
        == "Sorry, logging in is not possible right now. Please try again later."
    )
    text = (await server.client.get("/metrics")).text
    assert 'rejoinder_integrate_calls_total{outcome="error"}' in text


async def test_openapi_describes_every_client_route_with_problem_answers(server: Server) -> None:
    document = (await server.client.get("/openapi.json")).json()
    paths = document["paths"]

    expected = {
        ("/v1/conversations", "post"): "StartRequest",
        ("/v1/conversations/resume", "post"): "ResumeRequest",
        ("/v1/conversations/{conversation_id}/messages", "post"): "SendRequest",
        ("/v1/conversations/{conversation_id}/messages", "get"): None,
        ("/v1/conversations/{conversation_id}/session/refresh", "post"): None,
    }
    for (path, method), request_schema in expected.items():
        operation = paths[path][method]
        if request_schema is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/" + request_schema)
        errors = {status: r for status, r in operation["responses"].items() if int(status) >= 400}
        assert "401" in errors, path
        for answer in errors.values():
            assert answer["content"]["application/problem+json"]["schema"]["$ref"].endswith(
                "/ProblemDocument"
            )
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
