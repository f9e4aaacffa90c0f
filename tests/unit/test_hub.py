"""The realtime hub: in process (MemoryHub) and across workers through Redis (RedisHub)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio

from rejoinder.realtime import (
    Event,
    Hub,
    HubClosed,
    HubUnavailable,
    MemoryHub,
    RedisHub,
    Subscription,
    SubscriptionLost,
    message_event,
)
from rejoinder.store.records import MessageRecord

pytestmark = pytest.mark.timeout(20)

HubPair = tuple[Hub, Hub]  # (the publishing worker's hub, the subscribing worker's hub)


async def _take(subscription: Subscription, count: int, within: float = 3.0) -> list[Event]:
    async def take() -> list[Event]:
        got: list[Event] = []
        async for event in subscription:
            got.append(event)
            if len(got) == count:
                break
        return got

    return await asyncio.wait_for(take(), within)


async def _nothing_more(subscription: Subscription, wait: float = 0.1) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(subscription), wait)


@pytest.fixture(params=["memory", "redis"])
async def hubs(request: pytest.FixtureRequest) -> AsyncIterator[HubPair]:
    """Two hubs that share subscribers: one MemoryHub twice, or two RedisHubs (two workers) on one Redis."""
    if request.param == "memory":
        hub = MemoryHub(queue_size=8)
        yield hub, hub
        await hub.close()
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    publisher = RedisHub(url, channel_prefix=prefix, queue_size=8)
    subscriber = RedisHub(url, channel_prefix=prefix, queue_size=8)
    yield publisher, subscriber
    await publisher.close()
    await subscriber.close()


async def test_events_reach_every_subscriber_of_the_conversation_in_order(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    async with (
        subscriber.subscribe("c1") as first,
        subscriber.subscribe("c1") as second,
        subscriber.subscribe("c2") as other,
    ):
        for seq in range(1, 6):
            await publisher.publish("c1", {"type": "message", "seq": seq})
        expected = [{"type": "message", "seq": seq} for seq in range(1, 6)]
        assert await _take(first, 5) == expected
        assert await _take(second, 5) == expected
        await _nothing_more(other)


async def test_an_event_published_right_after_subscribing_is_not_missed(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    for attempt in range(20):
        async with subscriber.subscribe(f"fresh{attempt}") as subscription:
            publisher.publish_nowait(f"fresh{attempt}", {"n": attempt})
            assert await _take(subscription, 1) == [{"n": attempt}]


async def test_events_published_together_arrive_in_order(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    async with subscriber.subscribe("c1") as subscription:
        publisher.publish_nowait("c1", {"seq": 1}, {"seq": 2}, {"type": "status"})
        publisher.publish_nowait("c1", {"seq": 3})
        assert await _take(subscription, 4) == [{"seq": 1}, {"seq": 2}, {"type": "status"}, {"seq": 3}]


async def test_a_turns_events_are_one_message_to_redis(redis_url: str, redis_prefix: str) -> None:
    hub = RedisHub(redis_url, channel_prefix=redis_prefix)
    listener = redis.asyncio.Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    try:
        await pubsub.subscribe(redis_prefix + "c1")
        assert (await pubsub.get_message(timeout=3))["type"] == "subscribe"
        hub.publish_nowait("c1", {"seq": 1}, {"seq": 2}, {"type": "status"})
        assert await hub.flush()
        sent = await pubsub.get_message(timeout=3)
        assert sent is not None and json.loads(sent["data"]) == [{"seq": 1}, {"seq": 2}, {"type": "status"}]
        assert await pubsub.get_message(timeout=0.2) is None
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await hub.close()


async def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    async with subscriber.subscribe("c1") as slow, subscriber.subscribe("c1") as keen:
        received: list[Event] = []
        for seq in range(1, 21):
            publisher.publish_nowait("c1", {"seq": seq})  # never waits, however far behind "slow" is
            received += await _take(keen, 1)
        assert [event["seq"] for event in received] == list(range(1, 21))
        with pytest.raises(SubscriptionLost, match="behind"):
            await _take(slow, 1)
        assert subscriber.subscriber_count("c1") == 2  # dropped, but still counted until it leaves


async def test_leaving_unsubscribes(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    async with subscriber.subscribe("c1"), subscriber.subscribe("c2"):
        assert subscriber.subscriber_count() == 2
        assert subscriber.subscriber_count("c1") == 1
    assert subscriber.subscriber_count() == 0
    async with subscriber.subscribe("c1") as again:
        await publisher.publish("c1", {"after": "rejoin"})
        assert await _take(again, 1) == [{"after": "rejoin"}]


async def test_a_listener_is_told_of_each_event_and_takes_them_without_waiting(hubs: HubPair) -> None:
    publisher, subscriber = hubs
    async with subscriber.subscribe("c1") as subscription:
        told = asyncio.Event()
        subscription.listen(told.set)
        assert subscription.get_nowait() is None
        publisher.publish_nowait("c1", {"seq": 1})
        publisher.publish_nowait("c1", {"seq": 2})
        await asyncio.wait_for(told.wait(), 3)
        taken: list[Event] = []

        async def both_taken() -> bool:
            while (event := subscription.get_nowait()) is not None:
                taken.append(event)
            return len(taken) == 2

        await _eventually(both_taken)
        assert taken == [{"seq": 1}, {"seq": 2}]
        told.clear()
        subscription.drop("gone")
        assert told.is_set()
        with pytest.raises(SubscriptionLost, match="gone"):
            subscription.get_nowait()


async def test_closing_the_hub_ends_subscriptions_and_refuses_new_ones() -> None:
    hub = MemoryHub()
    async with hub.subscribe("c1") as subscription:
        hub.publish_nowait("c1", {"last": True})
        await hub.close()
        assert [event async for event in subscription] == [{"last": True}]
    with pytest.raises(HubClosed):
        async with hub.subscribe("c1"):
            pass


async def test_a_message_event_carries_the_message_as_the_api_shows_it() -> None:
    hub = MemoryHub()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    records = [
        MessageRecord("c1", 4, 4, "customer", "text", {"text": "hi"}, "m1", at),
        MessageRecord("c1", 5, 4, "bot", "buttons", {"text": "Pick", "buttons": [{"label": "A"}]}, None, at),
    ]
    async with hub.subscribe("c1") as subscription:
        for record in records:
            hub.publish_nowait("c1", message_event(record))
        events = await _take(subscription, 2)
    assert events == [
        {
            "type": "message",
            "message": {
                "seq": 4,
                "sender": "customer",
                "type": "text",
                "text": "hi",
                "created_at": "2026-01-02T03:04:05.000Z",
            },
        },
        {
            "type": "message",
            "message": {
                "seq": 5,
                "sender": "bot",
                "type": "buttons",
                "text": "Pick",
                "buttons": [{"label": "A"}],
                "created_at": "2026-01-02T03:04:05.000Z",
            },
        },
    ]


# ---------------------------------------------------------------------------------------------- Redis faults


class _Proxy:
    """A TCP proxy in front of Redis that the test can cut, to lose connections without touching Redis."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    await self.flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def freeze(self) -> None:
        """Keep the connections open but let nothing through, like a hung server."""
        self.flowing.clear()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def proxied_redis(redis_url: str) -> AsyncIterator[tuple[str, _Proxy]]:
    base, _, db = redis_url.rpartition("/")
    host, _, port = base.removeprefix("redis://").partition(":")
    proxy = _Proxy(host, int(port))
    proxy_port = await proxy.start()
    yield f"redis://127.0.0.1:{proxy_port}/{db}", proxy
    await proxy.close()


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_losing_redis_drops_subscribers_so_they_catch_up_and_the_hub_recovers(
    proxied_redis: tuple[str, _Proxy], redis_url: str, redis_prefix: str
) -> None:
    url, proxy = proxied_redis
    subscriber = RedisHub(url, channel_prefix=redis_prefix)
    publisher = RedisHub(redis_url, channel_prefix=redis_prefix)
    try:
        async with subscriber.subscribe("c1") as subscription:
            await publisher.publish("c1", {"seq": 1})
            assert await _take(subscription, 1) == [{"seq": 1}]
            proxy.cut()
            with pytest.raises(SubscriptionLost, match="Redis"):
                await _take(subscription, 1)
        async with subscriber.subscribe("c1") as again:
            await publisher.publish("c1", {"seq": 2})
            assert await _take(again, 1) == [{"seq": 2}]
    finally:
        await subscriber.close()
        await publisher.close()


