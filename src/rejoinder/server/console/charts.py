"""Charts drawn on the server as SVG: the geometry of bars and lines, for ``_charts.html`` to write out.

Nothing runs in the browser and nothing comes from another host: shapes carry classes from ``console.css`` (the
Content-Security-Policy allows no inline style). Every chart also carries its numbers as a table, for screen
readers and for anyone who wants the exact figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH = 480
HEIGHT = 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 22, 12, 26


@dataclass(frozen=True)
class Series:
    """One thing a chart shows: its name, its class in ``console.css`` and one value per period (None: none)."""

    label: str
    css: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Polyline:
    points: str
    css: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    css: str
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    """A chart ready to draw, with its text alternative (``summary`` and the ``columns``/``rows`` table)."""

    id: str
    title: str
    summary: str
    legend: list[Series]
    rects: list[Rect]
    lines: list[Polyline]
    dots: list[Dot]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    columns: list[str]
    rows: list[list[str]]
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = _LEFT
    plot_right: int = WIDTH - _RIGHT
    plot_bottom: int = HEIGHT - _BOTTOM


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value`` (1 for nothing to show)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def bar_chart(
    chart_id: str,
    title: str,
    periods: Sequence[str],
    series: Sequence[Series],
    *,
    stacked: bool = False,
    every: int = 1,
    summary: str,
    fmt: Callable[[float], str] = lambda value: f"{value:g}",
) -> Chart:
    """Bars per period: side by side for each series, or ``stacked`` in one bar."""
    count = len(periods)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(count)]
    tallest = max(totals if stacked else [v or 0 for s in series for v in s.values], default=0)
    top = nice_ceiling(tallest)
    plot_width, plot_height = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_width / max(count, 1)
    rects: list[Rect] = []
    for index, period in enumerate(periods):
        left = _LEFT + index * slot + slot * 0.1
        base = float(HEIGHT - _BOTTOM)
        width = slot * 0.8 if stacked else slot * 0.8 / max(len(series), 1)
        for position, each in enumerate(series):
            value = each.values[index] or 0
            if value <= 0:
                continue
            height = plot_height * value / top
            x = left if stacked else left + position * width
            y = base - height
            rects.append(
                Rect(_r(x), _r(y), _r(width), _r(height), each.css, f"{period}: {fmt(value)} {each.label}")
            )
            if stacked:
                base = y
    return Chart(
        id=chart_id,
        title=title,
        summary=summary,
        legend=list(series),
        rects=rects,
        lines=[],
        dots=[],
        y_ticks=_y_ticks(top, fmt, whole=True),
        x_ticks=_x_ticks(periods, slot, every),
        columns=["Period", *(s.label for s in series)],
        rows=[[period, *(_cell(s.values[i], fmt) for s in series)] for i, period in enumerate(periods)],
    )


def line_chart(
    chart_id: str,
    title: str,
    periods: Sequence[str],
    series: Sequence[Series],
    *,
    every: int = 1,
    summary: str,
    fmt: Callable[[float], str],
) -> Chart:
    """A line per series through the periods that have a value; a period without one breaks the line."""
    count = len(periods)
    top = nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0))
    plot_width, plot_height = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_width / max(count, 1)
    lines: list[Polyline] = []
    dots: list[Dot] = []
    for each in series:
        run: list[str] = []
        for index, value in enumerate([*each.values, None]):
            if value is None:
                if len(run) > 1:
                    lines.append(Polyline(" ".join(run), each.css))
                run = []
                continue
            x, y = _LEFT + (index + 0.5) * slot, HEIGHT - _BOTTOM - plot_height * value / top
            run.append(f"{_r(x)},{_r(y)}")
            dots.append(Dot(_r(x), _r(y), each.css, f"{periods[index]}: {each.label} {fmt(value)}"))
    return Chart(
        id=chart_id,
        title=title,
        summary=summary,
        legend=list(series),
        rects=[],
        lines=lines,
        dots=dots,
        y_ticks=_y_ticks(top, fmt),
        x_ticks=_x_ticks(periods, slot, every),
        columns=["Period", *(s.label for s in series)],
        rows=[[period, *(_cell(s.values[i], fmt) for s in series)] for i, period in enumerate(periods)],
    )


def _y_ticks(top: float, fmt: Callable[[float], str], *, whole: bool = False) -> list[Tick]:
    """Ticks at the bottom, the middle and the top; counts (``whole``) skip a middle that is no whole number."""
    plot_height = HEIGHT - _TOP - _BOTTOM
    shares = (0, 1) if whole and (top / 2) % 1 else (0, 0.5, 1)
    return [Tick(_r(HEIGHT - _BOTTOM - plot_height * share), fmt(top * share)) for share in shares]


def _x_ticks(periods: Sequence[str], slot: float, every: int) -> list[Tick]:
    last = len(periods) - 1
    return [
        Tick(_r(_LEFT + (index + 0.5) * slot), period)
        for index, period in enumerate(periods)
        if (last - index) % every == 0
    ]


def _cell(value: float | None, fmt: Callable[[float], str]) -> str:
    return "–" if value is None else fmt(value)


def _r(value: float) -> float:
    return round(value, 1)
