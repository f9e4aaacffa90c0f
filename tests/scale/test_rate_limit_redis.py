"""Failed-resume counters in Redis: shared by every worker, atomic, and never a reason for the API to fail.

The windows here use the shared test Redis under a prefix of their own (``redis_prefix``); faults are made on a
proxy in front of it, or on a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.server.errors import Problem
from rejoinder.server.quotas import Quotas
from rejoinder.server.ratelimit import DEFAULT_KEY_PREFIX, RedisFailureWindow, redis_client
from rejoinder.service.keys import create_keys
from rejoinder.skills import load_bot
from rejoinder.store import Store
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import free_port
from tests.helpers.proxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

UNKNOWN_TOKEN = "rjt_" + "B" * 43  # well formed, belongs to nothing: 404, and one failure counted


@pytest.fixture
async def clients(redis_url: str) -> AsyncIterator[list[redis.asyncio.Redis]]:
    """Two Redis clients, as two workers each have their own."""
    made = [redis_client(redis_url), redis_client(redis_url)]
    yield made
    for client in made:
        await client.aclose()


async def test_a_key_is_refused_after_limit_failures_until_the_oldest_leaves_the_window(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    window = RedisFailureWindow(clients[0], limit=3, window=1.0, prefix=redis_prefix)
    before_first = time.monotonic()
    await window.add("1.2.3.4")
    await asyncio.sleep(0.2)
    await window.add("1.2.3.4")
    assert await window.retry_after("1.2.3.4") == 0
    await window.add("1.2.3.4")

    wait = await window.retry_after("1.2.3.4")
    # Until the first failure, at least 0.2 s older than the others, leaves the window.
    assert 1.0 - (time.monotonic() - before_first) - 0.01 <= wait <= 0.81
    assert await window.retry_after("5.6.7.8") == 0
    # The key expires with its newest failure: nothing is left behind.
    assert 0 < await clients[0].pttl(redis_prefix + "1.2.3.4") <= 1000
    await asyncio.sleep(wait + 0.02)
    assert await window.retry_after("1.2.3.4") == 0


async def test_workers_count_into_the_same_window_atomically(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    first, second = (
        RedisFailureWindow(client, limit=5, window=30, prefix=redis_prefix) for client in clients
    )
    await first.add("bot")
    await second.add("bot")
    assert await first.retry_after("bot") == await second.retry_after("bot") == 0
    await asyncio.gather(*(window.add("bot") for window in (first, second) for _ in range(20)))

    for window in (first, second):
        assert 29 < await window.retry_after("bot") <= 30
    # 42 failures, of which only the newest `limit` are kept, with the window as their lifetime.
    assert await clients[0].zcard(redis_prefix + "bot") == 5
    assert 0 < await clients[0].pttl(redis_prefix + "bot") <= 30_000


async def test_redis_refusing_connections_falls_back_to_counting_in_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    window = RedisFailureWindow(nowhere, limit=2, window=30, prefix="unused:")
    try:
        with caplog.at_level(logging.WARNING, logger="rejoinder.ratelimit"):
            started = time.monotonic()
            assert await window.retry_after("ip") == 0
            await window.add("ip")
            await window.add("ip")
            assert await window.retry_after("ip") > 29
            assert await window.retry_after("other") == 0
            assert time.monotonic() - started < 1.0
    finally:
        await nowhere.aclose()
    warnings = [record for record in caplog.records if record.name == "rejoinder.ratelimit"]
    assert len(warnings) == 1 and "Redis is unavailable" in warnings[0].getMessage()


async def test_a_hung_redis_costs_one_timeout_then_nothing_and_is_used_again_once_it_answers(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = redis_url.rpartition("/")[2]
    with TcpProxy(int(redis_url.rpartition(":")[2].partition("/")[0])) as proxy:
        client = redis_client(f"redis://127.0.0.1:{proxy.port}/{db}", timeout=0.3)
        window = RedisFailureWindow(client, limit=2, window=30, prefix=redis_prefix, recheck_after=0.5)
        try:
            await window.add("ip")
            proxy.freeze()
            with caplog.at_level(logging.WARNING, logger="rejoinder.ratelimit"):
                started = time.monotonic()
                assert await window.retry_after("ip") == 0  # Redis held one failure; this process none
                first = time.monotonic() - started
                started = time.monotonic()
                for _ in range(3):
                    await window.add("ip")
                assert await window.retry_after("ip") > 29  # counted here meanwhile
                after = time.monotonic() - started
                assert first < 1.0 and after < 0.2, (first, after)

                proxy.thaw()
                await asyncio.sleep(0.6)
                # Redis again: it knows of one failure only, so the key may try.
                assert await window.retry_after("ip") == 0
        finally:
            await client.aclose()
    messages = [record.getMessage() for record in caplog.records if record.name == "rejoinder.ratelimit"]
    assert len(messages) == 2
    assert "Redis is unavailable" in messages[0] and "Redis answers again" in messages[1]


# ---------------------------------------------------------------------------------------------- through the API


@asynccontextmanager
async def worker(
    database: Path, redis_url: str, client_ip: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An app as ``rejoinder serve`` makes it (Redis from its settings, no guard given), with an SDK key."""
    url = f"sqlite:///{database}"
    bot = load_bot(EXAMPLE_BOT)
    app = create_app(
        {bot.id: bot}, store=Store.from_url(url), settings=Settings(database_url=url, redis_url=redis_url)
    )
    async with app.router.lifespan_context(app):
        keys = await create_keys(app.state.store, bot.id, now=datetime.now(UTC))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
            yield client, keys.sdk_key


