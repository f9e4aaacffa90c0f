"""The console's Overview: a bot's activity over the last 24 hours and the last 14 days, as charts with their
numbers (``?bot=`` picks the bot when the server runs several)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rejoinder.server import state
from rejoinder.server.console.charts import Chart, Series, bar_chart, line_chart
from rejoinder.server.console.pages import render
from rejoinder.server.console.session import PREFIX, Viewer
from rejoinder.service.overview import RESUME_OUTCOMES, Period

router = APIRouter()


@dataclass(frozen=True)
class Window:
    id: str
    heading: str
    charts: list[Chart]


@router.get(PREFIX)
async def overview(request: Request, _user: Viewer, bot: str | None = None) -> Response:
    service = state.service(request)
    bot_ids = sorted(request.app.state.bots)
    if not bot_ids:
        return render(request, "overview.html", {"bots": [], "selected": None, "windows": []})
    if bot is not None and bot not in bot_ids:
        return render(
            request,
            "error.html",
            {"title": "No such bot", "message": "This server runs no bot with that id."},
            status=404,
        )
    selected = service.bot(bot or bot_ids[0])
    activity = await service.activity(selected.id)
    bots = [{"id": bot_id, "name": service.bot(bot_id).config.name or bot_id} for bot_id in bot_ids]
    windows = [
        Window("hours", "Last 24 hours, by hour (UTC)", _charts("hours", activity.hourly, "%H:00", every=6)),
        Window("days", "Last 14 days, by day (UTC)", _charts("days", activity.daily, "%d %b", every=3)),
    ]
    context = {
        "bots": bots,
        "selected": {
            "id": selected.id,
            "name": selected.config.name or selected.id,
            "version": selected.version,
            "skills": len(selected.skills),
        },
        "windows": windows,
    }
    return render(request, "overview.html", context)


def _charts(window: str, periods: Sequence[Period], label: str, *, every: int) -> list[Chart]:
    names = [period.start.strftime(label) for period in periods]
    span = "the last 24 hours" if window == "hours" else "the last 14 days"
    started, resumed = sum(p.started for p in periods), sum(p.resumed for p in periods)
    outcomes = [
        Series(name, f"outcome-{outcome.replace('_', '-')}", [p.resumes[outcome] for p in periods])
        for outcome, name in RESUME_OUTCOMES
    ]
    attempts = {series.label: sum(v or 0 for v in series.values) for series in outcomes}
    failures, turns = sum(p.integrate_failures for p in periods), sum(p.turns for p in periods)
    total = Period(periods[0].start)
    for period in periods:
        total.latency = [a + b for a, b in zip(total.latency, period.latency, strict=True)]
    return [
        bar_chart(
            f"{window}-conversations",
            "Conversations started and resumed",
            names,
            [
                Series("started", "series-started", [p.started for p in periods]),
                Series("resumed", "series-resumed", [p.resumed for p in periods]),
            ],
            every=every,
            summary=f"In {span}: {started} conversations started, {resumed} resumed.",
        ),
        bar_chart(
            f"{window}-resumes",
            "Resumes by outcome",
            names,
            outcomes,
            stacked=True,
            every=every,
            summary=f"In {span}: {sum(attempts.values())} resume attempts: "
            + ", ".join(f"{count} {name}" for name, count in attempts.items())
            + ".",
        ),
        bar_chart(
            f"{window}-integrate",
            "Integrate failures",
            names,
            [Series("Integrate failures", "series-failures", [p.integrate_failures for p in periods])],
            every=every,
            summary=f"In {span}: {failures} Integrate calls failed, in {turns} turns.",
        ),
        line_chart(
            f"{window}-latency",
            "Turn latency",
            names,
            [
                Series("p50", "series-p50", [p.p50_ms for p in periods]),
                Series("p95", "series-p95", [p.p95_ms for p in periods]),
            ],
            every=every,
            summary=f"In {span}: median turn {_ms(total.p50_ms)}, 95th percentile {_ms(total.p95_ms)}"
            f" over {turns} turns.",
            fmt=_duration,
        ),
    ]


def _duration(milliseconds: float) -> str:
    return f"{milliseconds / 1000:.3g} s" if milliseconds >= 1000 else f"{milliseconds:.0f} ms"


def _ms(milliseconds: float | None) -> str:
    return "not measured" if milliseconds is None else _duration(milliseconds)
