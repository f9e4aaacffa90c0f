"""Real ``rejoinder`` processes on 127.0.0.1: started with their keys and a log file, waited for, always ended.

Every wait is bounded and sized for a slow, busy machine: a server that answers ``/readyz`` in about 1 s on an idle
machine takes 6-8 s on two cores with a load of 7, and up to about 70 s (keys created, then served) at a load of 9-10. Whatever happens to a test, each process it starts
is ended: a graceful signal, a bounded wait, then SIGKILL (for its children too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.services import NO_QUOTAS

REJOINDER = str(Path(sys.executable).with_name("rejoinder"))
READY_TIMEOUT = 90.0  # seconds for /readyz to answer 200
# seconds for one command (`rejoinder chat`, `keys create`…) to finish: at load 10 on 2 cores starting one took a minute
COMMAND_TIMEOUT = 180.0
STOP_GRACE = 30.0  # seconds for a graceful shutdown before SIGKILL
KILLED_WITHIN = 10.0  # seconds for a SIGKILLed process to be reaped

P = TypeVar("P", bound="subprocess.Popen[Any]")


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_environment(database: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a ``rejoinder`` process: this one's without its REJOINDER_* settings, quotas off, the
    database (a SQLite file, or a URL), the shop's backend on a closed port (its calls fail fast), and ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REJOINDER_")}
    url = f"sqlite:///{database}" if isinstance(database, Path) else database
    return {**env, **NO_QUOTAS, "REJOINDER_DATABASE_URL": url, "SHOP_BACKEND": "http://127.0.0.1:9", **extra}


def create_keys(env: dict[str, str], bot: Path = EXAMPLE_BOT) -> dict[str, str]:
    """``rejoinder keys create BOT --json`` on the database of ``env``: ``{"bot", "sdk_key", "secret_key"}``."""
    created = subprocess.run(
        [REJOINDER, "keys", "create", str(bot), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert created.returncode == 0, created.stderr
    keys: dict[str, str] = json.loads(created.stdout)
    return keys


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (a ``--workers N`` supervisor's workers), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def end_process(
    process: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, grace: float = STOP_GRACE
) -> int:
    """Send ``sig`` and wait up to ``grace`` seconds; then SIGKILL the process and its children. Its exit status."""
    if process.poll() is None:
        children = _children(process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=KILLED_WITHIN)
        for child in children:  # a supervisor that died first leaves its workers behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    return process.returncode


@contextlib.contextmanager
def ending(process: P, sig: signal.Signals = signal.SIGTERM, grace: float = STOP_GRACE) -> Iterator[P]:
    """``with ending(Popen(...)) as process:`` the process is ended on leaving, whatever happened inside."""
    try:
        yield process
    finally:
        end_process(process, sig, grace)


def wait_until_up(base: str, process: subprocess.Popen[Any], timeout: float = READY_TIMEOUT) -> None:
    """Wait for ``{base}/readyz`` to answer 200; a server that exits or never answers is ended, and this fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}: {process.communicate()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    end_process(process, signal.SIGKILL, grace=0)
    raise AssertionError(f"the server did not become ready within {timeout:.0f} s")


@dataclass
class ServeProcess:
    """``rejoinder serve BOT_DIR`` on a free loopback port (kept across restarts), logging to ``log_path`` (its
    output and errors alike), with ``workers`` worker processes and any more ``options`` of the command.

    A context manager: leaving it ends the process. ``create_keys()`` fills ``sdk_key`` and ``secret_key``.
    """

    bot_dir: Path
    env: dict[str, str]
    log_path: Path
    workers: int = 1
    options: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    sdk_key: str = ""
    secret_key: str = ""
    process: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sdk_url(self) -> str:
        return f"{self.base}/sdk/alli.js"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def create_keys(self) -> None:
        keys = create_keys(self.env, self.bot_dir)
        self.sdk_key, self.secret_key = keys["sdk_key"], keys["secret_key"]

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start (again) and wait until ``/readyz`` answers 200 (blocking: from async code, call it on a thread)."""
        # The log goes to a file: a pipe nobody reads would fill up and stall the server.
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [
                    REJOINDER,
                    "serve",
                    str(self.bot_dir),
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    *self.options,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            wait_until_up(self.base, self.process, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = STOP_GRACE) -> int | None:
        """``sig`` (SIGTERM: a graceful shutdown), then SIGKILL if it has not ended within ``grace`` seconds. The
        exit status (None when it was not running)."""
        status = end_process(self.process, sig, grace) if self.process is not None else None
        self.process = None
        return status

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush; requests under way are cut."""
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        """What the server has logged so far (JSON lines)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def admin(self) -> httpx.Client:
        """An admin API client (secret key, no browser Origin)."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.secret_key}"}, timeout=10
        )

    def client(self) -> httpx.Client:
        """A client API client with the SDK key, as a server or mobile app would call it (no Origin)."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.sdk_key}"}, timeout=10
        )

    def start_conversation(self, **body: Any) -> dict[str, Any]:
        """Start a conversation from outside a browser; the answer of POST /v1/conversations."""
        with self.client() as client:
            answer = client.post("/v1/conversations", json=body)
        assert answer.status_code == 201, answer.text
        started: dict[str, Any] = answer.json()
        return started

    def issue_token(self, conversation_id: str, **body: Any) -> dict[str, Any]:
        """A conversation token from the admin API: ``{"id", "token", …}``."""
        with self.admin() as admin:
            answer = admin.post(f"/v1/conversations/{conversation_id}/tokens", json=body)
        assert answer.status_code == 201, answer.text
        issued: dict[str, Any] = answer.json()
        return issued
