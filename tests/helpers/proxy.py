"""A TCP proxy from a free port of 127.0.0.1 to a server, on a thread of its own: cut, frozen or watched by a test."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

from tests.helpers.processes import free_port

T = TypeVar("T")


class TcpProxy:
    """A TCP proxy from a free port of 127.0.0.1 to a target, on a thread (and event loop) of its own.

    :meth:`cut` makes the target unreachable the way a crashed server is: new connections are refused and every
    open one is reset; :meth:`restore` listens again on the same port. :meth:`freeze` makes it unreachable the
    way a hung server or a network that drops packets is: connections are accepted and stay open, and nothing
    gets through until :meth:`thaw`. Running on its own thread, it keeps forwarding whatever the test's own loop
    is doing (blocking included). ``watch``, when given, is asked for an observer at each new connection, and that
    observer is given every chunk the client sends, in order, before it is forwarded.
    """

    def __init__(
        self,
        target_port: int,
        target_host: str = "127.0.0.1",
        *,
        watch: Callable[[], Callable[[bytes], None]] | None = None,
    ) -> None:
        self.target = (target_host, target_port)
        self._watch = watch
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._resumed: asyncio.Event | None = None  # made on the proxy's loop
        self._trigger: tuple[bytes, float] | None = None  # see cut_after

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *_exc: object) -> None:
        self._call(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._call(self._stop_listening())

    def restore(self) -> None:
        """Accept connections again, on the same port."""
        self._call(self._listen())

    def freeze(self) -> None:
        """Keep accepting and keep every connection open, but let no byte through."""
        self._call(self._set_flowing(False))

    def thaw(self) -> None:
        """Let bytes through again, those held back included."""
        self._call(self._set_flowing(True))

    def cut_after(self, marker: bytes, hold: float = 0.3) -> None:
        """Let the next client message that holds ``marker`` reach the target, keep its answer back, and cut
        ``hold`` seconds later: a crash after the server did the work but before the client heard of it."""
        self._call(self._arm(marker, hold))

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _arm(self, marker: bytes, hold: float) -> None:
        self._trigger = (marker, hold)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._resumed is not None
        if flowing:
            self._resumed.set()
        else:
            self._resumed.clear()

    async def _listen(self) -> None:
        if self._resumed is None:
            self._resumed = asyncio.Event()
            self._resumed.set()
        if self._server is None:
            self._server = await asyncio.start_server(
                self._forward, "127.0.0.1", self.port, reuse_address=True
            )

    async def _stop_listening(self) -> None:
        self._reset_all()

    def _reset_all(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()  # an RST, as from a server that went away
        self._transports.clear()

    def _cut_and_resume(self) -> None:
        self._reset_all()
        assert self._resumed is not None
        self._resumed.set()  # for the connections made after restore()

    async def _shut_down(self) -> None:
        await self._stop_listening()
        forwarding = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in forwarding:
            task.cancel()
        await asyncio.gather(*forwarding, return_exceptions=True)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        assert self._resumed is not None
        ends = [client_writer.transport]
        self._transports.add(client_writer.transport)
        try:
            await self._resumed.wait()
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            ends.append(upstream_writer.transport)
            self._transports.add(upstream_writer.transport)
            observe = self._watch() if self._watch is not None else None
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, to_target=True, observe=observe),
                self._pipe(upstream_reader, client_writer, to_target=False),
            )
        finally:
            for transport in ends:
                self._transports.discard(transport)
                transport.abort()

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        to_target: bool,
        observe: Callable[[bytes], None] | None = None,
    ) -> None:
        assert self._resumed is not None
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await source.read(65536):
                await self._resumed.wait()
                if to_target and self._trigger is not None and self._trigger[0] in data:
                    hold = self._trigger[1]
                    self._trigger = None
                    self._resumed.clear()  # from now on nothing gets through, the answer included
                    asyncio.get_running_loop().call_later(hold, self._cut_and_resume)
                if observe is not None:
                    observe(data)
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()
