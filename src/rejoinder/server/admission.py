"""Admission control: past saturation, refuse work fast instead of queueing it without bound.

A worker runs at most ``limit`` API requests at once. A request that finds every slot taken waits for one at most
``max_wait`` seconds, and then gets a fast ``503 unavailable`` with ``Retry-After`` — before any work is done — so
that under twice the load a worker can carry, the requests it accepts are still answered in good time, the others
know when to come back, and nothing half-done is left behind. Requests arrive here with their body already read
(:class:`~rejoinder.server.body.BodyDeadline` sits outside), so a slot is held by work, never by a slow client.
Probes (/healthz, /readyz, /metrics), the SDK file and WebSockets are never held back.
"""

from __future__ import annotations

import asyncio
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from rejoinder.server.errors import Problem

DEFAULT_LIMIT = 256
DEFAULT_MAX_WAIT = 0.5
BUSY_RETRY_AFTER = 1  # seconds


class Admission:
    """ASGI middleware: at most ``limit`` requests under ``/v1/`` in flight; the rest wait ``max_wait`` at most."""

    def __init__(self, app: ASGIApp, limit: int = DEFAULT_LIMIT, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        if limit < 1 or max_wait < 0:
            raise ValueError("admission needs limit >= 1 and max_wait >= 0")
        self.app = app
        self.limit = limit
        self.max_wait = max_wait
        self._free = limit
        # Requests waiting for a slot, oldest first; a freed slot is handed straight to the first of them.
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def in_flight(self) -> int:
        return self.limit - self._free

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if not await self._enter():
            busy = Problem(
                503,
                "unavailable",
                "The server is busy right now. Try again in a second.",
                headers={"Retry-After": str(BUSY_RETRY_AFTER)},
            )
            await busy.to_response()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _enter(self) -> bool:
        """Take a slot, waiting ``max_wait`` at most; False when none came free in time."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return True
        handed = asyncio.get_running_loop().create_future()
        self._waiting.append(handed)
        try:
            await asyncio.wait([handed], timeout=self.max_wait)
        except asyncio.CancelledError:
            self._forget(handed)
            raise
        if handed.done():
            return True
        self._forget(handed)
        return False

    def _forget(self, handed: asyncio.Future[None]) -> None:
        """A waiter leaves: drop it from the queue, or pass on the slot it was handed meanwhile."""
        if handed.done():
            self._release()
        else:
            self._waiting.remove(handed)
            handed.cancel()

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on without ever being free
                return
        self._free += 1
