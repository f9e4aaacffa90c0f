"""Bad input and failures always answer a clear problem document, never a 500 with internals."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from rejoinder.store import StoreUnavailable
from tests.helpers.tables import end_sessions

if TYPE_CHECKING:
    from tests.helpers.app import Server

PROBLEM = "application/problem+json"


def assert_problem(response: Any, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == type_
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def post_start(server: Server, content: bytes, **headers: str) -> Any:
    return await server.client.post(
        "/v1/conversations",
        content=content,
        headers=server.sdk(**{"Content-Type": "application/json", **headers}),
    )


async def test_malformed_json_is_400(server: Server) -> None:
    body = assert_problem(await post_start(server, b'{"event": "welcome"'), 400, "malformed_body")

    assert "not valid JSON" in body["detail"]


async def test_invalid_utf8_is_400(server: Server) -> None:
    assert_problem(await post_start(server, b'{"text": "caf\xe9"}'), 400, "malformed_body")


async def test_a_body_that_is_not_json_is_415(server: Server) -> None:
    response = await server.client.post("/v1/conversations", content=b"event=welcome", headers=server.sdk())

    assert_problem(response, 415, "unsupported_media_type")


async def test_an_unknown_field_is_422_naming_the_field_without_echoing_it(server: Server) -> None:
    leaked = "rjt_" + "S" * 43
    body = assert_problem(
        await post_start(server, json.dumps({"event": "welcome", "colour": leaked}).encode()),
        422,
        "validation_error",
    )

    assert body["errors"] == [
        {"field": "body.colour", "message": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    assert leaked not in json.dumps(body)


async def test_wrong_types_are_422(server: Server) -> None:
    body = assert_problem(
        await post_start(server, json.dumps({"event": 42, "user": {"id": ["x"]}}).encode()),
        422,
        "validation_error",
    )

    assert {error["field"] for error in body["errors"]} == {"body.event", "body.user.id"}


async def test_text_that_cannot_be_stored_is_422(server: Server) -> None:
    for text in ("nul\u0000byte", "\ud800 lone surrogate"):
        content = json.dumps({"text": text}).encode()
        assert_problem(await post_start(server, content), 422, "validation_error")


async def test_a_body_over_16_kb_is_413_before_it_is_read(server: Server) -> None:
    declared = await post_start(server, json.dumps({"text": "x" * 17_000}).encode())

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(20):
            yield b"y" * 1024
        yield b'"}'

    streamed = await server.client.post(
        "/v1/conversations", content=chunks(), headers=server.sdk(**{"Content-Type": "application/json"})
    )

    assert_problem(declared, 413, "too_large")
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "too_large")


async def test_a_message_over_4000_characters_is_413(server: Server) -> None:
    started = await server.start()
    path = f"/v1/conversations/{started['conversation_id']}/messages"
    headers = server.bearer(started["session"])

    at_limit = await server.client.post(
        path, json={"text": "é" * 4000, "client_message_id": "a"}, headers=headers
    )
    over = await server.client.post(
        path, json={"text": "é" * 4001, "client_message_id": "b"}, headers=headers
    )
    first_over = await post_start(server, json.dumps({"text": "x" * 4001}).encode())

    assert at_limit.status_code == 200
    assert "4,000" in assert_problem(over, 413, "too_large")["detail"]
    assert_problem(first_over, 413, "too_large")


async def test_unknown_routes_and_methods_are_problems(server: Server) -> None:
    assert_problem(await server.client.get("/v1/nothing-here"), 404, "not_found")
    assert_problem(await server.client.delete("/healthz"), 405, "method_not_allowed")


async def test_ended_sessions_are_401(server: Server) -> None:
    started = await server.start()
    await end_sessions(server.store, server.service.clock(), conversation_id=started["conversation_id"])

    response = await server.client.get(
        f"/v1/conversations/{started['conversation_id']}/messages", headers=server.bearer(started["session"])
    )

    assert_problem(response, 401, "unauthorized")


async def test_a_closed_store_answers_503_with_retry_after(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def locked(*_args: Any, **_kwargs: Any) -> None:
        raise StoreUnavailable("database unavailable: database is locked")

    monkeypatch.setattr(server.store.credentials, "find_api_key", locked)
    monkeypatch.setattr(server.store, "ping", lambda: _false())

    body = assert_problem(
        await server.client.post("/v1/conversations", json={"event": "welcome"}, headers=server.sdk()),
        503,
        "unavailable",
    )
    not_ready = await server.client.get("/readyz")

    assert "locked" not in body["detail"]
    assert_problem(not_ready, 503, "unavailable")
    assert not_ready.headers["retry-after"].isdigit()


async def _false() -> bool:
    return False


async def test_an_unexpected_error_is_500_without_internals(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("internal detail: /srv/secret/path")

    monkeypatch.setattr(server.service, "start", broken)

    response = await server.client.post("/v1/conversations", json={"event": "welcome"}, headers=server.sdk())

    body = assert_problem(response, 500, "internal")
    assert "secret" not in response.text
    assert "Something went wrong" in body["detail"]
    assert any("internal detail" in (record.exc_text or "") for record in caplog.records)


async def test_credentials_never_reach_the_logs(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = await server.start()
    token = await server.token_for(started["conversation_id"])
    resumed = (
        await server.client.post("/v1/conversations/resume", json={"token": token}, headers=server.sdk())
    ).json()
    await server.client.post(
        "/v1/conversations/resume", json={"token": token[:-1] + "Z"}, headers=server.sdk()
    )
    await server.client.get(
        f"/v1/conversations/{started['conversation_id']}/messages?session={resumed['session']}",
        headers=server.bearer(resumed["session"]),
    )

    secrets = [token, token[:-1] + "Z", started["session"], resumed["session"], server.keys["shop"].sdk_key]
    server_side = [
        record for record in caplog.records if not record.name.startswith("httpx")
    ]  # not the test client
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in server_side)
    assert "/v1/conversations/resume" in logged  # the access log saw the requests
    for secret in secrets:
        assert secret not in logged


def test_log_lines_never_carry_credentials() -> None:
    import logging

    from rejoinder.server.ops.logs import JsonFormatter

    secret = "ses_" + "A" * 43
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '"WebSocket /v1/x/stream?session=%s" [accepted]',
        (secret,),
        None,
    )
    line = JsonFormatter().format(record)
    assert secret not in line and "session=ses_[redacted]" in line
