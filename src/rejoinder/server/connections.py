"""Connection limits below the application: a deadline for request headers, and a cap on connections per peer.

uvicorn reads a request's headers for as long as the client takes, and keeps any number of connections from one
address open. The protocol classes here, which ``rejoinder serve`` gives uvicorn as its HTTP and WebSocket
implementations, add two limits:

* a request's headers must all be in within ``request_header_timeout`` seconds, counted from the connection's
  opening or from the first byte of a following request; past that the client gets a ``408`` and the connection
  is closed (idle keep-alive connections are closed by uvicorn's own ``timeout_keep_alive``);
* a request line and headers take at most ``max_request_header_bytes``, give or take one read (httptools itself
  sets no bound); past that the client gets a ``431`` and the connection is closed;
* a request's scope carries an :class:`asyncio.Event` at ``extensions[SHUTDOWN_EXTENSION]["event"]``, set when
  the worker begins a graceful shutdown, so that an answer that would go on for minutes (the console's live
  transcript) can end at once instead of holding the shutdown up;
* one peer address holds at most ``max_connections_per_ip`` open connections, WebSockets included, per worker;
  the next one gets a ``429`` and is closed at once. An IPv6 client is counted by its /64, which one subscriber
  usually holds whole. Peers that uvicorn trusts to forward client addresses
  (``FORWARDED_ALLOW_IPS``: a reverse proxy) carry many clients each, and are not capped.

The body of a request is bounded in time by :class:`~rejoinder.server.body.BodyDeadline`, in the app.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from rejoinder.config import Settings, get_settings
from rejoinder.server.addresses import client_key

TOO_MANY_RETRY_AFTER = 10  # seconds
SHUTDOWN_EXTENSION = "rejoinder.shutdown"
# After a refusal, what the client still sends is read and dropped this long before the connection is closed:
# closing with unread data would reset the connection, and the client might never see why.
LINGER_SECONDS = 1.0


class PeerConnections:
    """The open connections of one worker, by peer address, each counted once from opening to loss."""

    def __init__(self, limit: int, trusted: list[str] | str) -> None:
        self.limit = limit
        # uvicorn's own reading of FORWARDED_ALLOW_IPS (networks, "*"), so that both agree on who is a proxy.
        self._trusted = _TrustedHosts(trusted)
        self._by_peer: dict[str, int] = {}
        self._peer_of: dict[asyncio.BaseTransport, str] = {}

    def open(self, transport: asyncio.BaseTransport, peer: str | None) -> bool:
        """Count a new connection; False (and nothing counted) when its peer already holds ``limit`` of them."""
        if peer is None or peer in self._trusted:
            return True
        peer = client_key(peer)
        held = self._by_peer.get(peer, 0)
        if held >= self.limit:
            return False
        self._by_peer[peer] = held + 1
        self._peer_of[transport] = peer
        return True

    def close(self, transport: asyncio.BaseTransport) -> None:
        """Forget a connection; a connection never counted, or already forgotten, is ignored."""
        peer = self._peer_of.pop(transport, None)
        if peer is None:
            return
        held = self._by_peer[peer] - 1
        if held:
            self._by_peer[peer] = held
        else:
            del self._by_peer[peer]

    def held(self, peer: str) -> int:
        return self._by_peer.get(peer, 0)


_worker_limits: tuple[Settings, PeerConnections] | None = None


def _limits(config: Config) -> tuple[Settings, PeerConnections]:
    """This worker's limits, made on its first connection: a worker builds its protocols from uvicorn's config."""
    global _worker_limits
    if _worker_limits is None:
        settings = get_settings()
        _worker_limits = (
            settings,
            PeerConnections(settings.max_connections_per_ip, config.forwarded_allow_ips),
        )
    return _worker_limits


def _shutdown_event(server_state: object) -> asyncio.Event:
    """The event set when this server (one uvicorn ``Server``, whose connections share ``server_state``) stops."""
    event = getattr(server_state, "rejoinder_shutdown", None)
    if not isinstance(event, asyncio.Event):
        event = asyncio.Event()
        setattr(server_state, "rejoinder_shutdown", event)  # noqa: B010  (uvicorn's object has no such field)
    return event


def _problem(status: int, reason: str, kind: str, detail: str, extra: str = "") -> bytes:
    """A whole HTTP response carrying a problem document, for the protocol to write before it closes."""
    body = json.dumps({"type": kind, "title": reason, "status": status, "detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the header deadline and the per-peer connection cap."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes: int | None = None  # bytes read of the request head being read, None between heads
        self._head_began = False  # a request head began in the data being parsed
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        settings, peers = _limits(self.config)
        if not peers.open(transport, self.client[0] if self.client else None):
            detail = f"This address has {peers.limit} connections open already; close one or retry later."
            retry = f"retry-after: {TOO_MANY_RETRY_AFTER}\r\n"
            self._answer_and_close(_problem(429, "Too Many Requests", "rate_limited", detail, retry))
            return
        self._arm_header_timer(settings.request_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._head_began = False
        super().data_received(data)
        if self._header_bytes is None or self._refused:
            return
        # Data that began the head may also hold the end of a request before it: only data read wholly within a
        # head is counted, so a head may exceed the limit by one read at most (httptools itself sets no bound).
        if not self._head_began:
            self._header_bytes += len(data)
        limit = _limits(self.config)[0].max_request_header_bytes
        if self._header_bytes > limit:
            self._disarm_header_timer()
            detail = f"The request line and headers are larger than the limit of {limit // 1024} KB."
            self._answer_and_close(_problem(431, "Request Header Fields Too Large", "too_large", detail))

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        _limits(self.config)[1].close(self.transport)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {SHUTDOWN_EXTENSION: {"event": _shutdown_event(self.server_state)}}
        self._header_bytes = 0
        self._head_began = True
        if self._header_timer is None:  # the first request's deadline runs from the connection's opening
            self._arm_header_timer(_limits(self.config)[0].request_header_timeout)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        self._header_bytes = None
        super().on_headers_complete()

    def shutdown(self) -> None:
        _shutdown_event(self.server_state).set()
        super().shutdown()

    def _arm_header_timer(self, seconds: float) -> None:
        self._header_timer = self.loop.call_later(seconds, self._headers_too_slow, seconds)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self, seconds: float) -> None:
        self._header_timer = None
        detail = f"The request headers did not arrive within {seconds:g} s."
        self._answer_and_close(_problem(408, "Request Timeout", "request_timeout", detail))

    def _answer_and_close(self, response: bytes) -> None:
        if self.transport.is_closing() or self._refused:
            return
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:  # never in the middle of a response
            self.transport.close()
            return
        self.transport.write(response)
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol; it takes over a counted connection and uncounts it when it is lost."""

    def connection_lost(self, exc: Exception | None) -> None:
        _limits(self.config)[1].close(self.transport)
        super().connection_lost(exc)
