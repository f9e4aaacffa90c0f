"""Limits on failed resume attempts, per client IP and per bot, so tokens cannot be guessed at speed.

Only failures count: a client that resumes its own conversations is never slowed. Once a client IP (an IPv6
client by its /64, which one subscriber usually holds whole) has had ``limit`` failures within ``window`` seconds,
its further attempts are answered 429 with ``Retry-After`` until the oldest of those failures leaves the window.
The count per bot, across all clients, only ever turns *failed* attempts into 429s: a valid token is never refused
for what other clients did. The counters sit behind :class:`FailureWindow`: in this process
(:class:`MemoryFailureWindow`), or in Redis (:class:`RedisFailureWindow`), shared by every worker of a deployment so
that spreading attempts over workers gains nothing. A Redis that is down or slow never takes resuming down with it:
the window falls back to counting in this process until Redis answers again.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from rejoinder.server.addresses import client_key
from rejoinder.server.errors import Problem

log = logging.getLogger("rejoinder.ratelimit")

DEFAULT_KEY_PREFIX = "rejoinder:resume-failures:"
# A resume waits at most this long for Redis; then the window counts in this process for a while.
REDIS_TIMEOUT = 0.5
REDIS_RECHECK_AFTER = 5.0  # seconds before a window that fell back asks Redis again
_RESUME_FAILURES = "failed attempts to resume a conversation"


def _check_window(limit: int, window: float) -> None:
    if limit < 1 or window <= 0:
        raise ValueError("a failure window needs limit >= 1 and window > 0")


class FailureWindow(Protocol):
    """Events per key (failures, or requests for a quota) in a sliding time window."""

    async def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        ...

    async def add(self, key: str) -> None:
        """Count one event for ``key``."""
        ...

    async def take(self, key: str) -> float:
        """Count one event for ``key`` if the window has room (answering 0), else only answer how long to wait."""
        ...


class MemoryFailureWindow:
    """A sliding window kept in this process, of at most ``max_keys`` keys (the stalest are forgotten)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_window(limit, window)
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    async def retry_after(self, key: str) -> float:
        failures = self._current(key)
        if failures is None or len(failures) < self.limit:
            return 0.0
        # The attempt is allowed again once enough old failures have left the window.
        return max(failures[-self.limit] + self.window - self.clock(), 0.0)

    async def take(self, key: str) -> float:
        wait = await self.retry_after(key)
        if wait <= 0:
            await self.add(key)
        return wait

    async def add(self, key: str) -> None:
        failures = self._current(key)
        if failures is None:
            failures = self._failures[key] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        failures.append(self.clock())
        self._failures.move_to_end(key)

    def _current(self, key: str) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures


# Both scripts read the time from Redis, so that every worker (on every host) counts on the same clock.
# A key is a sorted set of failures scored by their time in ms, trimmed to the newest ``limit`` and expiring with
# the window: a key nobody fails on any more leaves nothing behind.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
"""
_ADD = (
    _NOW
    + """
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -limit - 1)
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
)
_RETRY_AFTER = (
    _NOW
    + """
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then return 0 end
local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 0)
"""
)


