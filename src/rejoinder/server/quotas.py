"""Quotas of anonymous clients: how many conversations they start and messages they send, per client and per bot.

The SDK key is public, so anyone may start conversations and send messages; these limits keep one client (its IP
address, or its IPv6 /64) from filling the database, and all clients together from flooding one bot. Over a
limit, the request is answered 429 with ``Retry-After`` before anything is stored. The counts are sliding windows,
shared through Redis by every worker when it is configured (see :mod:`rejoinder.server.ratelimit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from rejoinder.config import Settings
from rejoinder.server.addresses import client_key
from rejoinder.server.ratelimit import (
    FailureWindow,
    MemoryFailureWindow,
    RedisFailureWindow,
    redis_client,
    refuse_if_waiting,
)

DEFAULT_KEY_PREFIX = "rejoinder:quota:"


@dataclass
class Quota:
    """One limit: a window per key, and what a refusal says."""

    window: FailureWindow
    what: str  # "new conversations from this address", …

    async def take(self, key: str) -> None:
        refuse_if_waiting(await self.window.take(key), self.what)


@dataclass
class Quotas:
    """The four limits; a limit of 0 in the settings leaves it out."""

    starts_per_ip: Quota | None = None
    starts_per_bot: Quota | None = None
    messages_per_ip: Quota | None = None
    messages_per_bot: Quota | None = None
    redis: Redis | None = field(default=None, repr=False)  # the client to close, when the quotas made one

    @classmethod
    def from_settings(cls, settings: Settings, *, prefix: str = DEFAULT_KEY_PREFIX) -> Quotas:
        """Counts in Redis when ``settings.redis_url`` is set (nothing connects until first use), else here."""
        redis = redis_client(settings.redis_url) if settings.redis_url else None
        window = settings.quota_window

        def quota(limit: int, name: str, what: str) -> Quota | None:
            if limit <= 0:
                return None
            if redis is None:
                return Quota(MemoryFailureWindow(limit, window), what)
            return Quota(RedisFailureWindow(redis, limit, window, prefix=f"{prefix}{name}:"), what)

        return cls(
            quota(settings.quota_starts_per_ip, "start-ip", "new conversations from this address"),
            quota(settings.quota_starts_per_bot, "start-bot", "new conversations with this bot"),
            quota(settings.quota_messages_per_ip, "message-ip", "messages from this address"),
            quota(settings.quota_messages_per_bot, "message-bot", "messages to this bot"),
            redis,
        )

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def start(self, ip: str | None, bot_id: str) -> None:
        """Count a conversation about to start; raise a 429 problem when a limit is reached."""
        await _take(self.starts_per_ip, client_key(ip), self.starts_per_bot, bot_id)

    async def message(self, ip: str | None, bot_id: str) -> None:
        """Count a message about to be sent; raise a 429 problem when a limit is reached."""
        await _take(self.messages_per_ip, client_key(ip), self.messages_per_bot, bot_id)


async def _take(per_ip: Quota | None, ip_key: str, per_bot: Quota | None, bot_id: str) -> None:
    # The client's own limit first: a client over it does not use up the bot's.
    if per_ip is not None:
        await per_ip.take(ip_key)
    if per_bot is not None:
        await per_bot.take(bot_id)
