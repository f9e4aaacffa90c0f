"""A bot's activity over the last 24 hours (by hour) and the last 14 days (by UTC day), for the console's Overview.

Three bounded reads: conversations started, resume attempts by outcome (the audit trail's ``resume`` events, but
for refusals by the rate limit, which are counted with the turn statistics so that a flood of them writes nothing
per request), and the turn statistics every server process adds up (:mod:`.stats`). Those lag by up to a minute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rejoinder.service.shared import ServiceParts
from rejoinder.service.stats import hour_of, percentile
from rejoinder.store.records import LATENCY_BUCKET_COLUMNS, HourCount, TurnStats
from rejoinder.tokens import TokenOutcome

HOURS = 24
DAYS = 14

# Resume outcomes in the order the Overview shows them, with their labels.
RESUME_OUTCOMES: tuple[tuple[str, str], ...] = (
    (TokenOutcome.OK.value, "ok"),
    (TokenOutcome.EXPIRED.value, "expired"),
    (TokenOutcome.REVOKED.value, "revoked"),
    (TokenOutcome.NOT_FOUND.value, "not found"),
    (TokenOutcome.USED_UP.value, "used up"),
    ("rate_limited", "rate limited"),
    (TokenOutcome.MALFORMED.value, "malformed"),
)


@dataclass
class Period:
    """One hour or one day of a bot's activity."""

    start: datetime
    started: int = 0
    resumes: dict[str, int] = field(default_factory=lambda: {outcome: 0 for outcome, _ in RESUME_OUTCOMES})
    turns: int = 0
    integrate_failures: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKET_COLUMNS))

    @property
    def resumed(self) -> int:
        """Conversations resumed: resumes that succeeded."""
        return self.resumes[TokenOutcome.OK.value]

    @property
    def p50_ms(self) -> float | None:
        return percentile(self.latency, 0.5)

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.latency, 0.95)


@dataclass(frozen=True)
class BotActivity:
    """A bot's activity: the last :data:`HOURS` hours and the last :data:`DAYS` days, oldest first, the current
    (partial) hour and day last."""

    bot_id: str
    now: datetime
    hourly: list[Period]
    daily: list[Period]


class Overviews(ServiceParts):
    """The console's Overview."""

    async def activity(self, bot_id: str) -> BotActivity:
        """``bot_id``'s activity up to now (:class:`~rejoinder.service.errors.UnknownBot` if it is not served)."""
        self.bots.bot(bot_id)
        now = self.clock()
        this_hour = hour_of(now)
        today = this_hour.replace(hour=0)
        hourly = [Period(this_hour - timedelta(hours=back)) for back in range(HOURS - 1, -1, -1)]
        daily = [Period(today - timedelta(days=back)) for back in range(DAYS - 1, -1, -1)]
        since = daily[0].start
        started = await self.store.conversations.started_by_hour(bot_id, since)
        resumes = await self.store.audit.resumes_by_hour(bot_id, since)
        turn_stats = await self.store.turn_stats.since(bot_id, since)
        for periods, start_of in ((hourly, hour_of), (daily, _day_of)):
            _fill(periods, start_of, started, resumes, turn_stats)
        return BotActivity(bot_id, now, hourly, daily)


def _day_of(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _fill(
    periods: list[Period],
    start_of: Callable[[datetime], datetime],
    started: Iterable[HourCount],
    resumes: Iterable[HourCount],
    turn_stats: Iterable[TurnStats],
) -> None:
    by_start = {period.start: period for period in periods}
    for count in started:
        if (period := by_start.get(start_of(count.hour))) is not None:
            period.started += count.count
    for count in resumes:
        if (period := by_start.get(start_of(count.hour))) is not None and count.outcome in period.resumes:
            period.resumes[count.outcome] += count.count
    for stats in turn_stats:
        if (period := by_start.get(start_of(stats.hour))) is not None:
            period.turns += stats.turns
            period.integrate_failures += stats.integrate_failures
            period.resumes["rate_limited"] += stats.rate_limited_resumes
            period.latency = [a + b for a, b in zip(period.latency, stats.latency, strict=True)]
