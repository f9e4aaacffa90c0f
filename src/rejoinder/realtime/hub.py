"""The pub/sub hub: what a committed turn publishes and every open stream of that conversation receives.

Delivery is best effort by design. The database is the source of truth: every message event carries its
``seq``, and a subscriber that is dropped (too slow, or the hub lost its backend) catches up from the store.
Publishing never waits for a subscriber.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

Event = dict[str, Any]

# Events a subscriber may have waiting before it counts as too slow and is dropped.
DEFAULT_QUEUE_SIZE = 256


class HubError(Exception):
    """Base class of the hub's errors."""


class SubscriptionLost(HubError):
    """The hub stopped delivering to this subscriber; reconnect and catch up from the store by ``seq``."""


class HubUnavailable(HubError):
    """The hub cannot take a subscription right now (its backend is unreachable)."""


class HubClosed(HubError):
    """The hub was closed (the server is shutting down)."""


class Subscription:
    """One subscriber's bounded inbox of one conversation's events.

    Read it with ``async for`` (iteration ends when the hub closes and raises :class:`SubscriptionLost` when the
    subscriber was dropped), or set a listener and take events with :meth:`get_nowait` when told of them, which
    keeps no task waiting while the conversation is quiet. Events are shared between subscribers: treat them as
    read-only.
    """

    __slots__ = ("_ended", "_events", "_limit", "_listener", "_lost", "_waiter", "conversation_id")

    def __init__(self, conversation_id: str, limit: int = DEFAULT_QUEUE_SIZE) -> None:
        self.conversation_id = conversation_id
        self._events: deque[Event] | None = None  # made on the first event: an idle subscriber stays small
        self._limit = limit
        self._waiter: asyncio.Future[None] | None = None
        self._listener: Callable[[], None] | None = None
        self._lost: str | None = None
        self._ended = False

    @property
    def active(self) -> bool:
        """Whether events are still being delivered."""
        return self._lost is None and not self._ended

    @property
    def ended(self) -> bool:
        """Whether the hub closed (the events already queued can still be read)."""
        return self._ended

    def listen(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (synchronously, in the publisher's turn) when an event arrives or delivery stops."""
        self._listener = listener

    def deliver(self, event: Event) -> bool:
        """Queue ``event`` without waiting. A full inbox drops the subscriber; False when not delivered."""
        if not self.active:
            return False
        if self._events is None:
            self._events = deque()
        elif len(self._events) >= self._limit:
            self.drop(f"fell more than {self._limit} events behind")
            return False
        self._events.append(event)
        self._wake()
        return True

    def drop(self, reason: str) -> None:
        """Stop delivering: the reader gets :class:`SubscriptionLost` (saying ``reason``), no more events."""
        if not self.active:
            return
        self._lost = reason
        self._events = None
        self._wake()

    def end(self) -> None:
        """Stop delivering: the reader sees the events already queued, then the end of the iteration."""
        self._ended = True
        self._wake()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when there is none; raises :class:`SubscriptionLost` once dropped."""
        if self._lost is not None:
            raise SubscriptionLost(self._lost)
        return self._events.popleft() if self._events else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._listener is not None:
            self._listener()


class Hub(Protocol):
    """Publish a conversation's events to every subscriber of that conversation, on any worker."""

    async def publish(self, conversation_id: str, event: Event) -> None:
        """Send ``event`` to the conversation's subscribers; never waits for them."""
        ...

    def publish_nowait(self, conversation_id: str, *events: Event) -> None:
        """The same as :meth:`publish`, from synchronous code (events of one caller keep their order); several
        events (a turn's) are sent together, in order."""
        ...

    def subscribe(self, conversation_id: str) -> AbstractAsyncContextManager[Subscription]:
        """Receive the conversation's events published from the moment the context is entered.

        Raises :class:`HubUnavailable` or :class:`HubClosed` on entry when no subscription can be made.
        """
        ...

    def subscriber_count(self, conversation_id: str | None = None) -> int:
        """Subscribers in this process (of one conversation, or of all)."""
        ...

    async def close(self) -> None:
        """End every subscription and release the hub's resources."""
        ...


class Held:
    """``async with``: a subscription taken by ``join`` on entry and given back by ``leave`` on exit.

    A plain object rather than a generator-based context manager: an idle WebSocket keeps its one for as long as it
    is open, and a suspended generator's frame would cost every open socket its memory.
    """

    __slots__ = ("_conversation_id", "_join", "_leave", "_subscription")

    def __init__(
        self,
        join: Callable[[str], Awaitable[Subscription]],
        leave: Callable[[Subscription], Awaitable[None]],
        conversation_id: str,
    ) -> None:
        self._join = join
        self._leave = leave
        self._conversation_id = conversation_id
        self._subscription: Subscription | None = None

    async def __aenter__(self) -> Subscription:
        self._subscription = await self._join(self._conversation_id)
        return self._subscription

    async def __aexit__(self, *exc_info: object) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await self._leave(subscription)


class LocalFanout:
    """Subscribers of this process by conversation: the part every hub shares."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        # Lists, not sets: a conversation rarely has more than one or two, and a list of one is a third the size.
        self.by_conversation: dict[str, list[Subscription]] = {}

    def add(self, conversation_id: str) -> Subscription:
        subscription = Subscription(conversation_id, self.queue_size)
        self.by_conversation.setdefault(conversation_id, []).append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> bool:
        """Forget a subscriber; True when it was its conversation's last one here."""
        subscribers = self.by_conversation.get(subscription.conversation_id)
        if subscribers is None or subscription not in subscribers:
            return False
        subscribers.remove(subscription)
        if subscribers:
            return False
        del self.by_conversation[subscription.conversation_id]
        return True

    def deliver(self, conversation_id: str, event: Event) -> None:
        for subscription in self.by_conversation.get(conversation_id, ()):
            subscription.deliver(event)

    def count(self, conversation_id: str | None = None) -> int:
        if conversation_id is not None:
            return len(self.by_conversation.get(conversation_id, ()))
        return sum(len(subscribers) for subscribers in self.by_conversation.values())

    def drop_all(self, reason: str) -> None:
        for subscribers in self.by_conversation.values():
            for subscription in subscribers:
                subscription.drop(reason)
        self.by_conversation.clear()

    def end_all(self) -> None:
        for subscribers in self.by_conversation.values():
            for subscription in subscribers:
                subscription.end()
        self.by_conversation.clear()


class MemoryHub:
    """The hub of a single worker: events go straight from the publisher to this process's subscribers."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._local = LocalFanout(queue_size)
        self._closed = False

    async def publish(self, conversation_id: str, event: Event) -> None:
        self.publish_nowait(conversation_id, event)

    def publish_nowait(self, conversation_id: str, *events: Event) -> None:
        if not self._closed:
            for event in events:
                self._local.deliver(conversation_id, event)

    def subscribe(self, conversation_id: str) -> AbstractAsyncContextManager[Subscription]:
        return Held(self._join, self._leave, conversation_id)

    async def _join(self, conversation_id: str) -> Subscription:
        if self._closed:
            raise HubClosed("the realtime hub is closed")
        return self._local.add(conversation_id)

    async def _leave(self, subscription: Subscription) -> None:
        self._local.remove(subscription)

    def subscriber_count(self, conversation_id: str | None = None) -> int:
        return self._local.count(conversation_id)

    async def close(self) -> None:
        self._closed = True
        self._local.end_all()
