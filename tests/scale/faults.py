"""Servers a test breaks on purpose: a TCP proxy it can cut, its own Redis, its own PostgreSQL cluster.

The machine's shared PostgreSQL (5432) and Redis (6379) are never stopped or reconfigured: a fault is made on a
proxy in front of them, or on a server the test started itself on a free port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from tests.helpers.processes import free_port
from tests.helpers.services import unavailable

T = TypeVar("T")

_START_TIMEOUT = 30.0  # seconds for redis-server to answer PING (well under 1 s on an idle machine)
_PG_CTL_TIMEOUT = 60  # seconds pg_ctl waits for a start or stop (a few on an idle machine, with recovery)


# ------------------------------------------------------------------------------------------------ TCP proxy


class TcpProxy:
    """A TCP proxy from a free port of 127.0.0.1 to a target, on a thread (and event loop) of its own.

    :meth:`cut` makes the target unreachable the way a crashed server is: new connections are refused and every
    open one is reset; :meth:`restore` listens again on the same port. :meth:`freeze` makes it unreachable the
    way a hung server or a network that drops packets is: connections are accepted and stay open, and nothing
    gets through until :meth:`thaw`. Running on its own thread, it keeps forwarding whatever the test's own loop
    is doing (blocking included).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
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
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, to_target=True),
                self._pipe(upstream_reader, client_writer, to_target=False),
            )
        finally:
            for transport in ends:
                self._transports.discard(transport)
                transport.abort()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, to_target: bool
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
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()


# ------------------------------------------------------------------------------------------------ Redis


# No snapshot, no append-only file: a restarted server starts empty, as one that lost its disk.
_NOTHING_KEPT = ("--save", "", "--appendonly", "no")


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, with no persistence: killed, it comes back empty."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()

    def start(self) -> None:
        """Start (again) on the same port and wait until it answers PING."""
        log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - kept by the process
        with log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *_NOTHING_KEPT],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        try:
            deadline = time.monotonic() + _START_TIMEOUT
            while not _redis_answers(self.port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    unavailable(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: every connection drops at once and whatever it held is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ PostgreSQL


class PostgresCluster:
    """A throwaway PostgreSQL cluster (``initdb``) on a free port, which a test may stop and start at will.

    PostgreSQL refuses to run as root: when the tests do, the cluster runs as the ``postgres`` user.
    """

    def __init__(self) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
        if not candidates:
            unavailable("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
        self.bin = Path(candidates[-1]).parent
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                unavailable("running as root without runuser: cannot start a PostgreSQL cluster")
            self.as_user = [runuser, "-u", "postgres", "--"]
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="rejoinder-pg-"))
        self.data = self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> Self:
        try:
            if self.as_user:
                shutil.chown(self.directory, user="postgres")
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                "--no-sync", "--no-instructions",
            )  # fmt: skip
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        """Stop the cluster if it runs (even half started), and remove its files."""
        if (self.data / "postmaster.pid").exists():
            command = [
                *self.as_user,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "stop",
            ]
            subprocess.run(command, capture_output=True, timeout=_PG_CTL_TIMEOUT + 30, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def start(self) -> None:
        # No fsync: a crashed server process loses nothing the OS has (synchronous_commit stays on: it would).
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off"
        log = str(self.directory / "server.log")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            log,
            "-w",
            "-t",
            str(_PG_CTL_TIMEOUT),
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop: ``immediate`` drops every connection at once, as a crash does (recovery runs on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(_PG_CTL_TIMEOUT), "stop")

    def _run(self, program: str, *arguments: str) -> None:
        command = [*self.as_user, str(self.bin / program), *arguments]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_PG_CTL_TIMEOUT + 30, check=False
        )
        if result.returncode != 0:
            unavailable(f"{program} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


# ------------------------------------------------------------------------------------------------ what clients see


def assert_unavailable(response: httpx.Response) -> None:
    """A 503 problem document of type ``unavailable`` that says when to try again."""
    assert response.status_code == 503, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == "unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def transcript(client: httpx.AsyncClient, conversation_id: str, session: str) -> list[dict[str, Any]]:
    """The conversation's stored messages, as its customer reads them."""
    response = await client.get(
        f"/v1/conversations/{conversation_id}/messages",
        params={"limit": 500},
        headers={"Authorization": f"Bearer {session}"},
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages
