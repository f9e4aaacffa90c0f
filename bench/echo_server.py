"""The benchmarks' server process: ``rejoinder serve`` with one more route, ``POST /bench/echo``.

The route answers the JSON object it was sent. It is added to the very app ``rejoinder serve`` builds, run by the
very same command, so both the API routes and the echo go through the same uvicorn settings, middleware (access
log, CORS, body limit), logging and event loop: the ratio between them is the cost of the work a route does.

    python bench/echo_server.py BOT_DIR... [--host 127.0.0.1] [--port 8000]   (the options of rejoinder serve)

:func:`serve_shop` starts it for the example shop on a temporary SQLite database and a free port of 127.0.0.1.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
REJOINDER = str(Path(sys.executable).with_name("rejoinder"))
ECHO_PATH = "/bench/echo"
PROFILE_ENV = (
    "REJOINDER_BENCH_PROFILE"  # set to a file: SIGUSR1 starts profiling the server, SIGUSR2 saves it
)


# ---------------------------------------------------------------------------------------------- in the server


async def echo(request: Request) -> JSONResponse:
    """Answer the JSON that came in, parsed and serialised again like an API route's body and answer."""
    return JSONResponse(await request.json())


def with_echo(create_app: Callable[..., FastAPI]) -> Callable[..., FastAPI]:
    """``create_app``, and the echo route on the app it builds."""

    @functools.wraps(create_app)
    def create(*args: Any, **kwargs: Any) -> FastAPI:
        app = create_app(*args, **kwargs)
        app.add_api_route(ECHO_PATH, echo, methods=["POST"], include_in_schema=False)
        return app

    return create


def profile_on_signals(path: str) -> None:
    """SIGUSR1 starts sampling the server's main thread with pyinstrument; SIGUSR2 saves the session to ``path``.

    Only the window between the two is recorded: not the imports and start-up, not the benchmark's set-up.
    """
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")

    def start(_signal: int, _frame: object) -> None:
        profiler.start()

    def stop(_signal: int, _frame: object) -> None:
        partial = f"{path}.partial"
        profiler.stop().save(partial)
        os.replace(partial, path)  # whoever waits for the file sees it whole

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main(argv: list[str]) -> None:
    import rejoinder.server.app as server_app
    from rejoinder.cli import app as cli

    if os.environ.get(PROFILE_ENV):
        profile_on_signals(os.environ[PROFILE_ENV])
    # `rejoinder serve` looks create_app up in its module when it runs, so it builds the app with the route.
    server_app.create_app = with_echo(server_app.create_app)
    cli(["serve", *argv], prog_name="rejoinder")


# ---------------------------------------------------------------------------------------------- from a benchmark


@dataclass
class ServerProcess:
    """A running server process and what a benchmark needs to talk to it."""

    process: subprocess.Popen[bytes]
    base: str
    port: int
    sdk_key: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> int:
        """Resident memory (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for process {self.pid}")


def machine_cpu_seconds() -> float:
    """CPU time all processes of the machine have used so far (every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# A benchmark is one client sending far more than one visitor may: the quotas of anonymous clients are off.
NO_QUOTAS = {
    f"REJOINDER_QUOTA_{name}": "0"
    for name in ("STARTS_PER_IP", "STARTS_PER_BOT", "MESSAGES_PER_IP", "MESSAGES_PER_BOT")
}


def environment(workdir: Path, log_level: str = "info") -> dict[str, str]:
    """The server's environment: a SQLite database in ``workdir``; the shop's backend is never called."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REJOINDER_")}
    return {
        **env,
        **NO_QUOTAS,
        "REJOINDER_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "REJOINDER_LOG_LEVEL": log_level,
        "SHOP_BACKEND": "http://127.0.0.1:9",
        # Every simulated client comes from this one address, and idle connections are what some benchmarks
        # measure: lift the cap on streams per address and the deadline of a connection that sends nothing.
        "REJOINDER_MAX_SOCKETS_PER_IP": "1000000",
        "REJOINDER_REQUEST_HEADER_TIMEOUT": "300",
    }


def create_keys(env: dict[str, str]) -> tuple[str, str]:
    """The SDK key and the secret (admin) key from ``rejoinder keys create --json``."""
    created = subprocess.run(
        [REJOINDER, "keys", "create", str(SHOP), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if created.returncode != 0:
        raise RuntimeError(f"rejoinder keys create failed: {created.stderr}")
    keys = json.loads(created.stdout)
    return keys["sdk_key"], keys["secret_key"]


@contextmanager
def serve_shop(
    workdir: Path,
    *,
    log_level: str = "info",
    sdk_key: str | None = None,
    profile: Path | None = None,
    startup_timeout: float = 60.0,
) -> Iterator[ServerProcess]:
    """Run this module's server for the example shop on a free port; stopped (SIGINT, gracefully) on exit.

    With ``profile``, the server profiles itself between SIGUSR1 and SIGUSR2 into that file.
    """
    env = environment(workdir, log_level)
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
    key = sdk_key or create_keys(env)[0]
    port = free_port()
    log = workdir / f"server-{port}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, __file__, str(SHOP), "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", port, key, log)
    try:
        _wait_until_ready(server, startup_timeout)
        yield server
    finally:
        stop_server(process)


def _wait_until_ready(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"the server exited with {server.process.returncode}:\n{server.log.read_text()}"
            )
        try:
            if httpx.get(f"{server.base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process as Ctrl-C would, killing it if it does not end within a minute."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1:])
