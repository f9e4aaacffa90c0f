"""Round trips to PostgreSQL: a customer's turn makes two (one read, one write), a resume at most three.

The app talks to the shared PostgreSQL through :class:`~tests.helpers.pgwire.CountingProxy`, which reads the
protocol and counts every exchange the client waits for. The first turn and resume warm the pool and the
prepared statements; the next ones are counted. With no ping before each use of a pooled connection, the
connections the server ended are still never handed to a call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from rejoinder.skills import load_bot
from rejoinder.store import Store
from tests.helpers.app import running
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.pgwire import PLAIN, CountingProxy, RoundTrip
from tests.helpers.services import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER

pytestmark = pytest.mark.timeout(60)

TURN_ROUND_TRIPS = 2
RESUME_ROUND_TRIPS = 3


@pytest.fixture(scope="module")
def proxy() -> Iterator[CountingProxy]:
    with CountingProxy(POSTGRES_PORT) as running:
        yield running


@pytest.fixture
async def app(
    migrated_postgres_url: str, proxy: CountingProxy
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Store]]:
    url = sa.make_url(migrated_postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    url += ("&" if "?" in url else "?") + PLAIN
    async with running(url, {"shop": load_bot(EXAMPLE_BOT)}) as server:
        yield server.client, server.sdk(), server.store


def _shown(trips: list[RoundTrip]) -> str:
    return "\n".join(str(trip) for trip in trips)


async def test_a_turn_makes_two_round_trips_to_postgres(
    app: tuple[httpx.AsyncClient, dict[str, str], Store], proxy: CountingProxy
) -> None:
    client, sdk, _store = app
    started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
    assert started.status_code == 201, started.text
    path = f"/v1/conversations/{started.json()['conversation_id']}/messages"
    session = {"Authorization": f"Bearer {started.json()['session']}"}
    for number in range(3):
        proxy.reset()
        answer = await client.post(
            path, json={"text": f"hello {number}", "client_message_id": f"m-{number}"}, headers=session
        )
        assert answer.status_code == 200, answer.text
        assert [m["sender"] for m in answer.json()["messages"]] == ["customer", "bot", "bot"]
    trips = proxy.trips()
    assert len(trips) == TURN_ROUND_TRIPS, _shown(trips)
    assert not any(sql.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK") for t in trips for sql in t.sql)


async def test_a_resume_makes_at_most_three_round_trips_to_postgres(
    app: tuple[httpx.AsyncClient, dict[str, str], Store], proxy: CountingProxy
) -> None:
    client, sdk, _store = app
    service = client._transport.app.state.service  # type: ignore[attr-defined]
    started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
    assert started.status_code == 201, started.text
    conversation_id = started.json()["conversation_id"]
    for number in range(3):
        token, _record = await service.issue_token(conversation_id)
        proxy.reset()
        resumed = await client.post("/v1/conversations/resume", json={"token": token}, headers=sdk)
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["conversation_id"] == conversation_id, number
    trips = proxy.trips()
    assert len(trips) <= RESUME_ROUND_TRIPS, _shown(trips)


async def test_pooled_connections_the_server_ended_are_replaced_without_a_ping(
    migrated_postgres_url: str, proxy: CountingProxy
) -> None:
    url = sa.make_url(migrated_postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    store = Store.from_url(url + ("&" if "?" in url else "?") + PLAIN)
    try:
        # Several pooled connections, each used once.
        await asyncio.gather(*(store.conversations.get("cnv_none") for _ in range(4)))
        admin = await asyncpg.connect(
            host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database="postgres", timeout=5
        )
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                sa.make_url(migrated_postgres_url).database,
            )
        finally:
            await admin.close()
        assert ended >= 1
        for _ in range(3):
            assert (
                await asyncio.gather(*(store.conversations.get("cnv_none") for _ in range(4))) == [None] * 4
            )
        assert await store.ping()
    finally:
        await store.close()
