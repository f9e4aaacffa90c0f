"""Realtime delivery of a conversation's events to its open streams: in process, or across workers (Redis)."""

from rejoinder.realtime.events import (
    message_event,
    sessions_ended_event,
    status_event,
    typing_event,
)
from rejoinder.realtime.hub import (
    Event,
    Hub,
    HubClosed,
    HubError,
    HubUnavailable,
    MemoryHub,
    Subscription,
    SubscriptionLost,
)
from rejoinder.realtime.redis_hub import RedisHub


def create_hub(redis_url: str | None) -> Hub:
    """A :class:`RedisHub` when a Redis URL is configured (several workers), else a :class:`MemoryHub`."""
    return RedisHub(redis_url) if redis_url else MemoryHub()


__all__ = [
    "Event",
    "Hub",
    "HubClosed",
    "HubError",
    "HubUnavailable",
    "MemoryHub",
    "RedisHub",
    "Subscription",
    "SubscriptionLost",
    "create_hub",
    "message_event",
    "sessions_ended_event",
    "status_event",
    "typing_event",
]
