"""Hourly activity in the store: turn statistics added up across server processes, conversations and resumes
counted by hour."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rejoinder.service.stats import TurnMeter, percentile
from rejoinder.store import Store, StoreUnavailable
from rejoinder.store.records import LATENCY_BOUNDS_MS, NewAudit
from tests.store.factories import BOT, NOW, start


class Clock:
    def __init__(self) -> None:
        self.now = NOW + timedelta(minutes=10)

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


async def test_two_workers_flushing_add_up_in_one_row_per_bot_and_hour(store: Store) -> None:
    clock = Clock()
    first, second = TurnMeter(clock), TurnMeter(clock)
    for _ in range(3):
        first.turn(BOT, 0.020)  # the 25 ms bucket
    first.integrate_failed(BOT)
    second.turn(BOT, 0.3)  # the 500 ms bucket
    second.turn(BOT, 60.0)  # slower than every bound
    second.resume_rate_limited(BOT)
    second.turn("other", 0.02)

    assert await first.flush(store) == 1
    assert await second.flush(store) == 2
    first.turn(BOT, 0.02)
    await first.flush(store)
    assert await first.flush(store) == 0  # nothing new: nothing written

    stats = await store.turn_stats.since(BOT, NOW)
    assert len(stats) == 1
    [row] = stats
    assert (row.hour, row.turns, row.integrate_failures, row.rate_limited_resumes) == (NOW, 6, 1, 1)
    assert row.latency[0] == 4
    assert row.latency[LATENCY_BOUNDS_MS.index(500)] == 1
    assert row.latency[-1] == 1
    assert [s.turns for s in await store.turn_stats.since("other", NOW)] == [1]

    clock.now += timedelta(hours=1)
    first.turn(BOT, 0.02)
    await first.flush(store)
    assert [(s.hour, s.turns) for s in await store.turn_stats.since(BOT, NOW)] == [
        (NOW, 6),
        (NOW + timedelta(hours=1), 1),
    ]


async def test_a_flush_the_store_refuses_is_kept_for_the_next(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = TurnMeter(Clock())
    meter.turn(BOT, 0.02)

    async def refuse(stats: object) -> None:
        raise StoreUnavailable("database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(store.turn_stats, "add", refuse)
        with pytest.raises(StoreUnavailable):
            await meter.flush(store)
    meter.turn(BOT, 0.02)
    await meter.flush(store)

    [row] = await store.turn_stats.since(BOT, NOW)
    assert row.turns == 2


def test_percentiles_come_from_the_bucket_counts() -> None:
    buckets = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    assert percentile(buckets, 0.5) is None
    buckets[LATENCY_BOUNDS_MS.index(100)] = 10  # ten turns between 50 and 100 ms
    buckets[LATENCY_BOUNDS_MS.index(1000)] = 10  # ten between 500 ms and 1 s
    assert percentile(buckets, 0.5) == 100  # the tenth of twenty: the top of the first bucket
    assert percentile(buckets, 0.25) == 75  # halfway through it
    assert percentile(buckets, 0.95) == 950  # nine tenths through the second
    buckets[-1] = 100
    assert percentile(buckets, 0.95) == LATENCY_BOUNDS_MS[-1]  # slower than the last bound: given as it


async def test_conversations_and_resumes_are_counted_by_hour(store: Store) -> None:
    await start(store, "cnv_a", now=NOW)
    await start(store, "cnv_b", now=NOW + timedelta(minutes=59))
    await start(store, "cnv_c", now=NOW + timedelta(hours=2, minutes=1))
    await start(store, "cnv_x", now=NOW, bot_id="other")
    for minutes, outcome in ((1, "ok"), (2, "ok"), (3, "token_expired"), (70, "ok")):
        await store.audit.add(NewAudit("resume", BOT, outcome, NOW + timedelta(minutes=minutes)))
    await store.audit.add(NewAudit("token_issued", BOT, "ok", NOW))
    await store.audit.add(NewAudit("resume", BOT, "ok", NOW - timedelta(hours=1)))

    started = await store.conversations.started_by_hour(BOT, NOW)
    resumes = await store.audit.resumes_by_hour(BOT, NOW)

    assert sorted((c.hour, c.count) for c in started) == [(NOW, 2), (NOW + timedelta(hours=2), 1)]
    assert sorted((c.hour, c.outcome, c.count) for c in resumes) == [
        (NOW, "ok", 2),
        (NOW, "token_expired", 1),
        (NOW + timedelta(hours=1), "ok", 1),
    ]
