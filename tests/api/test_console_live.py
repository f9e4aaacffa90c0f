"""The console's live transcript (server-sent events), read with httpx from a real uvicorn server on 127.0.0.1: a
customer's turn appears on it as it is committed, once and in order; signing out, a disabled account and an erased
conversation end it with an event saying so; its lifetime ends it, and the browser's reconnection with
Last-Event-ID goes on where it stopped, and so does a stopping worker; a session may hold only so many; two workers
share turns through Redis."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rejoinder.cli.serve import uvicorn_options
from rejoinder.config import Settings
from rejoinder.realtime import MemoryHub
from rejoinder.server.console.live import LiveSettings, LiveStreams
from rejoinder.service.accounts import CLI_ACTOR
from rejoinder.service.keys import create_keys
from tests.api.test_stream import BOT_CONFIG, Server, make_app, run_server, two_workers
from tests.helpers.bots import TALK_SKILL, write_bot
from tests.helpers.console import FAST_HASHER, SignedInClient, create_user, sign_in

pytestmark = pytest.mark.timeout(60)

WITHIN = 15.0  # seconds an event may take on a busy machine


@dataclass
class Event:
    name: str  # "message" unless the stream named it
    data: dict[str, Any]
    id: str | None


class EventReader:
    """The events of one ``text/event-stream`` answer, as a browser's EventSource parses them."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self, within: float = WITHIN) -> Event | None:
        """The next event; None when the stream ended."""
        async with asyncio.timeout(within):
            name, event_id = "message", None
            data: list[str] = []
            async for line in self.lines:
                if line == "":
                    if data:
                        return Event(name, json.loads("\n".join(data)), event_id)
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self.comments.append(value)
                elif field == "retry":
                    self.retry = int(value)
                elif field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value
            return None

    async def until(self, name: str, within: float = WITHIN) -> list[Event]:
        """Every event up to and including the first named ``name``."""
        seen: list[Event] = []
        while True:
            event = await self.next(within)
            assert event is not None, f"the stream ended before a {name!r} event: {seen}"
            seen.append(event)
            if event.name == name:
                return seen


@asynccontextmanager
async def watching(
    viewer: SignedInClient, conversation_id: str, after: int = 0, **headers: str
) -> AsyncIterator[EventReader]:
    url = f"/dashboard/conversations/{conversation_id}/live"
    async with viewer.client.stream("GET", url, params={"after": after}, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        yield EventReader(response)


@asynccontextmanager
async def serving(tmp_path: Path, settings: LiveSettings | None = None) -> AsyncIterator[Server]:
    app, store = make_app(write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL}), tmp_path / "r.db")
    async for server in run_server(app, store):
        app.state.accounts.hasher = FAST_HASHER
        if settings is not None:
            app.state.console_live = LiveStreams(settings)
        yield server


async def signed_in(server: Server, email: str, role: str = "viewer") -> SignedInClient:
    store = server.app.state.store
    if await store.users.by_email(email) is None:
        await create_user(store, email, role)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WITHIN)
    return await sign_in(client, store, email)


def texts(events: list[Event]) -> list[str]:
    return [e.data["text"] for e in events if e.name == "message"]


def seqs(events: list[Event]) -> list[int]:
    return [e.data["seq"] for e in events if e.name == "message"]


