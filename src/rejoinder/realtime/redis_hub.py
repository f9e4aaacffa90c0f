"""The hub of many workers: Redis pub/sub, one channel per conversation.

Each worker holds one Redis connection for listening, whatever the number of its subscribers, and
subscribes to a conversation's channel while at least one local subscriber wants it. Publishing is queued
and sent in order by one task, so a worker's events for a conversation reach Redis in the order they were
published, and a slow or absent Redis never slows a turn. Redis is an accelerator, not the source of truth:
when it goes away every local subscriber is dropped (:class:`SubscriptionLost`) and catches up from the
database by ``seq`` on reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from rejoinder.realtime.hub import (
    DEFAULT_QUEUE_SIZE,
    Event,
    Held,
    HubClosed,
    HubUnavailable,
    LocalFanout,
    Subscription,
)

log = logging.getLogger("rejoinder.realtime")

DEFAULT_CHANNEL_PREFIX = "rejoinder:conversation:"
# Events waiting for Redis before the oldest are dropped (subscribers catch up from the database anyway).
DEFAULT_OUTBOX_LIMIT = 10_000
_BATCH = 500
_RETRY_DELAY = 0.5
_CONNECT_TIMEOUT = 5.0
# The listening connection is pinged when idle this long; no answer within another interval means it is dead.
_HEALTH_INTERVAL = 15.0
# Why subscribers were dropped, kept short: a WebSocket close frame quotes it and still has to say what to do
# (the driver's own error, which names addresses, goes to the log).
_UNREACHABLE = "Redis is unreachable"


class RedisHub:
    """A :class:`~rejoinder.realtime.hub.Hub` shared by every worker connected to the same Redis."""

    def __init__(
        self,
        url: str,
        *,
        channel_prefix: str = DEFAULT_CHANNEL_PREFIX,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
        health_interval: float = _HEALTH_INTERVAL,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "socket_keepalive": True,
        }
        # No retries inside redis-py: the sender retries whole batches itself, and on the listening side a
        # lost connection may have lost events, which the subscribers must hear of to catch up.
        options["retry"] = Retry(NoBackoff(), 0)
        self._publisher = Redis.from_url(url, **options)
        self._listener = Redis.from_url(url, **options)
        self._prefix = channel_prefix
        self._health_interval = health_interval
        self._connect_timeout = connect_timeout
        self._local = LocalFanout(queue_size)
        self._outbox: deque[tuple[str, str]] = deque()
        self._outbox_limit = outbox_limit
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._sender: asyncio.Task[None] | None = None
        self._send_failed = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        # Per channel, the futures waiting for Redis to confirm a SUBSCRIBE, in the order they were sent.
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------------------------------ publishing

    async def publish(self, conversation_id: str, event: Event) -> None:
        self.publish_nowait(conversation_id, event)

    def publish_nowait(self, conversation_id: str, *events: Event) -> None:
        """Queue ``events`` for Redis as one message (a JSON array when there are several): one PUBLISH for a
        turn's events, however many."""
        if self._closed or not events:
            return
        try:
            payload = json.dumps(events[0] if len(events) == 1 else events, separators=(",", ":"))
        except (TypeError, ValueError):
            # A publisher is never failed by its event (it has committed already): the event is only not sent.
            log.exception("an event for conversation %s is not JSON; it was not published", conversation_id)
            return
        if len(self._outbox) >= self._outbox_limit:
            self._outbox.popleft()
            log.warning("Redis is not keeping up: dropped the oldest unsent event (clients catch up by seq)")
        self._outbox.append((self._channel(conversation_id), payload))
        self._outbox_empty.clear()
        self._outbox_ready.set()
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(
                self._send_forever(), name="redis-hub-sender"
            )

    async def flush(self, within: float = 5.0) -> bool:
        """Wait until every event published so far was handed to Redis.

        False when Redis refused them meanwhile (they stay queued and are retried) or ``within`` s passed.
        """
        waits = [
            asyncio.ensure_future(self._outbox_empty.wait()),
            asyncio.ensure_future(self._send_failed.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._outbox_empty.is_set()

    async def _send_forever(self) -> None:
        while True:
            await self._outbox_ready.wait()
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), _BATCH))]
            try:
                async with self._publisher.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
            except (RedisError, OSError) as error:
                log.warning("could not publish %d events to Redis (%s); retrying", len(batch), error)
                self._send_failed.set()
                self._outbox.extendleft(reversed(batch))
                while len(self._outbox) > self._outbox_limit:
                    self._outbox.popleft()
                await asyncio.sleep(_RETRY_DELAY)
                continue
            self._send_failed.clear()
            if not self._outbox:
                self._outbox_ready.clear()
                self._outbox_empty.set()

    # ------------------------------------------------------------------------------------ subscribing

    def subscribe(self, conversation_id: str) -> AbstractAsyncContextManager[Subscription]:
        return Held(self._subscribed, self._leave, conversation_id)

    async def _subscribed(self, conversation_id: str) -> Subscription:
        """Join, and wait until Redis confirms the channel (leaving again if that fails)."""
        if self._closed:
            raise HubClosed("the realtime hub is closed")
        subscription, confirmed = await self._join(conversation_id)
        if confirmed is not None:
            try:
                await self._await_confirmation(confirmed)
            except BaseException:
                await self._leave(subscription)
                raise
        return subscription

    async def _join(self, conversation_id: str) -> tuple[Subscription, asyncio.Future[None] | None]:
        async with self._lock:
            first = self._local.count(conversation_id) == 0
            subscription = self._local.add(conversation_id)
            if not first:
                return subscription, self._pending_confirmation(conversation_id)
            channel = self._channel(conversation_id)
            confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._confirmations.setdefault(channel, deque()).append(confirmed)
            try:
                pubsub = await self._connected_pubsub()
                await pubsub.subscribe(channel)
            except (RedisError, OSError) as error:
                log.warning("cannot subscribe: Redis is unreachable: %s", error)
                self._local.remove(subscription)
                self._lose_connection(_UNREACHABLE)
                raise HubUnavailable(f"cannot subscribe: {_UNREACHABLE}") from error
            return subscription, confirmed

    def _pending_confirmation(self, conversation_id: str) -> asyncio.Future[None] | None:
        waiting = self._confirmations.get(self._channel(conversation_id))
        return waiting[-1] if waiting else None

    async def _await_confirmation(self, confirmed: asyncio.Future[None]) -> None:
        # Until Redis confirms, an event published now might not reach us; callers read the store after this.
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), self._connect_timeout)
        except TimeoutError:
            raise HubUnavailable("Redis did not confirm the subscription in time") from None

    async def _leave(self, subscription: Subscription) -> None:
        async with self._lock:
            if not self._local.remove(subscription) or self._pubsub is None:
                return
            try:
                await self._pubsub.unsubscribe(self._channel(subscription.conversation_id))
            except (RedisError, OSError) as error:
                log.warning("cannot unsubscribe: Redis is unreachable: %s", error)
                self._lose_connection(_UNREACHABLE)

    async def _connected_pubsub(self) -> PubSub:
        if self._pubsub is None:
            pubsub = self._listener.pubsub()
            await pubsub.connect()
            self._pubsub = pubsub
            self._reader = asyncio.get_running_loop().create_task(
                self._read_forever(pubsub), name="redis-hub-reader"
            )
        return self._pubsub

    async def _read_forever(self, pubsub: PubSub) -> None:
        unanswered_ping = False
        try:
            while True:
                message = await pubsub.get_message(timeout=self._health_interval)
                if message is None:
                    if unanswered_ping:
                        self._reader_lost(pubsub, f"no answer from Redis in {2 * self._health_interval:g} s")
                        return
                    await pubsub.ping()
                    unanswered_ping = True
                    continue
                unanswered_ping = False
                self._handle(message)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, RuntimeError) as error:
            self._reader_lost(pubsub, "lost the connection to Redis", error)

    def _reader_lost(self, pubsub: PubSub, reason: str, error: BaseException | None = None) -> None:
        if self._pubsub is pubsub:
            log.warning("lost the Redis pub/sub connection: %s", error or reason)
            self._lose_connection(reason)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = _text(message["channel"]) if message.get("channel") is not None else ""
        if kind == "message" and channel.startswith(self._prefix):
            try:
                sent = json.loads(message["data"])
            except ValueError:
                log.warning("ignored a malformed event on %s", channel)
                return
            conversation_id = channel[len(self._prefix) :]
            for event in sent if isinstance(sent, list) else [sent]:
                self._local.deliver(conversation_id, event)
        elif kind == "subscribe":
            waiting = self._confirmations.get(channel)
            if waiting:
                confirmed = waiting.popleft()
                if not waiting:
                    del self._confirmations[channel]
                if not confirmed.done():
                    confirmed.set_result(None)

    def _lose_connection(self, reason: str) -> None:
        """Drop every local subscriber and forget the listening connection; the next subscribe reconnects."""
        self._local.drop_all(reason)
        for waiting in self._confirmations.values():
            for confirmed in waiting:
                if not confirmed.done():
                    confirmed.set_exception(HubUnavailable(reason))
                    confirmed.exception()  # retrieved here: nobody may be waiting any more
        self._confirmations.clear()
        pubsub, self._pubsub = self._pubsub, None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        if pubsub is not None:
            closing = asyncio.get_running_loop().create_task(pubsub.aclose())
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------------------------ the rest

    def subscriber_count(self, conversation_id: str | None = None) -> int:
        return self._local.count(conversation_id)

    async def close(self) -> None:
        """Send what is still queued (briefly), end every subscription and close the connections."""
        if self._closed:
            return
        await self.flush(within=1.0)
        self._closed = True
        self._local.end_all()
        tasks = [task for task in (self._sender, self._reader) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        await self._listener.aclose()
        await self._publisher.aclose()

    def _channel(self, conversation_id: str) -> str:
        return self._prefix + conversation_id


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
