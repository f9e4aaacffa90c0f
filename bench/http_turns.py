"""Chat turns over HTTP against a bare JSON echo on the same server process: throughput, latency, long talks.

One server process (``rejoinder serve examples/shop`` on a temporary SQLite database, plus ``POST /bench/echo``,
see echo_server.py) and one load generator: client processes running async httpx, one keep-alive connection per
conversation (one httpx pool with 100 connections is far slower than 100 pools of one), 100 conversations in
all. A turn is ``POST /v1/conversations/{id}/messages`` with a text the welcome skill does not understand (it
answers "Sorry…" and asks its menu again: no Integrate call), each with its own client_message_id, saved durably.
The echo gets the same body from the same clients. Echo and turns are measured in alternating rounds.

* Saturation (closed loop: every conversation sends its next message as soon as the last is answered): turns/s
  against echo requests/s — target ratio ≥ 0.5. Latency here is mostly queueing (100 in flight / throughput).
* Paced (each conversation sends at a steady pace, half the saturated turn rate in all): p50/p99 of a turn and of
  the echo at the same offered load — target turn p99 ≤ 25 ms.
* ``--long``: the p50 of turn 1,000 of a conversation against the p50 of turn 10 of others, measured one after
  the other, alternately, with no other load — target ≤ 1.2.
* ``--profile DIR``: run the server under pyinstrument during a saturated turns load only, and print the functions
  with the most own time (reports in DIR).

    python bench/http_turns.py [--seconds 5] [--rounds 2] [--clients 2] [--long] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import random
import signal
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop

from echo_server import ECHO_PATH, ServerProcess, machine_cpu_seconds, serve_shop

TEXT = "something else"  # not understood by the welcome skill: "Sorry…", then the menu again
TURN_P99_TARGET_MS = 25.0
RATIO_TARGET = 0.5
LONG_RATIO_TARGET = 1.2


# ---------------------------------------------------------------------------------------------- a client process


@dataclass(frozen=True)
class Load:
    """What one client process sends."""

    base: str
    kind: str  # "turns" or "echo"
    conversations: list[tuple[str, str]]  # (conversation id, session)
    tag: str  # makes client_message_ids unique across loads
    start_at: float  # time.time() at which every client process begins
    warmup: float
    seconds: float
    interval: float | None  # paced: seconds between one conversation's messages; None: back to back


@dataclass
class Tally:
    """What one client process measured."""

    latencies_ms: list[float] = field(default_factory=list)  # answered 200, sent within the measured window
    failures: Counter[str] = field(default_factory=Counter)
    cpu_share: float = 0.0  # of one core, while sending


def drive(load: Load) -> Tally:
    """Run a load in this (client) process."""
    return uvloop.run(_drive(load))


async def _drive(load: Load) -> Tally:
    tally = Tally()
    clients = [
        httpx.AsyncClient(
            base_url=load.base,
            headers={"Authorization": f"Bearer {session}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30,
        )
        for _, session in load.conversations
    ]
    try:
        await asyncio.gather(
            *(client.get("/healthz") for client in clients)
        )  # connections open before the clock
        # No collections of the client's own while it measures: a full one here takes 75-90 ms, and every
        # conversation of this process would count that pause as server latency. The window is seconds long.
        gc.collect()
        gc.freeze()
        gc.disable()
        await asyncio.sleep(max(load.start_at - time.time(), 0))
        begin, cpu_started = time.perf_counter(), time.process_time()
        measure_from = begin + load.warmup
        stop = measure_from + load.seconds

        async def converse(index: int, client: httpx.AsyncClient, conversation_id: str) -> None:
            path = ECHO_PATH if load.kind == "echo" else f"/v1/conversations/{conversation_id}/messages"
            next_at = begin + random.random() * (load.interval or 0)
            sent_count = 0
            while True:
                if load.interval is not None:
                    await asyncio.sleep(max(next_at - time.perf_counter(), 0))
                    next_at = max(next_at + load.interval, time.perf_counter())
                sent = time.perf_counter()
                if sent >= stop:
                    return
                body = {"text": TEXT, "client_message_id": f"{load.tag}-{index}-{sent_count}"}
                sent_count += 1
                try:
                    response = await client.post(path, json=body)
                except httpx.TransportError as error:
                    tally.failures[type(error).__name__] += 1
                    continue
                if response.status_code != 200:
                    tally.failures[str(response.status_code)] += 1
                elif sent >= measure_from:
                    tally.latencies_ms.append((time.perf_counter() - sent) * 1000)

        await asyncio.gather(
            *(
                converse(index, client, conversation_id)
                for index, (client, (conversation_id, _)) in enumerate(
                    zip(clients, load.conversations, strict=True)
                )
            )
        )
        tally.cpu_share = (time.process_time() - cpu_started) / (time.perf_counter() - begin)
    finally:
        gc.enable()
        gc.unfreeze()
        await asyncio.gather(*(client.aclose() for client in clients))
    return tally


def _ready(_: int) -> None:
    """Nothing: makes the pool start its processes (and import httpx) before anything is measured."""


# ---------------------------------------------------------------------------------------------- the benchmark


@dataclass
class Phase:
    """A load's results over every client process."""

    kind: str
    seconds: float
    latencies_ms: list[float]
    failures: Counter[str]
    server_cpu: float  # share of one core the server used
    client_cpu: float  # share of one core per client process, on average
    other_cpu: float  # share of one core used by everything else on the machine

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def server_cpu_ms(self) -> float:
        """Server CPU time per answered request (every thread of the server process)."""
        return self.server_cpu * 1000 / self.rate if self.rate else math.nan

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return math.nan
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[int(p * 10) - 1]

    def line(self, label: str) -> str:
        unit = "turns/s" if self.kind == "turns" else "req/s  "
        failed = f"  FAILED {dict(self.failures)}" if self.failures else ""
        return (
            f"{label:<22} {self.kind:<5} {self.rate:8,.0f} {unit}  p50 {self.percentile(50):6.1f} ms  "
            f"p99 {self.percentile(99):6.1f} ms   server CPU {self.server_cpu:4.0%}  "
            f"clients {self.client_cpu:4.0%} each  others {self.other_cpu:4.0%}{failed}"
        )


