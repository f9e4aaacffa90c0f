"""A TCP proxy in front of PostgreSQL that reads the frontend protocol and counts round trips.

A client waits for the server once per Sync (the end of an extended-protocol exchange: Parse, Bind, Execute…) and
once per simple Query; nothing else makes it wait. The proxy parses every message the client sends (it asks
for no TLS, so the stream is plain: see :data:`PLAIN`) and keeps, per connection, each round trip with the SQL it
carried, so a test can say which statements a call made as well as how many exchanges.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from tests.helpers.proxy import TcpProxy

# Add to a connection URL so that the client never starts TLS, which the proxy could not read.
PLAIN = "ssl=disable"

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


@dataclass
class RoundTrip:
    """One exchange the client waited for: ``kind`` is ``sync`` or ``query``; ``sql`` the statements it carried
    (parsed, or the simple query's text)."""

    kind: str
    sql: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.kind}: {' | '.join(' '.join(s.split())[:120] for s in self.sql) or '(bound only)'}"


class _FrontendParser:
    """The messages of one client connection, from its startup on; each complete exchange is appended to
    ``trips``."""

    def __init__(self, record: Callable[[RoundTrip], None]) -> None:
        self._buffer = bytearray()
        self._started = False
        self._pending: list[str] = []
        self._record = record

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return
                (length,) = struct.unpack("!I", self._buffer[:4])
                if len(self._buffer) < length:
                    return
                (code,) = struct.unpack("!I", self._buffer[4:8])
                del self._buffer[:length]
                # An SSL or GSS request is answered with one byte and followed by the real startup message.
                self._started = code not in (_SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST)
                continue
            if len(self._buffer) < 5:
                return
            kind = chr(self._buffer[0])
            (length,) = struct.unpack("!I", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return
            body = bytes(self._buffer[5 : 1 + length])
            del self._buffer[: 1 + length]
            self._message(kind, body)

    def _message(self, kind: str, body: bytes) -> None:
        if kind == "P":  # Parse: statement name, then the query text
            name_end = body.index(b"\0")
            self._pending.append(body[name_end + 1 : body.index(b"\0", name_end + 1)].decode())
        elif kind == "S":
            self._record(RoundTrip("sync", self._pending))
            self._pending = []
        elif kind == "Q":
            self._record(RoundTrip("query", [body.rstrip(b"\0").decode()]))


class CountingProxy:
    """A :class:`~tests.helpers.proxy.TcpProxy` to PostgreSQL that counts the round trips of every connection made
    through it.

    Use as a context manager; :meth:`trips` (all connections) since the last :meth:`reset`.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._trips: list[RoundTrip] = []
        self._lock = threading.Lock()
        self._proxy = TcpProxy(target_port, target_host, watch=lambda: _FrontendParser(self._record).feed)
        self.port = self._proxy.port

    def __enter__(self) -> Self:
        self._proxy.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._proxy.__exit__(*exc)

    def trips(self) -> list[RoundTrip]:
        """The round trips made since the last :meth:`reset`, in the order the proxy saw them."""
        with self._lock:
            return list(self._trips)

    def reset(self) -> None:
        with self._lock:
            self._trips.clear()

    def _record(self, trip: RoundTrip) -> None:
        with self._lock:
            self._trips.append(trip)
