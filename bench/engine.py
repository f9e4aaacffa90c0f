"""Engine alone, in process: node executions per second on a realistic skill, against a plain Python loop.

The baseline does the same variable updates, branch and message formatting with dicts and f-strings, so the ratio
shows what the engine's interpretation (templates, expressions, state copies) costs on top of the work itself.

    python bench/engine.py [--turns 20000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from rejoinder.engine import ConversationState, CustomerText, Engine, StartEvent, TurnContext
from rejoinder.skills.model import Bot, BotConfig, Skill

SKILL = {
    "id": "basket",
    "triggers": {"events": ["basket"]},
    "start": "greet",
    "variables": {
        "name": {"default": "Ann"},
        "items": {"default": 0},
        "total": {"default": 0},
        "price": {"default": 12},
    },
    "nodes": {
        "greet": {"type": "message", "text": "Hi {{ name }}! Let's fill your basket.", "next": "add"},
        "add": {
            "type": "assign",
            "set": {"items": "items + 1", "total": "total + price * 2"},
            "next": "check",
        },
        "check": {
            "type": "condition",
            "branches": [{"if": "total > 100", "next": "big"}],
            "else": "small",
        },
        "big": {
            "type": "message",
            "text": "{{ items }} items, {{ total }} EUR: free shipping!",
            "next": "more",
        },
        "small": {"type": "message", "text": "{{ items }} items, {{ total }} EUR so far.", "next": "more"},
        "more": {
            "type": "question",
            "text": "Add another?",
            "save_to": "again",
            "choices": [
                {"label": "Yes", "value": "yes", "next": "add"},
                {"label": "No", "value": "no", "next": "bye"},
            ],
        },
        "bye": {"type": "end", "text": "Thanks, {{ name }}!"},
    },
}


def run_engine(turns: int) -> tuple[int, float]:
    skill = Skill.model_validate(SKILL)
    engine = Engine(Bot(config=BotConfig(id="bench"), skills={skill.id: skill}))
    now = datetime.now(UTC)
    ctx = TurnContext(conversation_id="cnv_bench", started_at=now, now=now)
    answer = CustomerText("yes")
    nodes = 0
    started = time.perf_counter()
    result = engine.step(ConversationState(), StartEvent("basket"), ctx)
    nodes += result.steps
    state = result.state
    for _ in range(turns):
        result = engine.step(state, answer, ctx)
        nodes += result.steps
        state = result.state
    return nodes, time.perf_counter() - started


def run_baseline(turns: int) -> tuple[int, float]:
    nodes = 0
    started = time.perf_counter()
    variables: dict[str, Any] = {"name": "Ann", "items": 0, "total": 0, "price": 12}
    messages = [f"Hi {variables['name']}! Let's fill your basket."]
    nodes += 1
    for _ in range(turns + 1):
        variables = dict(variables)
        variables["items"] = variables["items"] + 1
        variables["total"] = variables["total"] + variables["price"] * 2
        if variables["total"] > 100:
            messages.append(f"{variables['items']} items, {variables['total']} EUR: free shipping!")
        else:
            messages.append(f"{variables['items']} items, {variables['total']} EUR so far.")
        messages.append("Add another?")
        variables["again"] = "yes"
        nodes += 4
        messages = []
    return nodes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20_000)
    args = parser.parse_args()
    run_engine(500)  # warm the expression caches
    engine_nodes, engine_s = run_engine(args.turns)
    base_nodes, base_s = run_baseline(args.turns)
    engine_rate, base_rate = engine_nodes / engine_s, base_nodes / base_s
    print(f"engine:   {engine_nodes:>9,} nodes in {engine_s:.3f} s = {engine_rate:>12,.0f} nodes/s")
    print(
        f"baseline: {base_nodes:>9,} nodes in {base_s:.3f} s = {base_rate:>12,.0f} nodes/s (plain Python loop)"
    )
    print(f"ratio engine/baseline: {engine_rate / base_rate:.3f}   target: engine >= 50,000 nodes/s")


if __name__ == "__main__":
    main()
