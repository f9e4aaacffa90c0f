"""The WebSocket stream of one conversation: ``/v1/conversations/{id}/stream``.

Protocol (JSON text frames):

* Authenticate with ``?session=ses_…`` or, within a few seconds of connecting, a first frame
  ``{"type": "auth", "session": "ses_…"}``. Refusals close the socket with code ``4000 + HTTP status``
  (4400 bad query, 4401 missing, unknown, expired or ended session, 4403 another conversation's session or a
  foreign origin, 4408 no authentication in time, 4429 too many streams open for this session or address) and
  a reason ``"<problem type>: <what to do>"``.
* The server first replays every stored message with ``seq > after`` (``?after=SEQ``, default 0) in order, then
  sends ``{"type": "status", "status", "pending", "last_seq"}``, then live events: ``{"type": "message",
  "message": {seq, sender, type, text, buttons?, created_at}}``, ``{"type": "typing"}`` while the bot works
  on a turn, ``{"type": "status", …}`` after one. Every message is sent once, in ``seq`` order, whatever the
  hub delivers: messages at or below the last one sent are skipped and gaps are filled from the database.
* The client sends ``{"type": "message", "text" | "choice", "client_message_id"}`` to run a turn; it is
  answered by the turn's messages, then ``{"type": "ack", "client_message_id", "seq"}``. A refused message is
  answered by ``{"type": "error", "code", "detail", "client_message_id"?}``; the socket stays open.
* Heartbeats: after ``heartbeat`` seconds without a frame from the client the server sends
  ``{"type": "ping"}``; the client answers ``{"type": "pong"}`` (any frame will do). A client silent for
  ``liveness`` seconds is taken for dead and its socket closed (4408).
* A session that ends while its socket is open closes it with 4401, and nothing is sent to it once it has ended:
  at its ``expires_at``, when its token is revoked, and when it is exchanged for a fresh one (``session/refresh``).
  Erasing the conversation closes its sockets with 4404.
* A message larger than the frame limit closes the socket with 1009, text that is not UTF-8 with 1007; other bad
  frames are answered by an error frame.
* A client too slow to take its events, or a realtime hub that lost its backend, gets close code 1013: reconnect
  with ``after=<last seq received>``. Server shutdown closes with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rejoinder.realtime import (
    Event,
    HubClosed,
    HubUnavailable,
    Subscription,
    SubscriptionLost,
    status_event,
)
from rejoinder.realtime.events import CLIENT_EVENT_TYPES, SESSIONS_ENDED
from rejoinder.server import state
from rejoinder.server.addresses import client_key
from rejoinder.server.auth import SessionCaller, authenticate_session, hash_secret
from rejoinder.server.errors import Problem, problem_for
from rejoinder.server.in_order import InOrder, parse_seq
from rejoinder.server.socket_quota import SocketQuota
from rejoinder.server.turn import SendRequest, take_turn
from rejoinder.service import SessionRefused
from rejoinder.store import MessageRecord, StoreUnavailable

log = logging.getLogger("rejoinder.stream")

router = APIRouter(tags=["client"])

_MAX_REASON_BYTES = 123  # what a close frame can carry
_CLOCK_SLACK = 0.05  # seconds: the loop's timer and the session clock are not the same clock
_EXPIRED = "this session has expired; refresh or resume, then reconnect"
_ENDED = "this session has ended; resume the conversation with its token"

# Close codes besides 4000 + an HTTP status.
CLOSE_TRY_AGAIN = 1013
CLOSE_SERVICE_RESTART = 1012
CLOSE_INTERNAL = 1011
CLOSE_TIMEOUT = 4408
CLOSE_TOO_MANY = 4429


@dataclass(frozen=True)
class StreamSettings:
    """Timings of the stream (override with ``app.state.stream_settings``)."""

    heartbeat: float = 20.0  # seconds of client silence before a ping
    liveness: float = 60.0  # seconds of client silence before the socket counts as dead
    auth_timeout: float = 5.0  # seconds to send the auth frame when no ?session= was given
    max_queued_turns: int = 8  # messages a client may have waiting for their turn


class _Close(Exception):
    """End the stream with a close frame."""

    def __init__(self, code: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.reason = _reason(f"{kind}: {detail}")


async def conversation_stream(websocket: WebSocket) -> None:
    """Push a conversation's messages live, after replaying those missed since ``after``."""
    conversation_id: str = websocket.path_params["conversation_id"]
    settings: StreamSettings = getattr(websocket.app.state, "stream_settings", StreamSettings())
    quota = state.socket_quota(websocket)
    address = client_key(websocket.client.host) if websocket.client else ""
    await websocket.accept()
    if not quota.take_ip(address):
        detail = f"this address has {quota.per_ip} streams open already; close one first"
        await _close(websocket, CLOSE_TOO_MANY, _reason(f"rate_limited: {detail}"))
        return
    stream: _Stream | None = None
    session_id: str | None = None
    try:
        after = _after(websocket.query_params.get("after"))
        caller, secret = await _authenticate(websocket, conversation_id, settings)
        session_id = _take_session(quota, caller)
        stream = _Stream(websocket, caller, secret, settings)
        await stream.run(after)
    except _Close as close:
        await _close(websocket, close.code, close.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if stream is not None:
            await stream.finish()
        if session_id is not None:
            quota.give_back_session(session_id)
        quota.give_back_ip(address)


# A plain Starlette route: FastAPI's per-request machinery would stay alive, and in memory, as long as the socket.
router.add_websocket_route(
    "/v1/conversations/{conversation_id}/stream", conversation_stream, name="conversation_stream"
)


# ---------------------------------------------------------------------------------------------- connecting


def _after(raw: str | None) -> int:
    if raw is None:
        return 0
    after = parse_seq(raw)
    if after is None:
        raise _Close(4400, "validation_error", "after must be a message seq (a whole number, 0 or more)")
    return after


async def _authenticate(
    websocket: WebSocket, conversation_id: str, settings: StreamSettings
) -> tuple[SessionCaller, str]:
    secret = websocket.query_params.get("session")
    if secret is None:
        secret = await _auth_frame(websocket, settings.auth_timeout)
    try:
        return await authenticate_session(websocket, secret, conversation_id), secret
    except Problem as problem:
        raise _Close(4000 + problem.status, problem.type, problem.detail) from None
    except StoreUnavailable:
        raise _Close(
            CLOSE_TRY_AGAIN, "unavailable", "the database is not reachable; reconnect shortly"
        ) from None


def _take_session(quota: SocketQuota, caller: SessionCaller) -> str:
    if not quota.take_session(caller.session.id):
        detail = f"this session has {quota.per_session} streams open already; close one first"
        raise _Close(CLOSE_TOO_MANY, "rate_limited", detail)
    return caller.session.id


async def _auth_frame(websocket: WebSocket, wait: float) -> str:
    expected = 'send ?session= or a first frame {"type": "auth", "session": "ses_…"}'
    try:
        async with asyncio.timeout(wait):
            message = await websocket.receive()
    except TimeoutError:
        raise _Close(
            CLOSE_TIMEOUT, "unauthorized", f"no authentication within {wait:g} s: {expected}"
        ) from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    frame = _json_object(message.get("text"))
    session = frame.get("session") if frame is not None and frame.get("type") == "auth" else None
    if not isinstance(session, str):
        raise _Close(4401, "unauthorized", expected)
    return session


# ---------------------------------------------------------------------------------------------- the stream


class _Stream:
    """One authenticated socket: replay, live events, client messages and heartbeats.

    While the conversation is quiet a socket holds no task of its own besides the one reading from it: the
    subscription's listener starts a short-lived task to send events when they come.
    """

    __slots__ = (
        "_closed",
        "_drainer",
        "_order",
        "_send_lock",
        "_subscription",
        "_turn_task",
        "_turns",
        "caller",
        "conversation_id",
        "hub",
        "service",
        "session_hash",
        "session_secret",
        "settings",
        "store",
        "websocket",
    )

    def __init__(
        self, websocket: WebSocket, caller: SessionCaller, secret: str, settings: StreamSettings
    ) -> None:
        self.websocket = websocket
        self.caller = caller
        self.conversation_id = caller.conversation_id
        self.session_secret = secret
        self.session_hash = hash_secret(secret)
        self.settings = settings
        self.service = state.service(websocket)
        self.store = state.store(websocket)
        self.hub = state.hub(websocket)
        self._order = InOrder(self.store.conversations, self.conversation_id)
        self._send_lock = asyncio.Lock()
        self._turns: list[SendRequest] = []
        self._turn_task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def last_seq(self) -> int:
        """The seq of the last message sent (what a refusal tells the client to reconnect with)."""
        return self._order.last_seq

    async def run(self, after: int) -> None:
        self._order.last_seq = (
            after  # what a refusal tells the client to reconnect with, if subscribing fails
        )
        try:
            async with self.hub.subscribe(self.conversation_id) as subscription:
                # Subscribed before reading the store: whatever is committed from now on is either in the replay
                # or among the live events, and the live ones already sent are skipped by seq.
                await self._replay()
                await self._send(await self._status())
                self._subscription = subscription
                subscription.listen(self._on_events)
                self._on_events()  # those that came during the replay
                try:
                    await self._receive()
                finally:
                    subscription.listen(None)
                    await self._stop_draining()
        except HubUnavailable as error:
            raise _Close(
                CLOSE_TRY_AGAIN, "unavailable", f"{error}; reconnect with after={self.last_seq}"
            ) from None
        except HubClosed:
            raise _Close(
                CLOSE_SERVICE_RESTART, "unavailable", "the server is restarting; reconnect"
            ) from None
        except StoreUnavailable:
            raise _Close(
                CLOSE_TRY_AGAIN,
                "unavailable",
                f"the database is not reachable; reconnect with after={self.last_seq}",
            ) from None

    async def finish(self) -> None:
        """Stop; let a turn already running finish (it is saved either way) but start no more."""
        self._turns.clear()
        await self._stop_draining()
        if self._turn_task is not None:
            await self._turn_task

    async def _stop_draining(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer

    # ------------------------------------------------------------------------------------------ out

    async def _replay(self) -> None:
        async with self._send_lock:
            await self._order.replay(self._write_message)

    async def _status(self) -> Event:
        conversation = await self.store.conversations.get(self.conversation_id)
        if conversation is None:
            raise _Close(4404, "conversation_not_found", "the conversation was erased")
        pending = await self.service.pending(conversation)
        return status_event(conversation.status, pending, conversation.last_seq)

    def _on_events(self) -> None:
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send the queued events, then end (the next event starts another); close the socket when it must go."""
        assert self._subscription is not None
        verified = False
        try:
            while (event := self._subscription.get_nowait()) is not None:
                kind = event.get("type")
                if kind in CLIENT_EVENT_TYPES and not verified:
                    # Once a burst: the news of a session's end may have been lost on the way (the hub is best
                    # effort), the database says it for sure.
                    await self._check_session_alive()
                    verified = True
                if kind == "message":
                    await self._send_items([event["message"]])
                elif kind == SESSIONS_ENDED:
                    self._check_session_ended(event)
                elif kind in CLIENT_EVENT_TYPES:
                    await self._send(event)
            if not self._subscription.ended:
                self._drainer = None  # no await since the queue was found empty: no event can be missed
                return
            close = _Close(CLOSE_SERVICE_RESTART, "unavailable", "the server is restarting; reconnect")
        except _Close as closing:
            close = closing
        except SubscriptionLost as lost:
            close = _Close(CLOSE_TRY_AGAIN, "lagging", f"{lost}; reconnect with after={self.last_seq}")
        except StoreUnavailable:
            close = _Close(
                CLOSE_TRY_AGAIN, "unavailable", f"database unreachable; reconnect with after={self.last_seq}"
            )
        except WebSocketDisconnect:
            self._closed = True
            return
        except Exception:
            log.exception("stream of conversation %s failed", self.conversation_id)
            close = _Close(CLOSE_INTERNAL, "internal", f"server error; reconnect with after={self.last_seq}")
        self._closed = True
        await _close(self.websocket, close.code, close.reason)

    def _check_session_ended(self, event: Event) -> None:
        token_id, session_id = event.get("token_id"), event.get("session_id")
        if token_id is not None and token_id != self.caller.session.token_id:
            return
        if session_id is not None and session_id != self.caller.session.id:
            return
        if event.get("reason") == "conversation_erased":
            raise _Close(4404, "conversation_not_found", "the conversation was erased")
        raise _Close(4401, "unauthorized", _ENDED)

    async def _send_messages(self, records: list[MessageRecord]) -> None:
        await self._send_items([record.to_api() for record in records])

    async def _send_items(self, items: list[dict[str, Any]]) -> None:
        """Send message items in seq order, each once: skip what was sent, fill gaps from the database."""
        async with self._send_lock:
            await self._order.send(items, self._write_message)

    async def _write_message(self, item: dict[str, Any]) -> None:
        await self._write({"type": "message", "message": item})

    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._write(frame)

    async def _write(self, frame: dict[str, Any]) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            raise WebSocketDisconnect(1006)
        await self.websocket.send_text(json.dumps(frame, separators=(",", ":"), ensure_ascii=False))

    # ------------------------------------------------------------------------------------------ in

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while True:
            if self._closed:
                return  # the socket was closed from the sending side (too slow, hub lost, session ended)
            left = self._session_seconds_left()
            if left <= 0:
                raise _Close(4401, "unauthorized", _EXPIRED)
            try:
                # Woken at the session's expiry too, however busy the client keeps the socket.
                async with asyncio.timeout(min(self.settings.heartbeat, left + _CLOCK_SLACK)):
                    message = await self.websocket.receive()
            except TimeoutError:
                silent = loop.time() - heard
                if silent >= self.settings.liveness:
                    raise _Close(
                        CLOSE_TIMEOUT, "timeout", f"no frame for {silent:.0f} s; answer pings with pong"
                    ) from None
                if self._session_seconds_left() > 0:
                    await self._send({"type": "ping"})
                continue
            if message["type"] == "websocket.disconnect":
                return
            heard = loop.time()
            await self._on_frame(message)

    async def _on_frame(self, message: Message) -> None:
        text = message.get("text")
        if text is None:
            await self._error("unsupported_frame", "send JSON as text frames, not binary")
            return
        frame = _json_object(text)
        if frame is None:
            await self._error("malformed_body", "a frame must be a JSON object (and not nested too deeply)")
            return
        kind = frame.get("type")
        if kind in ("pong", "ping", "auth"):
            return
        if kind != "message":
            await self._error(
                "invalid_request", f"unknown frame type {str(kind)[:40]!r}; send a message or pong"
            )
            return
        client_message_id = (
            frame.get("client_message_id") if isinstance(frame.get("client_message_id"), str) else None
        )
        try:
            request = SendRequest.model_validate({k: v for k, v in frame.items() if k != "type"})
        except ValidationError as invalid:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}" for e in invalid.errors()
            )
            await self._error("validation_error", problems, client_message_id)
            return
        if len(self._turns) >= self.settings.max_queued_turns:
            detail = "too many messages waiting for the bot; wait for the answers"
            await self._error("rate_limited", detail, client_message_id)
            return
        self._turns.append(request)
        if self._turn_task is None or self._turn_task.done():
            self._turn_task = asyncio.get_running_loop().create_task(self._run_turns())

    async def _run_turns(self) -> None:
        # One at a time and in arrival order: a client's messages are answered in the order it sent them.
        while self._turns:
            request = self._turns.pop(0)
            try:
                await self._turn(request)
            except WebSocketDisconnect:
                self._turns.clear()
            except Exception:
                log.exception("turn from the stream of %s failed", self.conversation_id)
                with contextlib.suppress(WebSocketDisconnect):
                    detail = "the message could not be handled; send it again"
                    await self._error("internal", detail, request.client_message_id)

    async def _turn(self, request: SendRequest) -> None:
        try:
            outcome = await take_turn(self.websocket, self.session_secret, self.conversation_id, request)
        except SessionRefused as refused:
            # The session ended or expired since the socket opened: nothing more for it.
            self._turns.clear()
            self._closed = True
            problem = problem_for(refused)
            assert problem is not None
            await _close(self.websocket, 4000 + problem.status, _reason(f"{problem.type}: {problem.detail}"))
            return
        except Exception as error:
            problem = error if isinstance(error, Problem) else problem_for(error)
            if problem is None:
                raise
            await self._error(problem.type, problem.detail, request.client_message_id)
            return
        await self._send_messages(outcome.messages)
        own = next(
            (m.seq for m in outcome.messages if m.client_message_id == request.client_message_id), None
        )
        await self._send({"type": "ack", "client_message_id": request.client_message_id, "seq": own})

    async def _session_alive(self) -> bool:
        session = await self.store.credentials.find_session(self.session_hash)
        return (
            session is not None
            and session.revoked_at is None
            and session.expires_at > self.service.clock()
            and session.conversation_id == self.conversation_id
        )

    async def _check_session_alive(self) -> None:
        """Close with 4401 unless the session is still valid: not expired, not revoked (read from the store)."""
        if self._session_seconds_left() <= 0:
            raise _Close(4401, "unauthorized", _EXPIRED)
        if not await self._session_alive():
            raise _Close(4401, "unauthorized", _ENDED)

    def _session_seconds_left(self) -> float:
        return (self.caller.session.expires_at - self.service.clock()).total_seconds()

    async def _error(self, code: str, detail: str, client_message_id: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
        if client_message_id is not None:
            frame["client_message_id"] = client_message_id
        await self._send(frame)


# ---------------------------------------------------------------------------------------------- helpers


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        # The parser recurses once per level of nesting: a deep enough frame reaches the recursion limit.
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _reason(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= _MAX_REASON_BYTES:
        return text
    return encoded[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code, reason)
