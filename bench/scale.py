"""Scale-out: chat turns over HTTP on 1 worker and on 2 workers, PostgreSQL + Redis; and SQLite against PostgreSQL.

The load is http_turns.py's (imported): client processes running async httpx, one keep-alive connection per
conversation, 100 conversations, each sending a text the welcome skill does not understand (no Integrate call) as
soon as its last one was answered (saturated), then at a steady pace. The servers are each the ``rejoinder
serve`` command (bench/echo_server.py, which is that command with one extra route):

* ``postgres x1``: one worker on PostgreSQL, with Redis (the baseline of the scale-out);
* ``postgres x2``: ``--workers 2``: two processes sharing one port, on the same PostgreSQL and Redis;
* ``sqlite x1``: one worker on a temporary SQLite file (the baseline of the PostgreSQL single worker).

The three servers run side by side and the saturated rounds alternate between them, so that each sees the same
background load. Printed: turns/s saturated (median of ``--rounds``), p99 saturated (mostly queueing: 100 in
flight) and p99 at the same paced load on every server (``--pace`` of the single PostgreSQL worker's saturated
rate), the server CPU time per turn (all worker processes), the ratio x2 / x1 (target >= 1.6) and PostgreSQL x1 /
SQLite x1. The PostgreSQL database is created for the run and dropped after it. ``--profile DIR`` instead profiles
the PostgreSQL single worker under a saturated load (pyinstrument).

    python bench/scale.py [--seconds 5] [--rounds 2] [--clients 2] [--profile DIR]

The machine has 2 cores shared by the server processes, the client processes, PostgreSQL and Redis (and whatever
else runs): the figures are noisy, and 2 workers can use at most what the others leave of the second core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from echo_server import NO_QUOTAS, PROFILE_ENV, ROOT, SHOP, ServerProcess, create_keys, free_port, stop_server
from http_turns import Bench, Phase, _ready, report_profile, start_conversations

SCALE_TARGET = 1.6
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_URL = "redis://127.0.0.1:6379/15"  # the database the test suite uses: nothing else keeps keys there


class Served(ServerProcess):
    """A server whose CPU time includes its worker processes (``--workers N`` runs them as children)."""

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in _tree(self.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _tree(pid: int) -> list[int]:
    found = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += _tree(int(child))
    return found


@dataclass(frozen=True)
class Setup:
    label: str
    database_url: str
    redis_url: str | None
    workers: int


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A new empty PostgreSQL database for this run, dropped afterwards."""
    name = f"rejoinder_bench_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(database="postgres", timeout=5, **POSTGRES)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def serve(setup: Setup, workdir: Path, profile: Path | None = None) -> Iterator[Served]:
    """The server of ``setup`` on a free port, ready (every worker started); stopped gracefully on exit."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REJOINDER_")}
    env.update(NO_QUOTAS)
    env.update(
        REJOINDER_DATABASE_URL=setup.database_url,
        REJOINDER_LOG_LEVEL="info",
        SHOP_BACKEND="http://127.0.0.1:9",
    )
    if setup.redis_url:
        env["REJOINDER_REDIS_URL"] = setup.redis_url
    if profile is not None:
        env[PROFILE_ENV] = str(profile)
    sdk_key = create_keys(env)
    port = free_port()
    log = workdir / f"{setup.label.replace(' ', '-')}.log"
    command = [sys.executable, str(ROOT / "bench" / "echo_server.py"), str(SHOP), "--port", str(port)]
    if setup.workers > 1:
        command += ["--workers", str(setup.workers)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=output)
    server = Served(process, f"http://127.0.0.1:{port}", port, sdk_key, log)
    try:
        _wait_until_ready(server, setup.workers)
        yield server
    finally:
        stop_server(process)


def _wait_until_ready(server: Served, workers: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.log.read_text()}")
        started = server.log.read_text(errors="replace").count("Application startup complete")
        with contextlib.suppress(httpx.TransportError):
            if started >= workers and httpx.get(f"{server.base}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{server.log.read_text()}")


@dataclass
class Result:
    saturated: list[Phase]
    paced: Phase | None = None

    @property
    def rate(self) -> float:
        return statistics.median(phase.rate for phase in self.saturated)

    @property
    def saturated_p99(self) -> float:
        return statistics.median(phase.percentile(99) for phase in self.saturated)

    @property
    def cpu_ms(self) -> float:
        """Server CPU time per turn, every worker process included: steadier than rates on a busy machine."""
        return statistics.median(
            phase.server_cpu * 1000 / phase.rate for phase in self.saturated if phase.rate
        )


def measure(
    setups: list[Setup], pool: ProcessPoolExecutor, args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Result], float]:
    """Every server up at once; saturated rounds alternating between them (each sees the same background
    load), then a paced load on each at ``--pace`` of the first one's saturated rate."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve(setup, workdir)) for setup in setups]
        benches = []
        for server in servers:
            conversations = asyncio.run(start_conversations(server, args.conversations))
            benches.append((Bench(pool, server, args.clients, args.warmup), conversations))
        results = {setup.label: Result([]) for setup in setups}
        for round_number in range(1, args.rounds + 1):
            for setup, (bench, conversations) in zip(setups, benches, strict=True):
                phase = bench.run("turns", conversations, args.seconds)
                results[setup.label].saturated.append(phase)
                print(phase.line(f"{setup.label}, round {round_number}"), flush=True)
        pace = results[setups[0].label].rate * args.pace
        for setup, (bench, conversations) in zip(setups, benches, strict=True):
            paced = bench.run("turns", conversations, args.seconds, len(conversations) / pace)
            results[setup.label].paced = paced
            print(paced.line(f"{setup.label}, {pace:,.0f}/s"), flush=True)
    return results, pace


