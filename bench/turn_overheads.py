"""What two pieces of bookkeeping cost a turn: the turn meter (``TurnMeter``, statistics counted in memory) and
``Keys.find``'s background write of a key's ``last_used_at``.

In process, on a temporary SQLite database, through the real app (lifespan, middleware, routes) over httpx's
ASGITransport. Every variant runs in every round, a block of requests each, in an order drawn anew each round, so
that all see the same machine and what one leaves behind falls on no other one always; the figures are medians and
ratios against the baseline of the same run. Two variants run twice, as controls: how far apart the same thing
measures here is the noise the other ratios are to be read against.

* Turn meter: ``ConversationService.send`` (a turn: load, engine, durable commit) with the meter, against the same
  turn with a meter that counts nothing. Also the meter's own call alone (the mean over a batch of calls, in the
  same rounds), as a share of the median turn.
* ``last_used_at``: starting a conversation over HTTP (``POST /v1/conversations``, the turn that authenticates
  with the SDK key), timed until the background write is done too, three ways: as served (the key remembered
  for ``KEY_CACHE_SECONDS``, its use written at most once a ``LAST_USED_PRECISION``); the key read from the store
  on every request but its use not written; read and written on every request (the worst case, which the
  precision makes happen once a minute per key and worker). The last two also timed until the answer only, which
  is what the client waits for.

    python bench/turn_overheads.py [--rounds 40] [--per-round 25]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.service import ConversationService
from rejoinder.service import keys as keys_module
from rejoinder.service.keys import Keys, create_keys
from rejoinder.service.stats import TurnMeter
from rejoinder.skills import load_bot
from rejoinder.store import Store

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"
METER_CALLS = 2_000  # calls timed together, as one sample of the meter alone


class NullMeter(TurnMeter):
    """A meter that counts nothing: the turn without its statistics."""

    def turn(self, bot_id: str, seconds: float) -> None:
        pass


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def meter_calls(meter: TurnMeter) -> float:
    """The mean seconds of one ``TurnMeter.turn`` call over a batch (two bots, latencies over every bucket)."""
    started = time.perf_counter()
    for index in range(METER_CALLS):
        meter.turn("shop" if index % 2 else "other", (index % 500) / 1000)
    return (time.perf_counter() - started) / METER_CALLS


async def measure(rounds: int, per_round: int) -> dict[str, float]:
    """The median seconds of each variant."""
    with tempfile.TemporaryDirectory(prefix="rejoinder-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(
            database_url=url,
            redis_url=None,
            quota_starts_per_ip=0,
            quota_starts_per_bot=0,
            quota_messages_per_ip=0,
            quota_messages_per_bot=0,
        )
        app = create_app(
            {"shop": load_bot(SHOP)},
            store=Store.from_url(url),
            settings=settings,
            environ={"SHOP_BACKEND": "http://127.0.0.1:9"},
        )
        async with app.router.lifespan_context(app):
            service: ConversationService = app.state.service
            store: Store = app.state.store
            metered = service.meter
            unmetered = NullMeter(service.clock)
            issued = await create_keys(store, "shop", now=datetime.now(UTC))
            sdk = {"Authorization": f"Bearer {issued.sdk_key}"}
            served_keys: Keys = app.state.keys
            uncached = Keys(store, cache_seconds=0)
            precision = keys_module.LAST_USED_PRECISION
            conversation_id = (await service.start("shop", event="welcome")).conversation_id
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            client = httpx.AsyncClient(transport=transport, base_url="http://rejoinder.bench")

            def turn(meter: TurnMeter) -> Callable[[], Awaitable[float]]:
                async def send() -> None:
                    service.meter = meter
                    await service.send(conversation_id, text="something else")

                return lambda: timed(send)

            def start(
                keys: Keys, write_after: timedelta, *, settled: bool = True
            ) -> Callable[[], Awaitable[float]]:
                """A start, timed until the background write is done too (``settled``) or until its answer."""

                async def request() -> None:
                    app.state.keys = keys
                    keys_module.LAST_USED_PRECISION = write_after
                    answer = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
                    if answer.status_code != 201:
                        raise RuntimeError(f"start answered {answer.status_code}: {answer.text}")
                    if settled:
                        await keys.settled()

                async def answered() -> float:
                    seconds = await timed(request)
                    await keys.settled()  # not timed: the write of the next request finds none under way
                    return seconds

                return (lambda: timed(request)) if settled else answered

            variants = {
                "turn, meter": turn(metered),
                "turn, meter (again)": turn(metered),
                "turn, no meter": turn(unmetered),
                "one meter call alone": lambda: meter_calls(TurnMeter(service.clock)),
                "start, as served": start(served_keys, precision),
                "start, as served (again)": start(served_keys, precision),
                "start, key read, no write": start(uncached, timedelta.max),
                "start, key read and written": start(uncached, timedelta(0)),
                "start, key read, no write, answer": start(uncached, timedelta.max, settled=False),
                "start, key read and written, answer": start(uncached, timedelta(0), settled=False),
            }
            samples: dict[str, list[float]] = {name: [] for name in variants}
            order = random.Random(7)
            try:
                for round_index in range(rounds + 1):  # round 0 warms up
                    names = list(variants)
                    order.shuffle(names)
                    for name in names:
                        for _ in range(per_round):
                            seconds = await variants[name]()
                            if round_index:
                                samples[name].append(seconds)
            finally:
                keys_module.LAST_USED_PRECISION = precision
                app.state.keys = served_keys
                service.meter = metered
                await client.aclose()
    return {name: statistics.median(values) for name, values in samples.items()}


def report(rounds: int, per_round: int, p50: dict[str, float]) -> None:
    print(f"{rounds} rounds of {per_round} of each, medians:\n")
    for name, value in p50.items():
        print(f"  {name:<38} {value * 1000:9.4f} ms")
    write = p50["start, key read and written"] - p50["start, key read, no write"]
    starts_per_minute = 60 / p50["start, as served"]
    print(
        "\nthe noise (the same variant twice, in blocks of their own):"
        f"\n  turn {p50['turn, meter'] / p50['turn, meter (again)']:.3f},"
        f" start {p50['start, as served'] / p50['start, as served (again)']:.3f}"
        "\nturn meter:"
        f"\n  ratio turn with meter / without: {p50['turn, meter'] / p50['turn, no meter']:.3f}"
        f"\n  one TurnMeter.turn call / median turn: {p50['one meter call alone'] / p50['turn, meter']:.4f}"
        "\nlast_used_at:"
        "\n  ratio start as served / key read, no write: "
        f"{p50['start, as served'] / p50['start, key read, no write']:.3f}"
        "\n  ratio start with the write / without (the once-a-minute start): "
        f"{p50['start, key read and written'] / p50['start, key read, no write']:.3f}"
        "\n  the same until the answer only (the write in the background): "
        f"{p50['start, key read and written, answer'] / p50['start, key read, no write, answer']:.3f}"
        f"\n  the write, spread over a minute of back-to-back starts ({starts_per_minute:,.0f}),"
        f" / median start: {write / starts_per_minute / p50['start, as served']:.6f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--per-round", type=int, default=25)
    args = parser.parse_args()
    report(args.rounds, args.per_round, asyncio.run(measure(args.rounds, args.per_round)))


if __name__ == "__main__":
    main()
