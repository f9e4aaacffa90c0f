"""Redis restarted: the stream catches up, nothing is lost, and the API keeps answering.

Redis only carries live events between workers; the database is the source of truth. Two real ``rejoinder
serve`` processes share one PostgreSQL database and a ``redis-server`` of the test's own: a customer's page
watches the conversation on one while turns are taken on the other (and on both while Redis is away). Redis is
killed and started again, empty; the page reconnects with ``after=SEQ`` as the close frame tells it to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers import clients
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import ServeProcess, create_keys, serve_environment
from tests.scale.faults import RedisServer, transcript

pytestmark = pytest.mark.timeout(60)

TRY_AGAIN = 1013  # the close code that says: reconnect with after=<last seq received>
ANSWER_WITHIN = 3.0  # seconds any turn may take, Redis or not
RECONNECT_PAUSE = 0.1


class Page:
    """A customer's page on the stream of one conversation: it keeps every message it is sent, and reconnects
    with ``after=<last seq>`` whenever the server closes the socket."""

    def __init__(self, base: str, conversation_id: str, session: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/v1/conversations/{conversation_id}/stream"
        self.session = session
        self.received: list[dict[str, Any]] = []  # every message frame's message, over every connection
        self.closes: list[tuple[int | None, str]] = []
        self.connections = 0  # connections that got as far as the status frame (replay done, live from here)
        self.live = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def last_seq(self) -> int:
        return int(self.received[-1]["seq"]) if self.received else 0

    def open(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            self.live.clear()
            url = f"{self.url}?session={self.session}&after={self.last_seq}"
            try:
                async with connect(url, open_timeout=5) as ws:
                    async for data in ws:
                        frame = json.loads(data)
                        if frame["type"] == "message":
                            self.received.append(frame["message"])
                        elif frame["type"] == "status" and not self.live.is_set():
                            self.connections += 1
                            self.live.set()
                        elif frame["type"] == "ping":
                            await ws.send(json.dumps({"type": "pong"}))
                    self.closes.append((ws.close_code, ws.close_reason or ""))
            except ConnectionClosed as closed:
                self.closes.append(
                    (closed.rcvd.code if closed.rcvd else None, closed.rcvd.reason if closed.rcvd else "")
                )
            except (OSError, InvalidStatus) as error:
                self.closes.append((None, str(error)))
            await asyncio.sleep(RECONNECT_PAUSE)

    async def until_seq(self, seq: int, within: float = 5.0) -> None:
        deadline = time.monotonic() + within
        while self.last_seq < seq:
            assert time.monotonic() < deadline, (
                f"the page has seq {self.last_seq}, not {seq}; closes {self.closes}"
            )
            await asyncio.sleep(0.02)


async def say(client: httpx.AsyncClient, started: dict[str, Any], number: int) -> list[dict[str, Any]]:
    """One turn; it must be answered 200, quickly, whatever Redis is doing."""
    began = time.monotonic()
    response = await clients.say(
        client, started["conversation_id"], started["session"], f"message {number}", f"m-{number}"
    )
    assert response.status_code == 200, response.text
    assert time.monotonic() - began < ANSWER_WITHIN
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


async def test_redis_restarted_the_stream_catches_up_and_nothing_is_lost(
    make_postgres_url: Any, tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as redis_server:
        env = serve_environment(make_postgres_url(), REJOINDER_REDIS_URL=redis_server.url)
        watched, taking = (
            ServeProcess(EXAMPLE_BOT, env, tmp_path / "watched.log"),
            ServeProcess(EXAMPLE_BOT, env, tmp_path / "taking.log"),
        )
        try:
            # All three at once (each applies the migrations; PostgreSQL lets one do it while the others wait).
            keys, _, _ = await asyncio.gather(
                asyncio.to_thread(create_keys, env),
                asyncio.to_thread(watched.start),
                asyncio.to_thread(taking.start),
            )
            async with (
                httpx.AsyncClient(base_url=watched.base, timeout=10) as on_watched,
                httpx.AsyncClient(base_url=taking.base, timeout=10) as on_taking,
            ):
                await _restart_redis_under_a_watched_conversation(
                    redis_server, keys, watched.base, on_watched, on_taking
                )
        except BaseException:
            print(watched.log_text(), taking.log_text(), sep="\n")
            raise
        finally:
            await asyncio.gather(asyncio.to_thread(watched.stop), asyncio.to_thread(taking.stop))


async def _restart_redis_under_a_watched_conversation(
    redis_server: RedisServer,
    keys: dict[str, str],
    watched_base: str,
    on_watched: httpx.AsyncClient,
    on_taking: httpx.AsyncClient,
) -> None:
    sdk = {"Authorization": f"Bearer {keys['sdk_key']}"}
    response = await on_taking.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
    assert response.status_code == 201, response.text
    started = response.json()
    page = Page(watched_base, started["conversation_id"], started["session"])
    page.open()
    try:
        await asyncio.wait_for(page.live.wait(), 5)
        # Live through Redis: a turn taken by the other server reaches the page on its first connection.
        answered = await say(on_taking, started, 0)
        seq = answered[-1]["seq"]
        await page.until_seq(seq)
        assert page.connections == 1 and page.closes == []

        redis_server.kill()
        await _until(lambda: len(page.closes) >= 1, within=5)
        # The close frame says why and what to do, in full (a close reason holds at most 123 bytes).
        assert page.closes[0] == (
            TRY_AGAIN,
            f"lagging: lost the connection to Redis; reconnect with after={seq}",
        )

        # Redis is away: both servers keep answering turns and stay ready; the page cannot follow live.
        number = 1
        for client in (on_taking, on_watched, on_taking):
            await say(client, started, number)
            number += 1
        for client in (on_taking, on_watched):
            assert (await client.get("/readyz")).status_code == 200
        await _until(lambda: len(page.closes) >= 3, within=5)
        refused = f"unavailable: cannot subscribe: Redis is unreachable; reconnect with after={seq}"
        assert set(page.closes[1:]) == {(TRY_AGAIN, refused)}, page.closes
        assert page.connections == 1

        redis_server.start()  # empty: it remembers no subscription and no event
        stored = await transcript(on_taking, started["conversation_id"], started["session"])
        await page.until_seq(stored[-1]["seq"])  # caught up from the database by seq
        await asyncio.wait_for(page.live.wait(), 5)
        connections = page.connections
        for _ in range(3):  # live again, through Redis, without another reconnect
            answered = await say(on_taking, started, number)
            number += 1
            await page.until_seq(answered[-1]["seq"])
        assert page.connections == connections

        stored = await transcript(on_taking, started["conversation_id"], started["session"])
        assert [m["seq"] for m in stored] == list(range(1, 1 + 1 + 3 * number))
        assert page.received == stored  # every message once, in order, as stored
    finally:
        await page.close()


async def _until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
