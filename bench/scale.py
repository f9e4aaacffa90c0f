"""Scale-out: chat turns over HTTP on 1 worker and on 2 workers, PostgreSQL + Redis; and SQLite against PostgreSQL.

The load is http_turns.py's (imported): client processes running async httpx, one keep-alive connection per
conversation, 100 conversations, each sending a text the welcome skill does not understand (no Integrate call) as
soon as its last one was answered (saturated), then at a steady pace. The servers are each the ``rejoinder
serve`` command (bench/echo_server.py, which is that command with one extra route):

* ``postgres x1``: one worker on PostgreSQL, with Redis (the baseline of the scale-out);
* ``postgres x2``: ``--workers 2``: two processes sharing one port, on the same PostgreSQL and Redis;
* ``sqlite x1``: one worker on a temporary SQLite file (the baseline of the PostgreSQL single worker).

The three servers run side by side and the rounds alternate between them, so that each sees the same background
load. Each round is a saturated load of turns, then of resumes (``--resumers`` at a time, each resuming one of as
many fresh conversations with its token). Printed, as min/median/max over ``--rounds``: turns/s, the worker CPU
per turn and per resume (all worker processes), PostgreSQL's CPU per turn and per resume (the backends serving the
run's database, read from /proc), Redis's CPU per turn (its INFO, the whole server); then p99 at the same paced
load on every server (``--pace`` of the single PostgreSQL worker's saturated rate), the bytes stored per turn, and
the ratios: PostgreSQL x1 / SQLite x1 (worker CPU per turn and per resume, p99 at the paced load) and x2 / x1 (worker
CPU per turn, turns/s). The PostgreSQL database is created for the run and dropped after it. ``--profile DIR``
instead profiles the PostgreSQL single worker under a saturated load (pyinstrument).

    python bench/scale.py [--seconds 4] [--rounds 3] [--clients 2] [--profile DIR]

The machine has 2 cores shared by the server processes, the client processes, PostgreSQL and Redis (and whatever
else runs): the figures are noisy, and 2 workers can use at most what the others leave of the second core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import redis

from echo_server import NO_QUOTAS, PROFILE_ENV, ROOT, SHOP, ServerProcess, create_keys, free_port, stop_server
from http_turns import Bench, Phase, _ready, report_profile, start_conversations

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

    @property
    def database(self) -> str | None:
        """The PostgreSQL database's name (None on SQLite)."""
        return self.database_url.rsplit("/", 1)[1] if self.database_url.startswith("postgresql") else None


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


async def _fetch(database: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database=database, timeout=5, **POSTGRES)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


def postgres_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds used so far by each backend process serving ``database`` (nothing on SQLite)."""
    if database is None:
        return {}
    rows = asyncio.run(
        _fetch(
            database,
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    )
    return {row["pid"]: _cpu_of(row["pid"]) for row in rows}


def _cpu_of(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _postgres_cpu_since(before: dict[int, float], database: str | None) -> float:
    after = postgres_cpu(database)
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def redis_cpu(url: str | None) -> float:
    """CPU seconds the Redis server has used so far (the whole server: others' use is counted too)."""
    if url is None:
        return 0.0
    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@dataclass
class Running:
    server: Served
    secret_key: str


@contextlib.contextmanager
def serve(setup: Setup, workdir: Path, profile: Path | None = None) -> Iterator[Running]:
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
    sdk_key, secret_key = create_keys(env)
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
        yield Running(server, secret_key)
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


# ---------------------------------------------------------------------------------------------- resumes


async def issue_tokens(running: Running, count: int) -> list[str]:
    """``count`` fresh conversations, each with a token that allows many resumes."""
    conversations = await start_conversations(running.server, count)
    admin = {"Authorization": f"Bearer {running.secret_key}"}
    async with httpx.AsyncClient(base_url=running.server.base, headers=admin, timeout=30) as client:
        tokens = []
        for conversation_id, _session in conversations:
            issued = await client.post(
                f"/v1/conversations/{conversation_id}/tokens", json={"uses": 1_000_000}
            )
            issued.raise_for_status()
            tokens.append(str(issued.json()["token"]))
    return tokens


async def _resume_for(base: str, sdk_key: str, tokens: list[str], seconds: float) -> tuple[int, list[str]]:
    """Resume back to back, one client per token, for ``seconds``: how many were answered, and the failures."""
    stop = time.perf_counter() + seconds
    done = 0
    failures: list[str] = []

    async def resume(token: str) -> None:
        nonlocal done
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {sdk_key}"}, timeout=30
        ) as client:
            while time.perf_counter() < stop:
                answer = await client.post("/v1/conversations/resume", json={"token": token})
                if answer.status_code == 200:
                    done += 1
                else:
                    failures.append(str(answer.status_code))

    await asyncio.gather(*(resume(token) for token in tokens))
    return done, failures


