"""A conversation page's live transcript: server-sent events at ``/dashboard/conversations/{id}/live``.

The answer (``text/event-stream``) says first how soon to reconnect (``retry:``), then sends the stored messages
after ``?after=SEQ`` (or after the browser's ``Last-Event-ID`` when it reconnects), then the conversation's status,
then each message and status change the hub publishes, as they come. Messages are sent each once and in ``seq``
order (:class:`~rejoinder.server.in_order.InOrder`, as the customer's WebSocket stream does):

* a message: ``id: SEQ`` and ``data: {seq, sender, text, choices, at}``, as the page draws it;
* ``event: status``, ``data: {"status": "active" | "closed"}``;
* ``event: end``, ``data: {"reason": "erased" | "signed_out"}``: nothing more will come; do not reconnect;
* a comment (``: keep-alive``) after ``heartbeat`` seconds of silence, so that proxies keep the connection.

Bounds, for a page reachable from the internet: a stream lasts ``lifetime`` seconds at most and then ends (the
browser reconnects by itself, with ``Last-Event-ID``); the console session is read again every ``recheck``
seconds, so a signed-out or disabled user's stream ends within seconds; a console session holds ``per_session``
streams per worker at most (the next is answered ``429``) and a worker ``per_worker`` in all (``503``). When the
hub drops the stream (too slow, Redis lost) it catches up from the store and ends, and the browser reconnects; so
it does when the worker begins to stop (``rejoinder serve`` tells it: ``server/connections.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rejoinder.realtime import HubClosed, HubUnavailable, Subscription, SubscriptionLost
from rejoinder.realtime.events import SESSIONS_ENDED
from rejoinder.server import state
from rejoinder.server.connections import SHUTDOWN_EXTENSION
from rejoinder.server.console.reading import shown_iso
from rejoinder.server.console.session import SESSION_COOKIE, ConsoleRefused, accounts, signed_in
from rejoinder.server.in_order import InOrder
from rejoinder.store import StoreUnavailable

log = logging.getLogger("rejoinder.console.live")

ERASED = "erased"
SIGNED_OUT = "signed_out"
_RETRY_AFTER = "10"  # seconds, on a refusal for too many streams


@dataclass(frozen=True)
class LiveSettings:
    """The bounds of live transcripts (a test may give others to :class:`LiveStreams`)."""

    lifetime: float = 300.0  # seconds a stream lasts at most before the browser reconnects
    recheck: float = 5.0  # seconds between readings of the console session
    heartbeat: float = 15.0  # seconds of silence before a keep-alive comment
    retry_ms: int = 3000  # how long the browser waits before reconnecting
    per_session: int = 4  # streams one console session may hold open per worker
    per_worker: int = 200  # streams a worker holds open in all


class LiveStreams:
    """The live streams open in this worker, by console session and in all; kept on ``app.state.console_live``."""

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self._by_session: Counter[str] = Counter()
        self._total = 0

    def take(self, session_id: str) -> None:
        """Count a stream of ``session_id``; refused (nothing counted) past either bound."""
        if self._by_session[session_id] >= self.settings.per_session:
            raise ConsoleRefused(
                429,
                "Too many live pages",
                f"This session has {self.settings.per_session} live transcripts open already: close a tab.",
                headers={"Retry-After": _RETRY_AFTER},
            )
        if self._total >= self.settings.per_worker:
            raise ConsoleRefused(
                503,
                "Server busy",
                "The server has as many live transcripts open as it takes; this one is not live.",
                headers={"Retry-After": _RETRY_AFTER},
            )
        self._by_session[session_id] += 1
        self._total += 1

    def give_back(self, session_id: str) -> None:
        self._total -= 1
        self._by_session[session_id] -= 1
        if self._by_session[session_id] <= 0:
            del self._by_session[session_id]

    def held(self, session_id: str | None = None) -> int:
        return self._total if session_id is None else self._by_session[session_id]


def live_streams(conn: HTTPConnection) -> LiveStreams:
    return cast("LiveStreams", conn.app.state.console_live)


def drawn_message(item: dict[str, Any]) -> dict[str, Any]:
    """A message item of the API (``{seq, sender, type, text, buttons?, created_at}``) as the page draws it: who,
    what, the choices it offered, when."""
    buttons = item.get("buttons") or item.get("choices") or []
    return {
        "seq": int(item["seq"]),
        "sender": item["sender"],
        "text": str(item.get("text") or ""),
        "choices": [choice_text(b) for b in buttons] if isinstance(buttons, list) else [],
        "at": shown_iso(str(item["created_at"])),
    }


def choice_text(choice: Any) -> str:
    if isinstance(choice, dict):
        return str(
            choice.get("title") or choice.get("text") or choice.get("label") or choice.get("value") or ""
        )
    return str(choice)


def open_stream(request: Request, conversation_id: str, after: int) -> Response:
    """The live transcript of ``conversation_id`` after ``after`` for the signed-in console session (counted
    against its bounds until the stream ends)."""
    signed = signed_in(request)
    if signed is None:
        raise RuntimeError("open_stream() needs the viewer dependency on the route")
    streams = live_streams(request)
    session_id = signed.found.session.id
    transcript = _Transcript(request, conversation_id, after, streams.settings)
    streams.take(session_id)
    return _EventStream(transcript.run, lambda: streams.give_back(session_id))


# ------------------------------------------------------------------------------------------------ the stream

Write = Callable[[str], Awaitable[None]]


class _Ended(Exception):
    """The stream ends with an ``end`` event: the browser must not reconnect."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transcript:
    """One live transcript: the replay, then the hub's events, under the stream's bounds."""

    def __init__(self, request: Request, conversation_id: str, after: int, settings: LiveSettings) -> None:
        self.conversation_id = conversation_id
        self.settings = settings
        self.secret = request.cookies.get(SESSION_COOKIE, "")
        self.accounts = accounts(request)
        self.hub = state.hub(request)
        self.store = state.store(request)
        self.order = InOrder(self.store.conversations, conversation_id, after)
        self._write: Write | None = None
        self._written_at = 0.0

    async def run(self, write: Write) -> None:
        """Send the stream through ``write``; return when it ends (the response ends then)."""
        self._write = write
        try:
            await self._send(f"retry: {self.settings.retry_ms}\n\n")
            try:
                async with self.hub.subscribe(self.conversation_id) as subscription:
                    # Subscribed before reading the store: a message committed from now on is in the replay or
                    # among the events, and those already sent are skipped by seq.
                    await self.order.replay(self._message)
                    await self._send_status()
                    await self._follow(subscription)
            except (SubscriptionLost, HubUnavailable, HubClosed):
                # The hub lost track: what was missed is in the store, and the browser reconnects for the rest.
                await self.order.replay(self._message)
        except _Ended as ended:
            await self._event("end", {"reason": ended.reason})
        except StoreUnavailable:
            pass  # the browser reconnects, and catches up by Last-Event-ID
        except OSError:
            pass  # the browser left
        except Exception:
            log.exception("live transcript of conversation %s failed", self.conversation_id)

    async def _follow(self, subscription: Subscription) -> None:
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self.settings.lifetime
        check_at = loop.time() + self.settings.recheck
        while True:
            now = loop.time()
            if now >= ends_at:
                return
            if now >= check_at:
                if await self.accounts.session(self.secret) is None:
                    raise _Ended(SIGNED_OUT)
                check_at = now + self.settings.recheck
            if now >= self._written_at + self.settings.heartbeat:
                await self._send(": keep-alive\n\n")
            wake_at = min(ends_at, check_at, self._written_at + self.settings.heartbeat)
            try:
                async with asyncio.timeout(max(wake_at - loop.time(), 0)):
                    first = await anext(subscription)
            except TimeoutError:
                continue
            except StopAsyncIteration:
                return  # the hub closed: the server is stopping
            event: dict[str, Any] | None = first
            while event is not None:
                await self._on_event(event)
                event = subscription.get_nowait()

    async def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message":
            await self.order.send([event["message"]], self._message)
        elif kind == "status":
            await self._event("status", {"status": event.get("status")})
        elif kind == SESSIONS_ENDED and event.get("reason") == "conversation_erased":
            raise _Ended(ERASED)

    async def _send_status(self) -> None:
        conversation = await self.store.conversations.get(self.conversation_id)
        if conversation is None:
            raise _Ended(ERASED)
        await self._event("status", {"status": conversation.status})

    async def _message(self, item: dict[str, Any]) -> None:
        drawn = drawn_message(item)
        drawn["at"] = asdict(drawn["at"])
        await self._send(f"id: {drawn['seq']}\ndata: {_json(drawn)}\n\n")

    async def _event(self, name: str, data: dict[str, Any]) -> None:
        await self._send(f"event: {name}\ndata: {_json(data)}\n\n")

    async def _send(self, text: str) -> None:
        assert self._write is not None
        await self._write(text)
        self._written_at = asyncio.get_running_loop().time()


