"""Turn statistics that outlive the process: counted in memory as turns run, added to the store once a minute.

Each server process keeps, per bot and hour, how many turns it ran, how many Integrate calls failed, how many resumes
the rate limit refused, and how long its turns took as counts per latency bucket. :meth:`TurnMeter.flush` adds them
to ``turn_stats`` in one transaction (the app calls it every :data:`FLUSH_INTERVAL` seconds and at shutdown), so many
workers share one row per bot and hour and no turn ever waits for a write. Percentiles come from the bucket counts.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from rejoinder.store import Store, StoreError
from rejoinder.store.records import LATENCY_BOUNDS_MS, LATENCY_BUCKET_COLUMNS, TurnStats

FLUSH_INTERVAL = 60.0

log = logging.getLogger("rejoinder.service")


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class _Counts:
    turns: int = 0
    integrate_failures: int = 0
    rate_limited_resumes: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKET_COLUMNS))


class TurnMeter:
    """This process's turn statistics not yet in the store."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._pending: dict[tuple[str, datetime], _Counts] = {}

    def _counts(self, bot_id: str) -> _Counts:
        key = (bot_id, hour_of(self._clock()))
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = _Counts()
        return counts

    def turn(self, bot_id: str, seconds: float) -> None:
        """A turn of ``bot_id`` ran and was saved in ``seconds``."""
        counts = self._counts(bot_id)
        counts.turns += 1
        counts.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000)] += 1

    def integrate_failed(self, bot_id: str) -> None:
        """An Integrate call of ``bot_id`` got no answer or an answer other than 2xx."""
        self._counts(bot_id).integrate_failures += 1

    def resume_rate_limited(self, bot_id: str) -> None:
        """A resume on ``bot_id`` was refused by the rate limit before its token was looked at."""
        self._counts(bot_id).rate_limited_resumes += 1

    def take(self) -> list[TurnStats]:
        """What was counted since the last take, emptied from the meter."""
        pending, self._pending = self._pending, {}
        return [
            TurnStats(
                bot_id=bot_id,
                hour=hour,
                turns=counts.turns,
                integrate_failures=counts.integrate_failures,
                rate_limited_resumes=counts.rate_limited_resumes,
                latency=tuple(counts.latency),
            )
            for (bot_id, hour), counts in pending.items()
        ]

    def give_back(self, stats: Sequence[TurnStats]) -> None:
        """Count ``stats`` again (a flush that failed), added to whatever was counted meanwhile."""
        for entry in stats:
            key = (entry.bot_id, entry.hour)
            counts = self._pending.get(key)
            if counts is None:
                counts = self._pending[key] = _Counts()
            counts.turns += entry.turns
            counts.integrate_failures += entry.integrate_failures
            counts.rate_limited_resumes += entry.rate_limited_resumes
            counts.latency = [a + b for a, b in zip(counts.latency, entry.latency, strict=True)]

    async def flush(self, store: Store) -> int:
        """Add what was counted to the store in one write; on failure it is kept for the next flush. Returns how
        many bot-hours were written."""
        stats = self.take()
        try:
            await store.turn_stats.add(stats)
        except BaseException:
            self.give_back(stats)
            raise
        return len(stats)


async def flush_loop(meter: TurnMeter, store: Store, interval: float = FLUSH_INTERVAL) -> None:
    """Flush ``meter`` every ``interval`` seconds until cancelled; a flush the store refuses is tried again later."""
    while True:
        await asyncio.sleep(interval)
        await flush_logged(meter, store)


async def flush_logged(meter: TurnMeter, store: Store) -> None:
    """Flush ``meter``; when the store refuses, log it and keep the counts for the next flush."""
    try:
        await meter.flush(store)
    except StoreError as error:
        log.warning("turn statistics kept for the next flush: %s", error)


def percentile(buckets: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0.5 for the median) in milliseconds of latencies counted in
    :data:`LATENCY_BOUNDS_MS` buckets, interpolated within its bucket; None when nothing was counted. A percentile
    in the last bucket (slower than the last bound) is given as that bound."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = fraction * total
    below = 0
    for index, count in enumerate(buckets):
        if count and below + count >= rank:
            if index >= len(LATENCY_BOUNDS_MS):
                return float(LATENCY_BOUNDS_MS[-1])
            lower = LATENCY_BOUNDS_MS[index - 1] if index else 0
            upper = LATENCY_BOUNDS_MS[index]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return float(LATENCY_BOUNDS_MS[-1])