def profile_postgres(
    setup: Setup, pool: ProcessPoolExecutor, args: argparse.Namespace, workdir: Path
) -> None:
    session = args.profile.resolve() / "server.pyisession"
    session.unlink(missing_ok=True)
    with serve(setup, workdir, profile=session) as server:
        conversations = asyncio.run(start_conversations(server, args.conversations))
        phase = Bench(pool, server, args.clients, args.warmup).run(
            "turns", conversations, args.seconds, profiling=True
        )
        print(phase.line(f"{setup.label}, profiled"))
        deadline = time.monotonic() + 60
        while not session.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    report_profile(session, args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each load")
    parser.add_argument("--rounds", type=int, default=2, help="saturated rounds per server (default 2)")
    parser.add_argument(
        "--conversations", type=int, default=100, help="concurrent conversations (default 100)"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument(
        "--pace", type=float, default=0.5, help="paced load, as a share of PostgreSQL x1 turns/s"
    )
    parser.add_argument("--redis", default=REDIS_URL, help=f"Redis URL (default {REDIS_URL})")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="only profile PostgreSQL x1; reports in DIR"
    )
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="rejoinder-scale-") as tmp,
        postgres_database() as postgres_url,
        ProcessPoolExecutor(args.clients, mp_context=spawn) as pool,
    ):
        workdir = Path(tmp)
        list(pool.map(_ready, range(args.clients)))
        sqlite = Setup("sqlite x1", f"sqlite:///{workdir / 'bench.db'}", None, 1)
        single = Setup("postgres x1", postgres_url, args.redis, 1)
        double = Setup("postgres x2", postgres_url, args.redis, 2)
        print(f"PostgreSQL {postgres_url}, Redis {args.redis}, {os.cpu_count()} cores")
        print(
            f"{args.conversations} conversations over {args.clients} client processes, one connection each\n"
        )
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile_postgres(single, pool, args, workdir)
            return
        results, pace = measure([single, double, sqlite], pool, args, workdir)

    print()
    for label, result in results.items():
        paced = result.paced
        print(
            f"{label:<12} {result.rate:8,.0f} turns/s saturated (median of {len(result.saturated)}), "
            f"p99 {result.saturated_p99:6.1f} ms saturated, "
            f"p99 {paced.percentile(99) if paced else float('nan'):6.1f} ms at {pace:,.0f} turns/s, "
            f"server CPU {result.cpu_ms:.2f} ms a turn"
        )
    ratio = results["postgres x2"].rate / results["postgres x1"].rate
    verdict = "ok" if ratio >= SCALE_TARGET else "MISSED"
    print(f"\nscale-out, postgres x2 / x1:  {ratio:5.2f}   (target >= {SCALE_TARGET}) {verdict}")
    print(f"postgres x1 / sqlite x1:      {results['postgres x1'].rate / results['sqlite x1'].rate:5.2f}")


if __name__ == "__main__":
    main()