class Bench:
    def __init__(self, pool: ProcessPoolExecutor, server: ServerProcess, clients: int, warmup: float) -> None:
        self.pool = pool
        self.server = server
        self.clients = clients
        self.warmup = warmup
        self.loads = 0

    def run(
        self,
        kind: str,
        conversations: Sequence[tuple[str, str]],
        seconds: float,
        interval: float | None = None,
        *,
        profiling: bool = False,
    ) -> Phase:
        """Run a load from every client process at once; with ``profiling``, the server profiles itself."""
        self.loads += 1
        start_at = time.time() + 1.0  # time for every client process to open its connections
        loads = [
            Load(
                self.server.base,
                kind,
                list(conversations[index :: self.clients]),
                f"l{self.loads}",
                start_at,
                self.warmup,
                seconds,
                interval,
            )
            for index in range(self.clients)
        ]
        futures = [self.pool.submit(drive, load) for load in loads]
        time.sleep(max(start_at - time.time(), 0))
        if profiling:
            os.kill(self.server.pid, signal.SIGUSR1)
        cpu_started, machine_started = self.server.cpu_seconds(), machine_cpu_seconds()
        wall_started = time.perf_counter()
        tallies = [future.result(timeout=seconds + self.warmup + 120) for future in futures]
        if profiling:
            os.kill(self.server.pid, signal.SIGUSR2)
        wall = time.perf_counter() - wall_started
        server_cpu = (self.server.cpu_seconds() - cpu_started) / wall
        client_cpu = statistics.fmean(tally.cpu_share for tally in tallies)
        machine_cpu = (machine_cpu_seconds() - machine_started) / wall
        failures: Counter[str] = Counter()
        for tally in tallies:
            failures.update(tally.failures)
        return Phase(
            kind,
            seconds,
            [latency for tally in tallies for latency in tally.latencies_ms],
            failures,
            server_cpu,
            client_cpu,
            max(machine_cpu - server_cpu - client_cpu * self.clients, 0.0),
        )


async def start_conversations(server: ServerProcess, count: int) -> list[tuple[str, str]]:
    """``count`` conversations started by the welcome event: (id, session) each."""
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(base_url=server.base, limits=limits, timeout=30) as client:
        semaphore = asyncio.Semaphore(10)

        async def start() -> tuple[str, str]:
            async with semaphore:
                response = await client.post(
                    "/v1/conversations",
                    json={"event": "welcome"},
                    headers={"Authorization": f"Bearer {server.sdk_key}"},
                )
            response.raise_for_status()
            answer = response.json()
            return answer["conversation_id"], answer["session"]

        return list(await asyncio.gather(*(start() for _ in range(count))))