async def resume(client: httpx.AsyncClient, sdk_key: str) -> httpx.Response:
    return await client.post(
        "/v1/conversations/resume",
        json={"token": UNKNOWN_TOKEN},
        headers={"Authorization": f"Bearer {sdk_key}"},
    )


async def test_failed_resumes_on_one_worker_are_refused_on_another(tmp_path: Path, redis_url: str) -> None:
    ip = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    try:
        async with (
            worker(tmp_path / "db.sqlite", redis_url, ip) as (one, one_key),
            worker(tmp_path / "db.sqlite", redis_url, ip) as (other, other_key),
        ):
            for _ in range(10):  # the default limit per IP
                assert (await resume(one, one_key)).status_code == 404

            refused = await resume(other, other_key)

        assert refused.status_code == 429
        assert refused.json()["type"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    finally:
        cleanup = redis_client(redis_url)
        await cleanup.delete(f"{DEFAULT_KEY_PREFIX}ip:{ip}")
        await cleanup.aclose()


async def test_with_redis_down_resumes_are_still_answered_and_limited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with caplog.at_level(logging.WARNING, logger="rejoinder.ratelimit"):
        async with worker(tmp_path / "db.sqlite", nowhere, "10.0.0.1") as (client, sdk_key):
            answers = [await resume(client, sdk_key) for _ in range(11)]
    assert [answer.status_code for answer in answers] == [404] * 10 + [429]
    assert any("Redis is unavailable" in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------------------------------------ quotas


async def test_take_counts_atomically_and_never_past_the_limit(
    clients: list[redis.asyncio.Redis], redis_prefix: str
) -> None:
    first, second = (
        RedisFailureWindow(client, limit=7, window=30, prefix=redis_prefix) for client in clients
    )

    waits = await asyncio.gather(*(window.take("ip") for window in (first, second) for _ in range(20)))

    assert sum(1 for wait in waits if wait == 0) == 7  # exactly the limit got through, across both
    assert all(29 < wait <= 30 for wait in waits if wait)
    assert await clients[0].zcard(redis_prefix + "ip") == 7


async def test_quotas_of_two_workers_count_together_through_redis(redis_url: str, redis_prefix: str) -> None:
    settings = Settings(
        database_url="sqlite://",
        redis_url=redis_url,
        quota_starts_per_ip=3,
        quota_starts_per_bot=0,
        quota_messages_per_ip=0,
        quota_messages_per_bot=2,
    )
    workers = [Quotas.from_settings(settings, prefix=redis_prefix) for _ in range(2)]
    try:
        assert workers[0].starts_per_bot is None  # 0 leaves a quota out
        await workers[0].start("192.0.2.1", "shop")
        await workers[1].start("192.0.2.1", "shop")
        await workers[0].start("192.0.2.1", "shop")
        with pytest.raises(Problem) as refused:
            await workers[1].start("192.0.2.1", "shop")
        assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) >= 1
        await workers[1].start("192.0.2.2", "shop")

        await workers[0].message("192.0.2.3", "shop")
        await workers[1].message("192.0.2.4", "shop")
        with pytest.raises(Problem, match="messages to this bot"):
            await workers[0].message("192.0.2.5", "shop")
    finally:
        for quotas in workers:
            await quotas.aclose()
