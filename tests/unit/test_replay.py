"""The engine is deterministic: a turn run again with the same context gives the same result, to the byte."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from rejoinder.engine import ConversationState, Engine, StartEvent, StepResult, TurnContext
from rejoinder.skills.model import Bot, BotConfig, Skill

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# Everything a skill can draw at random (its functions and the `random` filter), and the clock, shown to the customer and sent to a backend.
_SKILL = {
    "id": "main",
    "start": "draw",
    "triggers": {"events": ["main"], "default": True},
    "nodes": {
        "draw": {
            "type": "assign",
            "set": {
                "token": "generate_token()",
                "roll": "random_int(1, 1000000000)",
                "ref": "uuid()",
                "pick": "range(10000) | random",
            },
            "next": "say",
        },
        "say": {
            "type": "message",
            "text": "roll {{ roll }}, ref {{ ref }}, pick {{ range(10000) | random }}, at {{ now() }}",
            "next": "call",
        },
        "call": {
            "type": "integrate",
            "method": "post",
            "url": "http://backend.test/draws/{{ ref }}",
            "headers": {"Authorization": "Bearer {{ token }}"},
            "send": ["token", "roll", "ref"],
        },
    },
}


def _turn(seed: int) -> StepResult:
    engine = Engine(Bot(config=BotConfig(id="test"), skills={"main": Skill.model_validate(_SKILL)}))
    context = TurnContext(conversation_id="cnv_1", started_at=NOW, now=NOW, random=random.Random(seed))
    return engine.step(ConversationState(), StartEvent("main"), context)


def test_a_turn_replayed_with_the_same_context_gives_the_same_result() -> None:
    first, again = _turn(seed=7), _turn(seed=7)

    assert first == again  # messages, state, effects, the HTTP call, pending, errors
    assert first.http_call is not None and again.http_call is not None
    assert first.http_call.token_secrets == again.http_call.token_secrets  # the secret sent is the same too
    assert not first.errors


def test_everything_random_in_a_turn_comes_from_its_context() -> None:
    first, other = _turn(seed=7), _turn(seed=8)
    drawn = ("token", "roll", "ref", "pick")

    for name in drawn:
        assert first.state.variables[name] != other.state.variables[name], f"{name} ignored the turn's source"
    assert first.http_call is not None and other.http_call is not None
    assert first.http_call.token_secrets != other.http_call.token_secrets
    assert first.effects != other.effects
