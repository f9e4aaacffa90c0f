"""Limits on failed resume attempts, per client IP and per bot, so tokens cannot be guessed at speed.

Only failures count: a client that resumes its own conversations is never slowed. Once a key has had
``limit`` failures within ``window`` seconds, further attempts are answered 429 with ``Retry-After`` until the
oldest of those failures leaves the window. The counters sit behind :class:`FailureWindow` so that a shared
implementation (Redis) can replace the in-process one when several workers serve one bot.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rejoinder.server.errors import Problem


class FailureWindow(Protocol):
    """Failures per key in a sliding time window."""

    async def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        ...

    async def add(self, key: str) -> None:
        """Count one failure for ``key``."""
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
        if limit < 1 or window <= 0:
            raise ValueError("a failure window needs limit >= 1 and window > 0")
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


@dataclass
class ResumeGuard:
    """Refuses resume attempts from an IP, or for a bot, that failed too often lately."""

    per_ip: FailureWindow
    per_bot: FailureWindow

    @classmethod
    def in_memory(cls, *, ip_limit: int = 10, bot_limit: int = 1000, window: float = 60.0) -> ResumeGuard:
        return cls(MemoryFailureWindow(ip_limit, window), MemoryFailureWindow(bot_limit, window))

    async def check(self, ip: str | None, bot_id: str) -> None:
        """Raise a 429 problem when either counter is over its limit."""
        wait = max(await self.per_ip.retry_after(ip or "-"), await self.per_bot.retry_after(bot_id))
        if wait > 0:
            seconds = max(math.ceil(wait), 1)
            raise Problem(
                429,
                "rate_limited",
                f"Too many failed attempts to resume a conversation. Try again in {seconds} s.",
                headers={"Retry-After": str(seconds)},
            )

    async def failed(self, ip: str | None, bot_id: str) -> None:
        await self.per_ip.add(ip or "-")
        await self.per_bot.add(bot_id)
