"""Real ``rejoinder serve`` processes sharing one PostgreSQL database and one Redis, as scaled-out hosts do.

A :class:`Deployment` is what every worker of one installation shares: the database URL, the Redis URL and the
bot's keys (made by ``rejoinder keys create --json`` on that database). A :class:`Worker` is one ``rejoinder
serve`` process (or one ``--workers N`` supervisor) on its own port of 127.0.0.1, which a test can start, stop,
``kill -9`` and start again on the same port. Each process logs to a file of its own, read back by the tests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import (
    READY_TIMEOUT,
    REJOINDER,
    create_keys,
    end_process,
    free_port,
    serve_environment,
)

START_TIMEOUT = (
    READY_TIMEOUT  # seconds for a worker to answer /readyz (imports and migrations on a busy machine)
)
STOP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Deployment:
    """What every worker of one installation shares."""

    database_url: str
    redis_url: str
    logs: Path
    sdk_key: str
    secret_key: str
    env: dict[str, str]


def create_deployment(database_url: str, redis_url: str, logs: Path) -> Deployment:
    """Keys for the example shop on ``database_url`` (which this also migrates), from the CLI."""
    env = serve_environment(database_url, REJOINDER_REDIS_URL=redis_url, REJOINDER_LOG_LEVEL="info")
    keys = create_keys(env)
    logs.mkdir(parents=True, exist_ok=True)
    return Deployment(database_url, redis_url, logs, keys["sdk_key"], keys["secret_key"], env)


class Worker:
    """One ``rejoinder serve`` process for the example shop, on a port it keeps across restarts."""

    def __init__(self, deployment: Deployment, name: str, *, processes: int = 1) -> None:
        self.deployment = deployment
        self.name = name
        self.processes = processes
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.deployment.logs / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        """Start the process (without waiting for it to be ready; see :meth:`wait_ready`)."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.starts += 1
        command = [REJOINDER, "serve", str(EXAMPLE_BOT), "--port", str(self.port)]
        if self.processes > 1:
            command += ["--workers", str(self.processes)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=self.deployment.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until /readyz answers 200 (the database is reachable and migrations ran)."""
        assert self.process is not None
        # A supervisor's processes start side by side, on the same cores.
        timeout = START_TIMEOUT * self.processes if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_path.read_text()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200 and self._all_started():
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} was not ready within {timeout:g} s:\n{self.log_path.read_text()}")

    def _all_started(self) -> bool:
        """Whether every process has finished starting (one answering /readyz says nothing of the others)."""
        if self.processes == 1:
            return True
        started = self.log_path.read_text(errors="replace").count("Application startup complete")
        return started >= self.processes

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush; in-flight requests are cut."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> int:
        """SIGTERM and wait for a graceful shutdown (killed if it does not come, its workers too); the exit status."""
        if self.process is None:
            return 0
        return end_process(self.process, grace=STOP_TIMEOUT)

    def worker_pids(self) -> list[int]:
        """The worker processes of a ``--workers N`` supervisor (its spawned children, not its helpers)."""
        if self.process is None or self.process.poll() is not None:
            return []
        found: list[int] = []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"spawn_main" in command:
                    found.append(int(pid))
        return found

    def connections(self) -> dict[int, int]:
        """Per worker process of a ``--workers N`` supervisor, how many established connections to our port it
        holds (from /proc: which socket each process has open, and which sockets are connections to the port)."""
        port = f":{self.port:04X}"
        established: set[str] = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(port) and fields[3] == "01":  # local address, state ESTABLISHED
                established.add(f"socket:[{fields[9]}]")
        counts: dict[int, int] = {}
        for pid in self.worker_pids():
            descriptors = Path(f"/proc/{pid}/fd")
            counts[pid] = sum(1 for fd in descriptors.iterdir() if _link(fd) in established)
        return counts

    def log(self) -> str:
        """Everything this worker logged, over all its starts."""
        return "".join(
            (self.deployment.logs / f"{self.name}-{start}.log").read_text(errors="replace")
            for start in range(1, self.starts + 1)
        )


@contextlib.contextmanager
def running(deployment: Deployment, *names: str, processes: int = 1) -> Iterator[list[Worker]]:
    """Start one worker per name (all at once, then wait for each); stop them all on exit."""
    workers = [Worker(deployment, name, processes=processes) for name in names]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile
        return ""
