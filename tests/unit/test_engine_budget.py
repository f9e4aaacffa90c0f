"""A turn's expressions share one budget and one deadline; a skill's mistakes end the skill, never the turn."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from rejoinder.engine import ConversationState, Engine, StartEvent
from rejoinder.engine.runtime import FALLBACK_REPLY
from rejoinder.expr import Expressions
from rejoinder.expr.budget import MAX_STEPS
from tests.helpers.engine import ctx, make_bot, skill, texts


def assign_chain(*sources: str) -> dict[str, Any]:
    """A skill assigning each source in its own node, then saying the last value."""
    nodes: dict[str, Any] = {}
    for index, source in enumerate(sources):
        nodes[f"n{index}"] = {"type": "assign", "set": {f"v{index}": source}, "next": f"n{index + 1}"}
    nodes[f"n{len(sources)}"] = {"type": "end", "text": "done"}
    return skill(nodes, start="n0")


def start(engine: Engine) -> Any:
    return engine.step(ConversationState(), StartEvent("main"), ctx())


def test_the_step_budget_is_the_turns_not_each_expressions() -> None:
    heavy = "range(20000)|map('string')|list|length"  # about 40,000 steps: one fits, three do not
    assert texts(start(Engine(make_bot(assign_chain(heavy))))) == ["done"]
    result = start(Engine(make_bot(assign_chain(heavy, heavy, heavy))))
    assert texts(result) == [FALLBACK_REPLY]
    assert f"more than {MAX_STEPS:,}" in result.errors[0]
    assert "'n1'" in result.errors[0] or "'n2'" in result.errors[0]


def test_the_time_budget_bounds_a_cpu_heavy_turn() -> None:
    def spin() -> int:
        return sum(range(50_000))  # C code the step count does not see

    expressions = Expressions({"spin": spin})
    source = "{% for i in range(2000) %}{{ spin() and '' }}{% endfor %}"
    bot = make_bot(skill({"a": {"type": "message", "text": source, "next": "b"}, "b": {"type": "end"}}))
    engine = Engine(bot, expressions, time_budget=0.05)
    started = time.thread_time()
    result = start(engine)
    assert time.thread_time() - started < 1.0  # CPU: the whole loop would take seconds
    assert texts(result) == [FALLBACK_REPLY]
    assert "evaluation took longer than 0.05 s" in result.errors[0]


def test_waiting_for_a_busy_machine_does_not_count_against_the_time_budget() -> None:
    def descheduled() -> str:
        time.sleep(0.02)  # the thread waits as it would for a CPU on a loaded machine, computing nothing
        return ""

    expressions = Expressions({"descheduled": descheduled})
    source = "{% for i in range(10) %}{{ descheduled() }}{% endfor %}done"
    bot = make_bot(skill({"a": {"type": "message", "text": source, "next": "b"}, "b": {"type": "end"}}))
    result = start(Engine(bot, expressions, time_budget=0.05))  # 0.2 s of waiting, almost no CPU
    assert texts(result) == ["done"], result.errors


@pytest.mark.parametrize(
    ("node", "error"),
    [
        ({"type": "message", "text": "{% if true %}{{ 'x' | shout }}{% endif %}"}, "No filter named 'shout'"),
        (
            {"type": "message", "text": "{% if true %}{{ 'x' is truthy }}{% endif %}"},
            "No test named 'truthy'",
        ),
        ({"type": "assign", "set": {"t": "make_token(ttl='30m')"}}, "unknown function 'make_token'"),
        ({"type": "assign", "set": {"t": "(" * 1000 + "1" + ")" * 1000}}, "nested too deeply"),
        ({"type": "assign", "set": {"t": "+".join(["1"] * 3000)}}, "nested too deeply"),
    ],
)
def test_a_skill_that_was_never_validated_fails_as_a_skill_error(node: dict[str, Any], error: str) -> None:
    bot = make_bot(skill({"a": {**node, "next": "b"}, "b": {"type": "end", "text": "done"}}))
    result = start(Engine(bot))
    assert texts(result) == [FALLBACK_REPLY]
    assert error in result.errors[0]


def test_a_full_garbage_collection_during_a_turn_does_not_count_against_its_time_budget() -> None:
    heap = [[index] for index in range(400_000)]  # a long-lived process's heap: a full collection walks it
    collecting: list[float] = []

    def collect() -> str:
        started = time.thread_time()
        for _ in range(100):  # the collector runs in whichever thread allocates when the heap has grown
            gc.collect()
            if time.thread_time() - started > 0.1:
                break
        collecting.append(time.thread_time() - started)
        return ""

    expressions = Expressions({"collect": collect})
    source = "{{ collect() }}{% for i in range(100) %}{% endfor %}done"  # the loop reads the clock after
    bot = make_bot(skill({"a": {"type": "message", "text": source, "next": "b"}, "b": {"type": "end"}}))
    result = start(Engine(bot, expressions, time_budget=0.05))
    assert collecting[0] > 0.1, "the collections must outlast the budget for this test to mean anything"
    assert texts(result) == ["done"], result.errors
    del heap