_TAKE = (
    _NOW
    + """
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
)


class RedisFailureWindow:
    """A sliding window in Redis, shared by every worker that uses the same Redis and ``prefix``.

    Each call is one atomic script. When Redis fails or does not answer within its client's timeout, the call is
    answered by ``fallback`` (counts kept in this process), and so are the calls of the next ``recheck_after``
    seconds, without waiting on Redis again; a warning is logged when that starts and when Redis is back. Failures
    counted in the fallback are not carried over to Redis.
    """

    def __init__(
        self,
        redis: Redis,
        limit: int,
        window: float,
        *,
        prefix: str = DEFAULT_KEY_PREFIX,
        fallback: FailureWindow | None = None,
        recheck_after: float = REDIS_RECHECK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_window(limit, window)
        self.redis = redis
        self.limit = limit
        self.window_ms = max(round(window * 1000), 1)
        self.prefix = prefix
        self.fallback = fallback or MemoryFailureWindow(limit, window)
        self.recheck_after = recheck_after
        self.clock = clock
        self._add = redis.register_script(_ADD)
        self._retry_after = redis.register_script(_RETRY_AFTER)
        self._take = redis.register_script(_TAKE)
        self._down_until: float | None = None  # while set, Redis is not asked before this time

    async def retry_after(self, key: str) -> float:
        if self._redis_down():
            return await self.fallback.retry_after(key)
        try:
            milliseconds = await self._retry_after(
                keys=[self.prefix + key], args=[self.window_ms, self.limit]
            )
        except (RedisError, OSError) as error:
            self._fell_back(error)
            return await self.fallback.retry_after(key)
        self._redis_up()
        return float(milliseconds) / 1000

    async def add(self, key: str) -> None:
        if self._redis_down():
            await self.fallback.add(key)
            return
        member = secrets.token_hex(6)  # two failures in the same millisecond are two failures
        try:
            await self._add(keys=[self.prefix + key], args=[self.window_ms, self.limit, member])
        except (RedisError, OSError) as error:
            self._fell_back(error)
            await self.fallback.add(key)
            return
        self._redis_up()

    async def take(self, key: str) -> float:
        if self._redis_down():
            return await self.fallback.take(key)
        member = secrets.token_hex(6)
        try:
            milliseconds = await self._take(
                keys=[self.prefix + key], args=[self.window_ms, self.limit, member]
            )
        except (RedisError, OSError) as error:
            self._fell_back(error)
            return await self.fallback.take(key)
        self._redis_up()
        return float(milliseconds) / 1000

    def _redis_down(self) -> bool:
        return self._down_until is not None and self.clock() < self._down_until

    def _fell_back(self, error: BaseException) -> None:
        if self._down_until is None:
            log.warning(
                "Redis is unavailable for the counters %s* (%s); counting in this process until it "
                "answers again",
                self.prefix,
                str(error) or type(error).__name__,
            )
        self._down_until = self.clock() + self.recheck_after

    def _redis_up(self) -> None:
        if self._down_until is not None:
            log.warning("Redis answers again: the counters %s* are kept there again", self.prefix)
            self._down_until = None


def redis_client(url: str, *, timeout: float = REDIS_TIMEOUT) -> Redis:
    """A Redis client for rate limiting: short timeouts and no retries, so that a resume never waits long."""
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    return Redis.from_url(url, **options)


@dataclass
class ResumeGuard:
    """Refuses resume attempts from an IP that failed too often lately, and failed ones for a bot under attack.

    :meth:`check` runs before the token is looked at and asks only the client's own count, so an IP guessing
    tokens is stopped whatever it sends; :meth:`failed` runs after a token was refused, counts the failure, and
    turns it into a 429 when the bot's count across all clients is over its limit.
    """

    per_ip: FailureWindow
    per_bot: FailureWindow
    redis: Redis | None = field(default=None, repr=False)  # the client to close, when the guard made one

    @classmethod
    def in_memory(cls, *, ip_limit: int = 10, bot_limit: int = 1000, window: float = 60.0) -> ResumeGuard:
        return cls(MemoryFailureWindow(ip_limit, window), MemoryFailureWindow(bot_limit, window))

    @classmethod
    def shared(
        cls,
        redis_url: str,
        *,
        ip_limit: int = 10,
        bot_limit: int = 1000,
        window: float = 60.0,
        prefix: str = DEFAULT_KEY_PREFIX,
    ) -> ResumeGuard:
        """Counters in Redis, shared by every worker on ``redis_url`` (nothing connects until first use)."""
        redis = redis_client(redis_url)
        return cls(
            RedisFailureWindow(redis, ip_limit, window, prefix=f"{prefix}ip:"),
            RedisFailureWindow(redis, bot_limit, window, prefix=f"{prefix}bot:"),
            redis,
        )

    @classmethod
    def for_redis(cls, redis_url: str | None) -> ResumeGuard:
        """Shared counters when a Redis URL is configured (several workers), else counters in this process."""
        return cls.shared(redis_url) if redis_url else cls.in_memory()

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    async def check(self, ip: str | None) -> None:
        """Raise a 429 problem when this client (its IP, or its IPv6 /64) failed too often lately."""
        refuse_if_waiting(await self.per_ip.retry_after(client_key(ip)), _RESUME_FAILURES)

    async def failed(self, ip: str | None, bot_id: str) -> None:
        """Count a refused token; raise a 429 problem instead of the refusal when the bot's count is over."""
        wait = await self.per_bot.retry_after(bot_id)
        await self.per_ip.add(client_key(ip))
        await self.per_bot.add(bot_id)
        refuse_if_waiting(wait, _RESUME_FAILURES)


def refuse_if_waiting(wait: float, what: str) -> None:
    """Raise ``429 rate_limited`` (``Too many {what}.``) with ``Retry-After`` while ``wait`` seconds remain."""
    if wait > 0:
        seconds = max(math.ceil(wait), 1)
        raise Problem(
            429,
            "rate_limited",
            f"Too many {what}. Try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )
