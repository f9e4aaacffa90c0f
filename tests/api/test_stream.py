"""The WebSocket stream, driven through a real uvicorn server on 127.0.0.1 with a real WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from rejoinder.cli.serve import uvicorn_options
from rejoinder.config import Settings
from rejoinder.credentials import hash_secret
from rejoinder.realtime import MemoryHub
from rejoinder.server.app import create_app, load_bots
from rejoinder.server.socket_quota import SocketQuota
from rejoinder.server.stream import StreamSettings
from rejoinder.service.keys import create_keys
from rejoinder.store import Store
from tests.helpers.bots import TALK_SKILL, write_bot
from tests.helpers.clients import say, start
from tests.helpers.disk import fill_disk
from tests.helpers.tables import end_sessions, open_session

# One event loop (and one server) for the module: starting a server per test would cost more than the tests.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(30)]

BOT_CONFIG = """\
id: chat
allowed_origins: ["http://allowed.example"]
"""
# Generous timings: a test client that never answers pings must not be cut off by accident.
CALM = StreamSettings(heartbeat=10, liveness=30, auth_timeout=2)


@dataclass
class Server:
    """A running server and what a test needs to talk to it."""

    app: Any
    port: int
    sdk_key: str
    secret_key: str
    http: httpx.AsyncClient

    def ws_url(self, conversation_id: str, **query: str | int) -> str:
        params = "&".join(f"{name}={value}" for name, value in query.items())
        return f"ws://127.0.0.1:{self.port}/v1/conversations/{conversation_id}/stream" + (
            f"?{params}" if params else ""
        )

    async def start(self) -> tuple[str, str]:
        """A new conversation started by event: (conversation id, session). Its messages are seq 1 and 2."""
        answer = await start(self.http, self.sdk_key, event="hello")
        assert answer.status_code == 201, answer.text
        return answer.json()["conversation_id"], answer.json()["session"]

    async def say(self, conversation_id: str, session: str, text: str, message_id: str) -> dict[str, Any]:
        answer = await say(self.http, conversation_id, session, text, message_id)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


async def run_server(app: Any, store: Store, *, bot_id: str = "chat") -> AsyncIterator[Server]:
    """Serve ``app`` with uvicorn on a free loopback port for the duration of the test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # The protocols and limits of `rejoinder serve` (frame size, header deadline), without its log setup.
    options = uvicorn_options("warning", 1, Settings())
    del options["log_config"]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.005)
    keys = await create_keys(store, bot_id, now=datetime.now(UTC))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        yield Server(app=app, port=port, sdk_key=keys.sdk_key, secret_key=keys.secret_key, http=http)
    server.should_exit = True
    await serving
    listener.close()


def make_app(bot_dir: Path, database: Path, redis_url: str | None = None) -> tuple[Any, Store]:
    url = f"sqlite:///{database}"
    store = Store.from_url(url)
    app = create_app(
        load_bots([bot_dir]), store=store, settings=Settings(database_url=url, redis_url=redis_url)
    )
    app.state.stream_settings = CALM
    return app, store


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    root = tmp_path_factory.mktemp("stream")
    app, store = make_app(write_bot(root / "bot", BOT_CONFIG, {"talk": TALK_SKILL}), root / "rejoinder.db")
    async for running in run_server(app, store):
        yield running


@pytest_asyncio.fixture(loop_scope="module")
async def server(shared_server: Server) -> AsyncIterator[Server]:
    """The module's server, with the timings and hub a test may change put back afterwards."""
    state = shared_server.app.state
    hub, quota = state.hub, state.socket_quota
    yield shared_server
    state.stream_settings = CALM
    state.hub, state.service.hub, state.socket_quota = hub, hub, quota


# ---------------------------------------------------------------------------------------------- helpers


async def frame(ws: ClientConnection, within: float = 3.0) -> dict[str, Any]:
    data = await asyncio.wait_for(ws.recv(), within)
    decoded: dict[str, Any] = json.loads(data)
    return decoded


