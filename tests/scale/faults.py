"""Servers a test breaks on purpose: its own Redis, its own PostgreSQL cluster (the TCP proxy it can cut is
tests.helpers.proxy).

The machine's shared PostgreSQL (5432) and Redis (6379) are never stopped or reconfigured: a fault is made on a
proxy in front of them, or on a server the test started itself on a free port of 127.0.0.1.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import httpx

from tests.helpers.processes import free_port
from tests.helpers.services import unavailable

_START_TIMEOUT = 30.0  # seconds for redis-server to answer PING (well under 1 s on an idle machine)
_PG_CTL_TIMEOUT = 60  # seconds pg_ctl waits for a start or stop (a few on an idle machine, with recovery)


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
