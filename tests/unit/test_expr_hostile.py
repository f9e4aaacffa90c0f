"""A corpus of hostile expressions and templates: each is refused quickly, in little memory.

Each one, before the sandbox counted nested sizes and charged iterating filters, ran for seconds or built
hundreds of megabytes (the first took 13.9 s and 689 million characters). Now each must be refused within
100 ms of CPU time (scaled for a slower machine, at most threefold) with a traced peak under 16 MB.
tests/api/test_hostile_process.py sends the same corpus to a real server and checks /healthz meanwhile.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from rejoinder.expr import Expressions, LimitExceeded
from rejoinder.expr.budget import DEFAULT_TIME_BUDGET, MAX_STEPS
from tests.helpers.hostile import HOSTILE

REFUSED_WITHIN = (
    0.1  # seconds of CPU time on the machine the corpus was measured on (it takes 1 to 70 ms there)
)
MEMORY_BOUND = (
    16_000_000  # bytes traced at the peak (one 100,000-number list, which is allowed, is about 4 MB)
)
_REFERENCE_CPU = 0.02  # the reference loop below, on that machine


def _slowness() -> float:
    """How much slower this machine runs plain Python than the one the corpus was measured on (1 to 3)."""

    def reference() -> float:
        started = time.thread_time()
        total = 0
        for number in range(300_000):
            total += len(str(number))
        return time.thread_time() - started

    return min(max(min(reference() for _ in range(3)) / _REFERENCE_CPU, 1.0), 3.0)


CPU_BOUND = REFUSED_WITHIN * _slowness()


def attempt(exprs: Expressions, source: str) -> Callable[[], Any]:
    if source.startswith("{"):
        return lambda: exprs.render(source, {})
    return lambda: exprs.evaluate(source, {})


@pytest.mark.parametrize("source", HOSTILE)
def test_a_hostile_expression_is_refused_quickly_in_little_memory(source: str) -> None:
    exprs = Expressions()
    exprs.syntax_error(source, template=source.startswith("{"))  # compiling is not what is measured
    action = attempt(exprs, source)
    started = time.thread_time()
    with pytest.raises(LimitExceeded) as refused:
        action()
    spent = time.thread_time() - started
    assert spent < CPU_BOUND, f"{spent * 1000:.0f} ms of CPU before: {refused.value}"

    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded):
            action()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{peak / 1e6:.1f} MB at the peak"


def test_the_corpus_is_refused_by_counting_not_by_the_clock() -> None:
    """Each is stopped by steps or sizes, well before the turn's deadline would."""
    exprs = Expressions()
    for source in HOSTILE:
        # A minute of clock: on a loaded machine the default half second could run out first, and this asks
        # whether counting alone stops each one.
        with pytest.raises(LimitExceeded) as refused, exprs.turn(time_budget=60):
            attempt(exprs, source)()
        assert "evaluation took longer than" not in str(refused.value), source


def test_the_deadline_bounds_work_the_steps_do_not_see() -> None:
    """Python code the sandbox does not charge (here, a custom function) still stops at the turn's deadline."""

    def spin() -> int:
        total = 0
        for number in range(20_000):
            total += number
        return total

    exprs = Expressions({"spin": spin})
    source = "{% for i in range(10000) %}{% set x = spin() %}{% endfor %}"
    with exprs.turn(0.05):
        started = time.perf_counter()
        with pytest.raises(LimitExceeded, match=r"evaluation took longer than 0\.05 s"):
            exprs.render(source, {})
    assert time.perf_counter() - started < 0.05 + 0.5  # the next step after the deadline stops it


def test_a_turn_shares_one_budget_between_its_evaluations() -> None:
    exprs = Expressions()
    source = "{% for i in range(30000) %}{% endfor %}ok"
    assert exprs.render(source, {}) == "ok"  # alone, well within the budget
    with exprs.turn(DEFAULT_TIME_BUDGET) as spent:
        assert exprs.render(source, {}) == "ok"
        with pytest.raises(LimitExceeded, match=f"more than {MAX_STEPS:,}"):
            exprs.render(source, {})  # 2 x 30,000 steps is more than one turn's budget
    assert spent.steps > MAX_STEPS


@pytest.mark.parametrize(
    "source",
    [
        "range(1000)|map('string')|join(',')|length",
        "([range(1000)|list] * 100) | length",
        "(range(10000)|list|sum) + (range(10000)|list|max)",
        "{% for item in items %}{{ item.name | upper }}: {{ item.qty * 2 }}\n{% endfor %}",
        "dict(a=[1, 2], b=[3])|tojson",
        "str([range(100)|list] * 10)|length",
    ],
)
def test_ordinary_expressions_still_run(source: str) -> None:
    exprs = Expressions()
    scope = {"items": [{"name": f"item {n}", "qty": n} for n in range(200)]}
    if source.startswith("{"):
        assert exprs.render(source, scope)
    else:
        assert exprs.evaluate(source, scope)


def test_the_random_filter_is_charged_for_its_input() -> None:
    exprs = Expressions()
    with exprs.turn(DEFAULT_TIME_BUDGET) as small:
        exprs.evaluate("range(16) | list | random", {})
    with exprs.turn(DEFAULT_TIME_BUDGET) as large:
        exprs.evaluate("range(16000) | list | random", {})
    assert large.steps - small.steps >= 2 * 999  # building the list, and picking from it