def saturation_and_pace(bench: Bench, conversations: list[tuple[str, str]], args: argparse.Namespace) -> None:
    print(f"{len(conversations)} conversations over {args.clients} client processes, one connection each\n")
    echo: list[Phase] = []
    turns: list[Phase] = []
    for round_number in range(1, args.rounds + 1):
        for kind, phases in (("echo", echo), ("turns", turns)):
            phase = bench.run(kind, conversations, args.seconds)
            phases.append(phase)
            print(phase.line(f"saturated, round {round_number}"))
    echo_rate = statistics.median(phase.rate for phase in echo)
    turn_rate = statistics.median(phase.rate for phase in turns)
    ratio = turn_rate / echo_rate if echo_rate else math.nan

    offered = turn_rate * args.pace
    interval = len(conversations) / offered if offered else 1.0
    print()
    paced = {kind: bench.run(kind, conversations, args.seconds, interval) for kind in ("echo", "turns")}
    for phase in paced.values():
        print(phase.line(f"paced at {offered:,.0f}/s"))
    turn_p99 = paced["turns"].percentile(99)

    turn_cpu = statistics.median(phase.server_cpu_ms for phase in turns)
    echo_cpu = statistics.median(phase.server_cpu_ms for phase in echo)
    print(f"\nchat turns, saturated:      {turn_rate:8,.0f} turns/s (median of {args.rounds} rounds)")
    print(f"bare JSON echo, saturated:  {echo_rate:8,.0f} requests/s")
    # CPU per request barely moves when other processes take the cores: a steadier view of the cost of a turn.
    print(
        f"server CPU per request:     {turn_cpu:8.2f} ms a turn, {echo_cpu:.2f} ms an echo "
        f"(ratio {echo_cpu / turn_cpu if turn_cpu else math.nan:.2f})"
    )
    print(
        f"ratio turns / echo:         {ratio:8.2f}   (target >= {RATIO_TARGET}) {_verdict(ratio >= RATIO_TARGET)}"
    )
    print(
        f"turn p99 at {args.pace:.0%} load:       {turn_p99:8.1f} ms (target <= {TURN_P99_TARGET_MS:.0f} ms) "
        f"{_verdict(turn_p99 <= TURN_P99_TARGET_MS)}   echo p99 at the same load: {paced['echo'].percentile(99):.1f} ms"
    )


async def long_conversations(server: ServerProcess, long_turns: int, samples: int) -> None:
    """p50 of turn ``long_turns`` (and on) of one conversation against p50 of turn 10 of fresh ones."""
    sdk = {"Authorization": f"Bearer {server.sdk_key}"}
    async with httpx.AsyncClient(
        base_url=server.base, limits=httpx.Limits(max_connections=12), timeout=30
    ) as client:

        async def start() -> tuple[str, dict[str, str]]:
            response = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
            response.raise_for_status()
            answer = response.json()
            return answer["conversation_id"], {"Authorization": f"Bearer {answer['session']}"}

        async def turn(conversation: tuple[str, dict[str, str]], message_id: str) -> float:
            conversation_id, headers = conversation
            sent = time.perf_counter()
            response = await client.post(
                f"/v1/conversations/{conversation_id}/messages",
                json={"text": TEXT, "client_message_id": message_id},
                headers=headers,
            )
            response.raise_for_status()
            return (time.perf_counter() - sent) * 1000

        async def advance(conversation: tuple[str, dict[str, str]], turns: int, tag: str) -> None:
            for number in range(1, turns + 1):
                await turn(conversation, f"{tag}-{number}")

        long = await start()
        short = [await start() for _ in range(samples)]
        prepared = time.perf_counter()
        semaphore = asyncio.Semaphore(10)

        async def advance_short(index: int) -> None:
            async with semaphore:
                await advance(short[index], 9, f"s{index}")

        await asyncio.gather(
            advance(long, long_turns - 1, "long"), *(advance_short(i) for i in range(samples))
        )
        print(
            f"prepared 1 conversation at turn {long_turns - 1:,} and {samples} at turn 9 "
            f"in {time.perf_counter() - prepared:.1f} s"
        )

        at_long: list[float] = []
        at_ten: list[float] = []
        for index in range(samples):
            # One after the other, in alternating order: both see the same server, database and noise.
            pair = [(long, f"long-{long_turns + index}", at_long), (short[index], f"s{index}-10", at_ten)]
            for conversation, message_id, into in pair if index % 2 == 0 else reversed(pair):
                into.append(await turn(conversation, message_id))

    p50_long, p50_ten = statistics.median(at_long), statistics.median(at_ten)
    ratio = p50_long / p50_ten
    print(f"turn 10 (one per conversation, {samples}):      p50 {p50_ten:6.2f} ms")
    print(f"turn {long_turns:,}-{long_turns + samples - 1:,} (one conversation):  p50 {p50_long:6.2f} ms")
    print(f"ratio:  {ratio:.2f}   (target <= {LONG_RATIO_TARGET}) {_verdict(ratio <= LONG_RATIO_TARGET)}")