async def test_a_hung_redis_is_noticed_by_the_health_ping(
    proxied_redis: tuple[str, _Proxy], redis_prefix: str
) -> None:
    url, proxy = proxied_redis
    hub = RedisHub(url, channel_prefix=redis_prefix, health_interval=0.1, connect_timeout=0.5)
    try:
        async with hub.subscribe("c1") as subscription:
            proxy.freeze()
            with pytest.raises(SubscriptionLost, match="no answer from Redis"):
                await _take(subscription, 1)
        with pytest.raises(HubUnavailable):
            async with hub.subscribe("c1"):
                pass
    finally:
        await hub.close()


async def test_an_unreachable_redis_refuses_subscriptions_but_never_blocks_publishers(
    redis_prefix: str,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hub = RedisHub(f"redis://127.0.0.1:{closed_port}/0", channel_prefix=redis_prefix)
    try:
        with pytest.raises(HubUnavailable, match="unreachable"):
            async with hub.subscribe("c1"):
                pass
        started = asyncio.get_running_loop().time()
        for seq in range(100):
            await hub.publish("c1", {"seq": seq})
        assert asyncio.get_running_loop().time() - started < 0.1
        assert hub.subscriber_count() == 0
    finally:
        await hub.close()


async def test_redis_events_are_ordered_per_publisher_under_load(redis_url: str, redis_prefix: str) -> None:
    publisher = RedisHub(redis_url, channel_prefix=redis_prefix)
    subscriber = RedisHub(redis_url, channel_prefix=redis_prefix, queue_size=2000)
    try:
        async with subscriber.subscribe("c1") as subscription:
            for seq in range(1000):
                publisher.publish_nowait("c1", {"seq": seq})
            assert await publisher.flush()
            events = await _take(subscription, 1000)
        assert [event["seq"] for event in events] == list(range(1000))
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await _eventually(
                lambda: _numsub(client, redis_prefix + "c1", expected=0),
            )
        finally:
            await client.aclose()
    finally:
        await publisher.close()
        await subscriber.close()


async def _numsub(client: redis.asyncio.Redis, channel: str, *, expected: int) -> bool:
    [(_, count)] = await client.pubsub_numsub(channel)
    return int(count) == expected