@dataclass
class ResumePhase:
    resumes: int
    worker_cpu: float  # seconds, every worker process
    postgres_cpu: float  # seconds, the run database's backends

    @property
    def cpu_ms(self) -> float:
        return self.worker_cpu * 1000 / self.resumes if self.resumes else math.nan

    @property
    def postgres_cpu_ms(self) -> float:
        return self.postgres_cpu * 1000 / self.resumes if self.resumes else math.nan


def run_resumes(running: Running, setup: Setup, tokens: list[str], seconds: float) -> ResumePhase:
    pg_before, cpu_before = postgres_cpu(setup.database), running.server.cpu_seconds()
    done, failures = asyncio.run(_resume_for(running.server.base, running.server.sdk_key, tokens, seconds))
    if failures:
        print(f"  {setup.label}: {len(failures)} resumes failed: {sorted(set(failures))}")
    return ResumePhase(
        done, running.server.cpu_seconds() - cpu_before, _postgres_cpu_since(pg_before, setup.database)
    )


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Round:
    phase: Phase
    postgres_cpu: float  # seconds used by the run database's backends during the load
    redis_cpu: float  # seconds used by the Redis server during the load (all of it)
    resumes: ResumePhase

    @property
    def cpu_ms(self) -> float:
        """Worker CPU time per turn, every worker process included: steadier than rates on a busy machine."""
        return self.phase.server_cpu * 1000 / self.phase.rate if self.phase.rate else math.nan

    def per_turn_ms(self, seconds: float) -> float:
        """``seconds`` used during the load, per turn answered (the warm-up's turns are not counted: a slight
        overestimate, the same for every server)."""
        answered = len(self.phase.latencies_ms)
        return seconds * 1000 / answered if answered else math.nan


@dataclass
class Result:
    rounds: list[Round]
    paced: Phase | None = None
    bytes_per_turn: float | None = None

    def spread(self, value: Callable[[Round], float]) -> tuple[float, float, float]:
        values = [value(each) for each in self.rounds]
        return min(values), statistics.median(values), max(values)


def show(values: tuple[float, float, float], digits: int = 2) -> str:
    low, median, high = values
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def measure(
    setups: list[Setup], pool: ProcessPoolExecutor, args: argparse.Namespace, workdir: Path
) -> tuple[dict[str, Result], float]:
    """Every server up at once; rounds alternating between them (each sees the same background load), then a
    paced load on each at ``--pace`` of the first one's saturated rate."""
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(serve(setup, workdir)) for setup in setups]
        benches = []
        for running in servers:
            conversations = asyncio.run(start_conversations(running.server, args.conversations))
            tokens = asyncio.run(issue_tokens(running, args.resumers))
            benches.append((Bench(pool, running.server, args.clients, args.warmup), conversations, tokens))
        results = {setup.label: Result([]) for setup in setups}
        for round_number in range(1, args.rounds + 1):
            for setup, running, (bench, conversations, tokens) in zip(setups, servers, benches, strict=True):
                pg_before, redis_before = postgres_cpu(setup.database), redis_cpu(setup.redis_url)
                phase = bench.run("turns", conversations, args.seconds)
                pg_used = _postgres_cpu_since(pg_before, setup.database)
                redis_used = redis_cpu(setup.redis_url) - redis_before
                resumes = run_resumes(running, setup, tokens, args.seconds)
                measured = Round(phase, pg_used, redis_used, resumes)
                results[setup.label].rounds.append(measured)
                print(
                    f"{phase.line(f'{setup.label}, round {round_number}')}\n"
                    f"{'':22} worker CPU {measured.cpu_ms:.2f} ms a turn, "
                    f"PostgreSQL {measured.per_turn_ms(pg_used):.2f}, Redis {measured.per_turn_ms(redis_used):.2f}; "
                    f"{resumes.resumes / args.seconds:,.0f} resumes/s, worker CPU {resumes.cpu_ms:.2f} ms a resume, "
                    f"PostgreSQL {resumes.postgres_cpu_ms:.2f}",
                    flush=True,
                )
        pace = results[setups[0].label].spread(lambda r: r.phase.rate)[1] * args.pace
        for setup, (bench, conversations, _tokens) in zip(setups, benches, strict=True):
            paced = bench.run("turns", conversations, args.seconds, len(conversations) / pace)
            results[setup.label].paced = paced
            print(paced.line(f"{setup.label}, {pace:,.0f}/s"), flush=True)
        for setup in setups:
            if setup.database is not None:
                results[setup.label].bytes_per_turn = stored_bytes_per_turn(setup.database)
    return results, pace