def _json(data: dict[str, Any]) -> str:
    # One line: JSON escapes the line breaks inside strings, and a data line must have none.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


class _EventStream(Response):
    """A ``text/event-stream`` answer written by ``run``. It ends when ``run`` returns, the client leaves or the
    worker begins to stop (the browser reconnects, to a worker still running); ``release`` is called then,
    whatever happened."""

    media_type = "text/event-stream"

    def __init__(self, run: Callable[[Write], Awaitable[None]], release: Callable[[], None]) -> None:
        super().__init__(headers={"X-Accel-Buffering": "no"})  # no buffering by a proxy (nginx) either
        del self.headers["content-length"]
        self._run = run
        self._release = release
        self._open = False  # the answer has begun and not ended

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            streaming = asyncio.ensure_future(self._stream(send))
            waits: set[asyncio.Future[Any]] = {streaming, asyncio.ensure_future(_client_gone(receive))}
            stopping = scope.get("extensions", {}).get(SHUTDOWN_EXTENSION, {}).get("event")
            if isinstance(stopping, asyncio.Event):
                waits.add(asyncio.ensure_future(stopping.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
                await asyncio.wait(waits)
            if self._open and stopping is not None and stopping.is_set():
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            if not streaming.cancelled() and streaming.exception() is not None:
                error = streaming.exception()
                if not isinstance(error, OSError):
                    raise cast("BaseException", error)
        finally:
            self._release()

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        self._open = True

        async def write(text: str) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

        await self._run(write)
        self._open = False
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