def profile(
    bench: Bench, conversations: list[tuple[str, str]], args: argparse.Namespace, session: Path
) -> None:
    """A saturated turns load with the server profiling itself; its report on the hottest code."""
    phase = bench.run("turns", conversations, args.seconds, profiling=True)
    print(phase.line("saturated, profiled"))
    deadline = time.monotonic() + 60
    while not session.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    report_profile(session, args.profile)


def report_profile(session_file: Path, directory: Path) -> None:
    """The call tree (HTML), then the functions and the packages with the most own time."""
    from pyinstrument.renderers import HTMLRenderer
    from pyinstrument.session import Session

    session = Session.load(session_file)
    html = directory / "server.html"
    html.write_text(HTMLRenderer().render(session))
    own: defaultdict[str, float] = defaultdict(float)
    by_package: defaultdict[str, float] = defaultdict(float)
    root = session.root_frame()
    frames = [root] if root is not None else []
    while frames:
        frame = frames.pop()
        frames.extend(frame.children)
        seconds = frame.total_self_time  # includes its synthetic "[self]" children, skipped below
        if frame.is_synthetic or seconds <= 0:
            continue
        own[f"{frame.function}  {frame.file_path_short}:{frame.line_no}"] += seconds
        by_package[_package(frame.file_path)] += seconds
    total = sum(own.values()) or 1.0
    print(
        f"\nprofile of the server's main thread ({session.duration:.1f} s, {session.sample_count} samples): {html}"
    )
    print(
        "(SQLite runs in the store's own threads: the main thread hands each call over, and the wait is not "
        "sampled)\n"
    )
    print("own time by package:")
    for package, seconds in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        print(f"  {seconds / total:6.1%}  {package}")
    print("\nfunctions with the most own time:")
    for function, seconds in sorted(own.items(), key=lambda item: -item[1])[:25]:
        print(f"  {seconds / total:6.1%}  {function}")


def _package(path: str | None) -> str:
    """``sqlalchemy``, ``rejoinder.store``, ``asyncio``…: where a file belongs."""
    if not path or path.startswith("<"):
        return "C functions called from Python" if path == "<built-in>" else (path or "?")
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].removesuffix(".py")
    if "rejoinder" in parts:
        index = parts.index("rejoinder")
        return ".".join(part.removesuffix(".py") for part in parts[index : index + 2])
    if "python3" in path:
        # Runner.run's own time is the event loop (uvloop, in C): polling sockets and running callbacks.
        return (
            "the event loop (uvloop, C)"
            if path.endswith("asyncio/runners.py")
            else f"stdlib {Path(path).stem}"
        )
    return Path(path).name


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each load")
    parser.add_argument("--rounds", type=int, default=2, help="alternating echo/turns rounds (default 2)")
    parser.add_argument(
        "--conversations", type=int, default=100, help="concurrent conversations (default 100)"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--pace", type=float, default=0.5, help="paced load, as a share of saturated turns/s")
    parser.add_argument("--long", action="store_true", help="also: turn 1,000 against turn 10")
    parser.add_argument("--long-only", action="store_true", help="only the long-conversation measurement")
    parser.add_argument("--long-turns", type=int, default=1000)
    parser.add_argument(
        "--samples", type=int, default=200, help="samples of each turn in --long (default 200)"
    )
    parser.add_argument(
        "--log-level", default="info", help="the server's log level (default: info, as served)"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile the server under load; reports in DIR"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rejoinder-bench-") as tmp:
        workdir = Path(tmp)
        session = None
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            session = args.profile.resolve() / "server.pyisession"
            session.unlink(missing_ok=True)
        spawn = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(args.clients, mp_context=spawn) as pool,
            serve_shop(workdir, log_level=args.log_level, profile=session) as server,
        ):
            list(pool.map(_ready, range(args.clients)))
            print(
                f"server: pid {server.pid} at {server.base}, SQLite in {workdir}, log level {args.log_level}"
            )
            bench = Bench(pool, server, args.clients, args.warmup)
            if not args.long_only:
                conversations = asyncio.run(start_conversations(server, args.conversations))
                if session is not None:
                    profile(bench, conversations, args, session)
                else:
                    saturation_and_pace(bench, conversations, args)
            if args.long or args.long_only:
                print()
                asyncio.run(long_conversations(server, args.long_turns, args.samples))


if __name__ == "__main__":
    main()