def stored_bytes_per_turn(database: str) -> float:
    """Bytes on disk (tables and indexes) per customer message stored: one a turn."""
    [row] = asyncio.run(
        _fetch(
            database,
            "SELECT (SELECT count(*) FROM messages WHERE sender = 'customer') AS turns, "
            "pg_total_relation_size('messages') + pg_total_relation_size('conversations') AS bytes",
        )
    )
    return float(row["bytes"]) / max(int(row["turns"]), 1)


def profile_postgres(
    setup: Setup, pool: ProcessPoolExecutor, args: argparse.Namespace, workdir: Path
) -> None:
    session = args.profile.resolve() / "server.pyisession"
    session.unlink(missing_ok=True)
    with serve(setup, workdir, profile=session) as running:
        server = running.server
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
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per load (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each load")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server (default 3)")
    parser.add_argument(
        "--conversations", type=int, default=100, help="concurrent conversations (default 100)"
    )
    parser.add_argument("--resumers", type=int, default=20, help="concurrent resumes (default 20)")
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
    report(results, pace, args)


def report(results: dict[str, Result], pace: float, args: argparse.Namespace) -> None:
    """Each server's figures (median, and min-max over the rounds), then the ratios the targets are set on."""
    print(f"\nmedian (min-max) of {args.rounds} rounds")
    for label, result in results.items():
        paced = result.paced
        print(
            f"{label:<12} {show(result.spread(lambda r: r.phase.rate), 0)} turns/s saturated; "
            f"worker CPU {show(result.spread(lambda r: r.cpu_ms))} ms a turn, "
            f"{show(result.spread(lambda r: r.resumes.cpu_ms))} ms a resume; "
            f"PostgreSQL {show(result.spread(lambda r: r.per_turn_ms(r.postgres_cpu)))} ms a turn, "
            f"{show(result.spread(lambda r: r.resumes.postgres_cpu_ms))} ms a resume; "
            f"Redis {show(result.spread(lambda r: r.per_turn_ms(r.redis_cpu)))} ms a turn; "
            f"p99 {paced.percentile(99) if paced else math.nan:.1f} ms at {pace:,.0f} turns/s"
            + (f"; {result.bytes_per_turn:,.0f} bytes stored a turn" if result.bytes_per_turn else "")
        )
    postgres, double, sqlite = results["postgres x1"], results["postgres x2"], results["sqlite x1"]

    def ratios(top: Result, bottom: Result, value: Callable[[Round], float]) -> tuple[float, float, float]:
        # Round by round: both saw the same moment's background load.
        each = sorted(value(a) / value(b) for a, b in zip(top.rounds, bottom.rounds, strict=True))
        return each[0], statistics.median(each), each[-1]

    assert postgres.paced is not None and sqlite.paced is not None
    print(
        "\nratios, median (min-max) of the rounds' ratios\n"
        f"worker CPU a turn, postgres x1 / sqlite x1:    {show(ratios(postgres, sqlite, lambda r: r.cpu_ms))}"
        "  (target <= 1.3)\n"
        f"worker CPU a resume, postgres x1 / sqlite x1:  "
        f"{show(ratios(postgres, sqlite, lambda r: r.resumes.cpu_ms))}  (target <= 1.3)\n"
        f"p99 at {pace:,.0f} turns/s, postgres x1 / sqlite x1: "
        f"{postgres.paced.percentile(99) / sqlite.paced.percentile(99):.2f}  (target <= 2)\n"
        f"worker CPU a turn, postgres x2 / x1:           {show(ratios(double, postgres, lambda r: r.cpu_ms))}"
        "  (target <= 1.1)\n"
        f"turns/s, postgres x2 / x1:                     "
        f"{show(ratios(double, postgres, lambda r: r.phase.rate))}\n"
        f"turns/s, postgres x1 / sqlite x1:              "
        f"{show(ratios(postgres, sqlite, lambda r: r.phase.rate))}"
    )


if __name__ == "__main__":
    main()