async def test_a_customers_turn_appears_on_a_viewers_live_stream(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        conversation, session = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        async with aclosing(viewer.client):
            async with watching(viewer, conversation, after=0) as events:
                headers = events.response.headers
                assert headers["content-type"].startswith("text/event-stream")
                assert headers["cache-control"] == "no-store" and headers["x-accel-buffering"] == "no"
                assert "default-src 'self'" in headers["content-security-policy"]
                replayed = await events.until("status")
                assert events.retry == 3000
                assert seqs(replayed) == [1, 2] and [e.id for e in replayed[:2]] == ["1", "2"]
                assert replayed[-1].data == {"status": "active"}

                await server.say(conversation, session, "where is my parcel", "m1")
                live = await events.until("status")
            assert seqs(live) == [3, 4, 5]
            assert texts(live) == ["where is my parcel", "You said where is my parcel", "Say something"]
            first = live[0].data
            assert first["sender"] == "customer" and first["choices"] == []
            assert first["at"]["iso"].endswith("Z") and first["at"]["full"].endswith(" UTC")

            # The browser reconnects with the last id it saw: only what came after is sent.
            await server.say(conversation, session, "and my refund?", "m2")
            async with watching(viewer, conversation, after=0, **{"Last-Event-ID": "5"}) as events:
                assert seqs(await events.until("status")) == [6, 7, 8]


async def test_signing_out_or_a_disabled_account_ends_the_stream(tmp_path: Path) -> None:
    async with serving(tmp_path, LiveSettings(recheck=0.2)) as server:
        conversation, _ = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        editor = await signed_in(server, "editor@example.com", "editor")
        async with aclosing(viewer.client), aclosing(editor.client):
            async with watching(viewer, conversation) as events:
                await events.until("status")
                signed_out = await viewer.client.post(
                    "/dashboard/sign-out", headers={"X-CSRF-Token": viewer.csrf_token}
                )
                assert signed_out.status_code == 303
                ended = await events.next()
                assert ended is not None and (ended.name, ended.data) == ("end", {"reason": "signed_out"})
                assert await events.next() is None

            async with watching(editor, conversation) as events:
                await events.until("status")
                await server.app.state.accounts.disable_user(editor.user.id, CLI_ACTOR)
                ended = await events.next()
                assert ended is not None and ended.data == {"reason": "signed_out"}
                assert await events.next() is None


async def test_erasing_the_conversation_ends_the_stream(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        conversation, _ = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        async with aclosing(viewer.client):
            async with watching(viewer, conversation) as events:
                await events.until("status")
                erased = await server.http.delete(
                    f"/v1/conversations/{conversation}",
                    headers={"Authorization": f"Bearer {server.secret_key}"},
                )
                assert erased.status_code == 204
                ended = await events.next()
                assert ended is not None and (ended.name, ended.data) == ("end", {"reason": "erased"})
                assert await events.next() is None
            again = await viewer.client.get(f"/dashboard/conversations/{conversation}/live")
            assert again.status_code == 404 and again.json()["error"] == "Conversation not found"


async def test_a_session_holds_only_so_many_streams(tmp_path: Path) -> None:
    async with serving(tmp_path, LiveSettings(per_session=2, per_worker=3)) as server:
        conversation, _ = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        other = await signed_in(server, "other@example.com", "viewer")
        live: LiveStreams = server.app.state.console_live
        url = f"/dashboard/conversations/{conversation}/live"
        async with aclosing(viewer.client), aclosing(other.client):
            async with watching(viewer, conversation) as first, watching(viewer, conversation) as second:
                await first.until("status")
                await second.until("status")
                refused = await viewer.client.get(url)
                assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
                assert "2 live transcripts" in refused.json()["detail"]
                async with watching(other, conversation) as third:
                    await third.until("status")
                    busy = await other.client.get(url)
                    assert busy.status_code == 503 and busy.headers["retry-after"] == "10"
            # Closed streams are given back.
            for _ in range(100):
                if live.held() == 0:
                    break
                await asyncio.sleep(0.05)
            assert live.held() == 0
            async with watching(viewer, conversation) as again:
                await again.until("status")


async def test_a_stream_ends_after_its_lifetime_with_heartbeats_meanwhile(tmp_path: Path) -> None:
    async with serving(tmp_path, LiveSettings(lifetime=1.0, heartbeat=0.2)) as server:
        conversation, _ = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        async with aclosing(viewer.client), watching(viewer, conversation) as events:
            await events.until("status")
            assert await events.next() is None  # ended, without an "end" event: the browser reconnects
            assert "keep-alive" in events.comments


async def test_refused_positions_conversations_and_visitors(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        conversation, _ = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        async with aclosing(viewer.client):
            for path in ("live", "messages"):
                url = f"/dashboard/conversations/{conversation}/{path}"
                # Digits int() refuses ("²") and numbers too long for it are refused like any other bad value.
                for after in ("-1", "x", "²", "9" * 5000):
                    answer = await viewer.client.get(url, params={"after": after})
                    assert answer.status_code == 400, (path, after[:10], answer.text[:200])
            bad_id = await viewer.client.get(
                f"/dashboard/conversations/{conversation}/live", headers={"Last-Event-ID": "nope"}
            )
            assert bad_id.status_code == 400
            unknown = await viewer.client.get("/dashboard/conversations/cnv_0000/live")
            assert unknown.status_code == 404 and unknown.json()["error"] == "Conversation not found"
            anonymous = await server.http.get(f"/dashboard/conversations/{conversation}/live")
            assert anonymous.status_code == 303  # no session: to the sign-in form


async def test_a_turn_on_one_worker_reaches_a_live_stream_on_another_through_redis(
    tmp_path: Path, redis_url: str
) -> None:
    async for worker_a, worker_b in two_workers(tmp_path, redis_url):
        worker_b.app.state.accounts.hasher = FAST_HASHER
        conversation, session = await worker_a.start()
        viewer = await signed_in(worker_b, "viewer@example.com", "viewer")
        async with aclosing(viewer.client), watching(viewer, conversation, after=2) as events:
            await events.until("status")
            await worker_a.say(conversation, session, "from A", "a1")
            seen_on_b = await events.until("status")
        assert seqs(seen_on_b) == [3, 4, 5]
        assert texts(seen_on_b) == ["from A", "You said from A", "Say something"]


async def test_a_stopping_worker_ends_its_streams_instead_of_waiting_for_them(tmp_path: Path) -> None:
    grace = 60.0  # what uvicorn would wait for the stream, were it not told to end
    app, store = make_app(write_bot(tmp_path / "bot", BOT_CONFIG, {"talk": TALK_SKILL}), tmp_path / "r.db")
    app.state.accounts.hasher = FAST_HASHER
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    options = uvicorn_options("warning", grace, Settings())
    del options["log_config"]
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **options))
    serving = asyncio.create_task(uvicorn_server.serve(sockets=[listener]))
    try:
        while not uvicorn_server.started:
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.005)
        keys = await create_keys(store, "chat", now=datetime.now(UTC))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            server = Server(app=app, port=port, sdk_key=keys.sdk_key, secret_key=keys.secret_key, http=http)
            conversation, _ = await server.start()
            viewer = await signed_in(server, "viewer@example.com", "viewer")
            async with aclosing(viewer.client), watching(viewer, conversation) as events:
                await events.until("status")
                uvicorn_server.should_exit = True
                # Ended as a lifetime ends (no "end" event): the browser reconnects, to a worker still running.
                assert await events.next() is None
            await asyncio.wait_for(serving, grace / 4)
    finally:
        uvicorn_server.should_exit = True
        await serving
        listener.close()


async def test_a_stream_the_hub_drops_catches_up_from_the_store_and_ends(tmp_path: Path) -> None:
    async with serving(tmp_path) as server:
        # An inbox of one event: a turn's five (typing, three messages, status) overflow it, as a slow reader's would.
        tiny = MemoryHub(queue_size=1)
        server.app.state.hub = server.app.state.service.hub = tiny
        conversation, session = await server.start()
        viewer = await signed_in(server, "viewer@example.com", "viewer")
        async with aclosing(viewer.client), watching(viewer, conversation, after=2) as events:
            await events.until("status")
            await server.say(conversation, session, "hello", "m1")
            caught_up = []
            while (event := await events.next()) is not None:
                caught_up.append(event)
        assert seqs(caught_up) == [3, 4, 5]  # from the store, then the end: the browser reconnects
        assert [e.name for e in caught_up] == ["message"] * 3
        assert tiny.subscriber_count() == 0