async def frames_until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Every frame up to and including the first one for which ``done`` is true."""
    got = [await frame(ws)]
    while not done(got[-1]):
        got.append(await frame(ws))
    return got


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["message"]["seq"] for f in frames if f["type"] == "message"]


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["message"]["text"] for f in frames if f["type"] == "message"]


def is_status_at(seq: int) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["type"] == "status" and f["last_seq"] >= seq


async def closed(ws: ClientConnection, within: float = 3.0) -> tuple[int | None, str | None]:
    """Read until the server closes the socket; the close code and reason."""
    with pytest.raises(ConnectionClosed):
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    return ws.close_code, ws.close_reason


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------------------------- live and replay


async def test_bot_messages_are_pushed_live(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        first = await frame(ws)
        assert first == {
            "type": "status",
            "status": "active",
            "pending": {"node": "ask", "input": "text"},
            "last_seq": 2,
        }
        answer = await server.say(conversation, session, "hi there", "m1")
        pushed = await frames_until(ws, is_status_at(5))
    assert [f["type"] for f in pushed] == ["typing", "message", "message", "message", "status"]
    assert seqs(pushed) == [3, 4, 5]
    assert texts(pushed) == ["hi there", "You said hi there", "Say something"]
    assert [f["message"] for f in pushed if f["type"] == "message"] == answer["messages"]
    assert pushed[1]["message"]["sender"] == "customer"


async def test_a_message_over_http_or_over_the_stream_is_the_same_turn_with_the_same_events(
    server: Server,
) -> None:
    by_http, http_session = await server.start()
    by_stream, stream_session = await server.start()
    seen: dict[str, list[dict[str, Any]]] = {}
    stored: dict[str, list[dict[str, Any]]] = {}
    async with (
        connect(server.ws_url(by_http, session=http_session, after=2)) as http_watcher,
        connect(server.ws_url(by_stream, session=stream_session, after=2)) as stream_watcher,
        connect(server.ws_url(by_stream, session=stream_session, after=2)) as sender,
    ):
        for ws in (http_watcher, stream_watcher, sender):
            await frame(ws)
        for attempt in range(2):  # the second time, the same message is answered from the first
            await server.say(by_http, http_session, "hi there", "m1")
            await sender.send(json.dumps({"type": "message", "text": "hi there", "client_message_id": "m1"}))
            ack = (await frames_until(sender, lambda f: f["type"] == "ack"))[-1]
            assert ack == {"type": "ack", "client_message_id": "m1", "seq": 3}
            if attempt == 0:
                seen["http"] = await frames_until(http_watcher, is_status_at(5))
                seen["stream"] = await frames_until(stream_watcher, is_status_at(5))
    for name, conversation, session in (
        ("http", by_http, http_session),
        ("stream", by_stream, stream_session),
    ):
        answer = await server.http.get(
            f"/v1/conversations/{conversation}/messages", headers={"Authorization": f"Bearer {session}"}
        )
        stored[name] = [
            {key: value for key, value in message.items() if key != "created_at"}
            for message in answer.json()["messages"]
        ]

    def without_times(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {**f, "message": {k: v for k, v in f["message"].items() if k != "created_at"}}
            if "message" in f
            else f
            for f in frames
        ]

    assert [f["type"] for f in seen["http"]] == ["typing", "message", "message", "message", "status"]
    assert without_times(seen["http"]) == without_times(seen["stream"])
    assert stored["http"] == stored["stream"]
    assert [m["text"] for m in stored["http"]][2:] == ["hi there", "You said hi there", "Say something"]


async def test_reconnecting_with_after_replays_every_missed_message_once_and_in_order(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session)) as ws:
        replayed = await frames_until(ws, lambda f: f["type"] == "status")
        assert seqs(replayed) == [1, 2]
        last_seen = replayed[-1]["last_seq"]
    # While disconnected: two turns (seq 3 to 8).
    await server.say(conversation, session, "one", "m1")
    await server.say(conversation, session, "two", "m2")
    async with connect(server.ws_url(conversation, session=session, after=last_seen)) as ws:
        caught_up = await frames_until(ws, lambda f: f["type"] == "status")
        assert seqs(caught_up) == [3, 4, 5, 6, 7, 8]
        assert texts(caught_up) == [
            "one",
            "You said one",
            "Say something",
            "two",
            "You said two",
            "Say something",
        ]
        assert caught_up[-1]["last_seq"] == 8
        # Then live, going on from there with nothing repeated.
        await server.say(conversation, session, "three", "m3")
        live = await frames_until(ws, is_status_at(11))
        assert seqs(live) == [9, 10, 11]


async def test_messages_committed_while_replaying_are_neither_lost_nor_repeated(server: Server) -> None:
    conversation, session = await server.start()
    for n in range(5):
        await server.say(conversation, session, f"before {n}", f"b{n}")
    # Turns keep landing while clients connect and replay; each client must see 1..N exactly once, in order.
    sending = asyncio.create_task(_say_many(server, conversation, session, 5))
    clients = [_collect_until(server, conversation, session, last=2 + 3 * 10) for _ in range(4)]
    results = await asyncio.gather(*clients)
    await sending
    for got in results:
        assert got == list(range(1, 33))


async def _say_many(server: Server, conversation: str, session: str, count: int) -> None:
    for n in range(count):
        await server.say(conversation, session, f"during {n}", f"d{n}")


async def _collect_until(server: Server, conversation: str, session: str, *, last: int) -> list[int]:
    async with connect(server.ws_url(conversation, session=session)) as ws:
        got: list[int] = []
        while not got or got[-1] < last:
            received = await frame(ws, within=5)
            if received["type"] == "message":
                got.append(received["message"]["seq"])
        return got


async def test_two_sockets_on_one_conversation_see_each_others_turns(server: Server) -> None:
    conversation, session = await server.start()
    async with (
        connect(server.ws_url(conversation, session=session, after=2)) as tab1,
        connect(server.ws_url(conversation, session=session, after=2)) as tab2,
    ):
        await frame(tab1)
        await frame(tab2)
        await tab1.send(json.dumps({"type": "message", "text": "from tab 1", "client_message_id": "t1"}))
        seen_by_2 = await frames_until(tab2, is_status_at(5))
        assert texts(seen_by_2) == ["from tab 1", "You said from tab 1", "Say something"]


# ---------------------------------------------------------------------------------------------- sending


async def test_a_message_sent_over_the_socket_runs_a_turn_and_is_acknowledged(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "message", "text": "over ws", "client_message_id": "w1"}))
        answered = await frames_until(ws, lambda f: f["type"] == "ack")
        assert seqs(answered) == [3, 4, 5]
        assert texts(answered) == ["over ws", "You said over ws", "Say something"]
        assert answered[-1] == {"type": "ack", "client_message_id": "w1", "seq": 3}
        # The same client_message_id again: answered from the first time, nothing runs or is sent twice.
        await ws.send(json.dumps({"type": "message", "text": "over ws", "client_message_id": "w1"}))
        again = await frames_until(ws, lambda f: f["type"] == "ack")
        assert seqs(again) == []
        assert again[-1] == {"type": "ack", "client_message_id": "w1", "seq": 3}
    history = await server.http.get(
        f"/v1/conversations/{conversation}/messages", headers={"Authorization": f"Bearer {session}"}
    )
    assert [m["text"] for m in history.json()["messages"]][2:] == [
        "over ws",
        "You said over ws",
        "Say something",
    ]


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        await ws.send("{not json")
        assert (await frame(ws))["code"] == "malformed_body"
        await ws.send(json.dumps({"type": "message", "text": "no id"}))
        missing_id = await frame(ws)
        assert missing_id["code"] == "validation_error"
        assert "client_message_id" in missing_id["detail"]
        await ws.send(json.dumps({"type": "message", "text": "x" * 4001, "client_message_id": "long"}))
        assert await frame(ws) == {
            "type": "error",
            "code": "too_large",
            "detail": "The message has 4001 characters; the limit is 4,000.",
            "client_message_id": "long",
        }
        await ws.send(
            json.dumps({"type": "message", "choice": "nope", "text": "both", "client_message_id": "c"})
        )
        assert (await frame(ws))["code"] == "validation_error"
        await ws.send(json.dumps({"type": "subscribe"}))
        assert (await frame(ws))["code"] == "invalid_request"
        await ws.send(b"\x00binary")
        assert (await frame(ws))["code"] == "unsupported_frame"
        # Still open, and still working.
        await ws.send(json.dumps({"type": "message", "text": "fine", "client_message_id": "ok"}))
        answered = await frames_until(ws, lambda f: f["type"] == "ack")
        assert texts(answered) == ["fine", "You said fine", "Say something"]


# ---------------------------------------------------------------------------------------------- auth


async def test_the_session_may_come_in_a_first_auth_frame(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, after=1)) as ws:
        await ws.send(json.dumps({"type": "auth", "session": session}))
        replayed = await frames_until(ws, lambda f: f["type"] == "status")
        assert seqs(replayed) == [2]


@pytest.mark.parametrize(
    ("query", "first_frame", "code", "reason_starts"),
    [
        ({"session": "ses_unknown"}, None, 4401, "unauthorized: This session is not known"),
        ({"session": "pk_not_a_session"}, None, 4401, "unauthorized: This route takes a session"),
        (
            {},
            {"type": "auth", "token": "x"},
            4401,
            'unauthorized: send ?session= or a first frame {"type": "auth"',
        ),
        ({}, "garbage", 4401, "unauthorized: send ?session="),
        ({"after": "-1"}, None, 4400, "validation_error: after must be a message seq"),
        # Digits that int() refuses: a superscript two, and a number longer than it reads.
        ({"after": "%C2%B2"}, None, 4400, "validation_error: after must be a message seq"),
        ({"after": "9" * 5000}, None, 4400, "validation_error: after must be a message seq"),
    ],
)
async def test_refused_connections_close_with_a_code_and_a_reason(
    server: Server, query: dict[str, str], first_frame: Any, code: int, reason_starts: str
) -> None:
    conversation, _ = await server.start()
    async with connect(server.ws_url(conversation, **query)) as ws:
        if first_frame is not None:
            await ws.send(first_frame if isinstance(first_frame, str) else json.dumps(first_frame))
        close_code, reason = await closed(ws)
    assert close_code == code
    assert reason is not None and reason.startswith(reason_starts)


async def test_no_authentication_in_time_closes_the_socket(server: Server) -> None:
    server.app.state.stream_settings = replace(CALM, auth_timeout=0.2)
    conversation, _ = await server.start()
    async with connect(server.ws_url(conversation)) as ws:
        code, reason = await closed(ws)
    assert code == 4408
    assert reason is not None and "no authentication within 0.2 s" in reason


async def test_another_conversations_session_is_refused(server: Server) -> None:
    mine, _ = await server.start()
    _, other_session = await server.start()
    async with connect(server.ws_url(mine, session=other_session)) as ws:
        code, reason = await closed(ws)
    assert (code, reason) == (4403, "forbidden: This session belongs to another conversation.")


async def test_a_page_from_a_foreign_origin_is_refused(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(
        server.ws_url(conversation, session=session), origin=Origin("http://evil.example")
    ) as ws:
        code, reason = await closed(ws)
    assert code == 4403
    assert reason is not None and reason.startswith("origin_not_allowed:")
    async with connect(
        server.ws_url(conversation, session=session), origin=Origin("http://allowed.example")
    ) as ws:
        assert (await frame(ws))["type"] == "message"


# ---------------------------------------------------------------------------------------------- liveness


async def test_a_client_that_stops_answering_pings_is_closed_and_cleaned_up(server: Server) -> None:
    server.app.state.stream_settings = replace(CALM, heartbeat=0.1, liveness=0.35)
    conversation, session = await server.start()
    hub = server.app.state.hub
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)  # status
        # A live client answers pings and stays connected well past the liveness window.
        for _ in range(5):
            ping = await frame(ws)
            assert ping == {"type": "ping"}
            await ws.send(json.dumps({"type": "pong"}))
        assert hub.subscriber_count(conversation) == 1
        # Then it goes silent.
        code, reason = await closed(ws)
    assert code == 4408
    assert reason is not None and "answer pings" in reason
    await eventually(lambda: hub.subscriber_count(conversation) == 0)


async def test_a_client_that_falls_behind_is_told_to_reconnect_and_then_catches_up(server: Server) -> None:
    # A hub that keeps a single undelivered event per subscriber: a turn's burst of events overflows it.
    tiny = MemoryHub(queue_size=1)
    server.app.state.hub = tiny
    server.app.state.service.hub = tiny
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        await server.say(conversation, session, "burst", "b1")
        code, reason = await closed(ws)
    assert code == 1013
    assert reason is not None and "reconnect with after=" in reason
    after = int(reason.rsplit("after=", 1)[1])
    async with connect(server.ws_url(conversation, session=session, after=after)) as ws:
        caught_up = await frames_until(ws, lambda f: f["type"] == "status")
    assert seqs(caught_up) == list(range(after + 1, 6))


async def test_closing_the_socket_unsubscribes(server: Server) -> None:
    conversation, session = await server.start()
    hub = server.app.state.hub
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        assert hub.subscriber_count(conversation) == 1
    await eventually(lambda: hub.subscriber_count(conversation) == 0)


# ---------------------------------------------------------------------------------------------- ended by the admin


async def test_revoking_a_token_closes_the_sockets_of_sessions_opened_with_it(server: Server) -> None:
    conversation, own_session = await server.start()
    admin = {"Authorization": f"Bearer {server.secret_key}"}
    token = (
        await server.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=admin)
    ).json()
    resumed = await server.http.post(
        "/v1/conversations/resume",
        json={"token": token["token"]},
        headers={"Authorization": f"Bearer {server.sdk_key}"},
    )
    async with (
        connect(server.ws_url(conversation, session=resumed.json()["session"], after=2)) as from_token,
        connect(server.ws_url(conversation, session=own_session, after=2)) as own,
    ):
        await frame(from_token)
        await frame(own)
        assert (await server.http.delete(f"/v1/tokens/{token['id']}", headers=admin)).status_code == 200
        code, reason = await closed(from_token)
        assert code == 4401
        assert reason is not None and "session has ended" in reason
        # The session that did not come from the token keeps its socket.
        await own.send(json.dumps({"type": "message", "text": "still here", "client_message_id": "s1"}))
        assert texts(await frames_until(own, lambda f: f["type"] == "ack"))[0] == "still here"


async def test_erasing_a_conversation_closes_its_sockets(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        erased = await server.http.delete(
            f"/v1/conversations/{conversation}", headers={"Authorization": f"Bearer {server.secret_key}"}
        )
        assert erased.status_code == 204
        code, reason = await closed(ws)
    assert (code, reason) == (4404, "conversation_not_found: the conversation was erased")


# ---------------------------------------------------------------------------------------------- two workers


async def two_workers(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Server, Server]]:
    """Two servers of one bot on one database, sharing news through Redis, as two workers of a host are."""
    bot_dir = write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL})
    database = tmp_path / "shared.db"
    app_a, store_a = make_app(bot_dir, database, redis_url)
    app_b, store_b = make_app(bot_dir, database, redis_url)
    async for worker_a in run_server(app_a, store_a):
        async for worker_b in run_server(app_b, store_b):
            yield worker_a, worker_b


async def test_a_socket_on_one_worker_sees_turns_run_on_another_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    async for worker_a, worker_b in two_workers(tmp_path, redis_url):
        conversation, session = await worker_a.start()
        async with connect(worker_b.ws_url(conversation, session=session, after=2)) as ws:
            await frame(ws)
            await worker_a.say(conversation, session, "from A", "a1")
            seen_on_b = await frames_until(ws, is_status_at(5))
        assert seqs(seen_on_b) == [3, 4, 5]
        assert texts(seen_on_b) == ["from A", "You said from A", "Say something"]


# ---------------------------------------------------------------------------------------------- limits


async def test_a_message_larger_than_the_frame_limit_closes_the_socket_with_1009(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2), max_size=None) as ws:
        await frame(ws)
        await ws.send(json.dumps({"type": "message", "text": "x" * 20_000, "client_message_id": "big"}))
        code, reason = await closed(ws)
    assert code == 1009
    assert reason is not None and "16384" in reason


async def test_a_deeply_nested_frame_gets_an_error_frame_and_the_socket_stays_open(server: Server) -> None:
    conversation, session = await server.start()
    async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
        await frame(ws)
        await ws.send("[" * 8000)
        refused = await frame(ws)
        assert refused["type"] == "error" and refused["code"] == "malformed_body"
        await ws.send(json.dumps({"type": "message", "text": "after", "client_message_id": "n1"}))
        assert texts(await frames_until(ws, lambda f: f["type"] == "ack"))[0] == "after"
    async with connect(server.ws_url(conversation)) as ws:  # the auth frame is parsed the same way
        await ws.send("{" * 8000)
        code, _ = await closed(ws)
    assert code == 4401


async def test_one_session_holds_a_bounded_number_of_sockets(server: Server) -> None:
    server.app.state.socket_quota = SocketQuota(per_ip=50, per_session=2)
    conversation, session = await server.start()
    url = server.ws_url(conversation, session=session, after=2)
    async with connect(url) as first, connect(url) as second:
        await frame(first)
        await frame(second)
        async with connect(url) as third:
            code, reason = await closed(third)
        assert code == 4429
        assert reason == "rate_limited: this session has 2 streams open already; close one first"
        # Another session is counted apart.
        other_conversation, other = await server.start()
        async with connect(server.ws_url(other_conversation, session=other, after=2)) as elsewhere:
            assert (await frame(elsewhere))["type"] == "status"
    # Closed sockets give their place back.
    record = await server.app.state.store.credentials.find_session(hash_secret(session))
    await eventually(lambda: server.app.state.socket_quota.held(session_id=record.id) == 0)
    async with connect(url) as again:
        assert (await frame(again))["type"] == "status"


async def test_one_address_holds_a_bounded_number_of_sockets(server: Server) -> None:
    server.app.state.socket_quota = SocketQuota(per_ip=2, per_session=10)
    conversation, session = await server.start()
    url = server.ws_url(conversation, session=session, after=2)
    async with connect(url) as first, connect(url) as second:
        await frame(first)
        await frame(second)
        async with connect(url) as third:
            code, reason = await closed(third)
        assert code == 4429
        assert reason == "rate_limited: this address has 2 streams open already; close one first"
    await eventually(lambda: server.app.state.socket_quota.held(ip="127.0.0.1") == 0)


# ---------------------------------------------------------------------------------------------- sessions that end


async def test_a_refreshed_session_s_sockets_are_closed_and_receive_nothing_more(server: Server) -> None:
    conversation, old = await server.start()
    async with connect(server.ws_url(conversation, session=old, after=2)) as ws:
        await frame(ws)
        refreshed = await server.http.post(
            f"/v1/conversations/{conversation}/session/refresh", headers={"Authorization": f"Bearer {old}"}
        )
        assert refreshed.status_code == 200
        new = refreshed.json()["session"]
        await server.say(conversation, new, "secret plans", "r1")
        received: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(3):
                while True:
                    received.append(json.loads(await ws.recv()))
    assert ws.close_code == 4401
    assert ws.close_reason is not None and "session has ended" in ws.close_reason
    assert "secret plans" not in json.dumps(received)
    # The old session is refused over HTTP too; the new one streams.
    history = await server.http.get(
        f"/v1/conversations/{conversation}/messages", headers={"Authorization": f"Bearer {old}"}
    )
    assert history.status_code == 401
    async with connect(server.ws_url(conversation, session=new, after=2)) as fresh:
        assert "secret plans" in texts(await frames_until(fresh, lambda f: f["type"] == "status"))


async def test_a_session_ended_in_the_store_receives_nothing_even_if_the_news_is_lost(server: Server) -> None:
    conversation, watching = await server.start()
    store: Store = server.app.state.store
    now = datetime.now(UTC)
    talking, _ = await open_session(store, server.app.state.bots["chat"], conversation, now)
    async with connect(server.ws_url(conversation, session=watching, after=2)) as ws:
        await frame(ws)
        record = await store.credentials.find_session(hash_secret(watching))
        assert record is not None
        await end_sessions(store, now, session_id=record.id)  # and no word of it through the hub
        await server.say(conversation, talking, "not for the watcher", "w1")
        received: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(3):
                while True:
                    received.append(json.loads(await ws.recv()))
    assert ws.close_code == 4401
    assert "not for the watcher" not in json.dumps(received)


async def test_a_socket_closes_at_its_session_s_expiry_however_busy_the_client(tmp_path: Path) -> None:
    bot_dir = write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL})
    (bot_dir / "rejoinder.yaml").write_text(BOT_CONFIG + "sessions: {ttl: 2s}\n")
    app, store = make_app(bot_dir, tmp_path / "brief.db")
    async for brief in run_server(app, store):
        conversation, session = await brief.start()
        async with connect(brief.ws_url(conversation, session=session, after=2)) as ws:
            await frame(ws)
            loop = asyncio.get_running_loop()
            opened = loop.time()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:  # a client that keeps talking: a pong every 0.2 s
                        await ws.send(json.dumps({"type": "pong"}))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ws.recv(), 0.2)
            lasted = loop.time() - opened
        assert ws.close_code == 4401
        assert ws.close_reason == "unauthorized: this session has expired; refresh or resume, then reconnect"
        assert lasted < 5


async def test_a_refresh_on_one_worker_closes_the_old_session_s_socket_on_another(
    tmp_path: Path, redis_url: str
) -> None:
    async for worker_a, worker_b in two_workers(tmp_path, redis_url):
        conversation, old = await worker_a.start()
        async with connect(worker_b.ws_url(conversation, session=old, after=2)) as ws:
            await frame(ws)
            refreshed = await worker_a.http.post(
                f"/v1/conversations/{conversation}/session/refresh",
                headers={"Authorization": f"Bearer {old}"},
            )
            assert refreshed.status_code == 200
            code, reason = await closed(ws)
        assert code == 4401
        assert reason is not None and "session has ended" in reason


# ---------------------------------------------------------------------------------------------- quotas and a full disk


def is_ack_or_error(f: dict[str, Any]) -> bool:
    return f["type"] in ("ack", "error")


async def test_messages_sent_on_the_socket_count_against_the_clients_quota(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quota.db'}"
    store = Store.from_url(url)
    settings = Settings(database_url=url, redis_url=None, quota_messages_per_ip=2)
    app = create_app(
        load_bots([write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL})]),
        store=store,
        settings=settings,
    )
    app.state.stream_settings = CALM
    async for server in run_server(app, store):
        conversation, session = await server.start()
        await server.say(conversation, session, "over HTTP", "h1")
        async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
            await frames_until(ws, is_status_at(5))
            await ws.send(json.dumps({"type": "message", "text": "one", "client_message_id": "w1"}))
            assert (await frames_until(ws, is_ack_or_error))[-1]["type"] == "ack"

            await ws.send(json.dumps({"type": "message", "text": "two", "client_message_id": "w2"}))
            refused = (await frames_until(ws, is_ack_or_error))[-1]

        assert refused["type"] == "error" and refused["code"] == "rate_limited"
        assert refused["client_message_id"] == "w2" and "messages from this address" in refused["detail"]


async def test_a_full_disk_is_a_storage_full_error_frame(tmp_path: Path, small_disk: Path) -> None:
    app, store = make_app(
        write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL}), small_disk / "rejoinder.db"
    )
    async for server in run_server(app, store):
        conversation, session = await server.start()
        async with connect(server.ws_url(conversation, session=session, after=2)) as ws:
            await frames_until(ws, is_status_at(2))
            fill_disk(small_disk)
            answer: dict[str, Any] = {}
            for n in range(100):  # the WAL may have room for a few turns before a write needs a new page
                frame_out = {"type": "message", "text": f"{n} " + "x" * 3000, "client_message_id": f"w{n}"}
                await ws.send(json.dumps(frame_out))
                answer = (await frames_until(ws, is_ack_or_error))[-1]
                if answer["type"] == "error":
                    break
        assert answer["type"] == "error", "no write failed on a full disk"
        assert answer["code"] == "storage_full", answer
