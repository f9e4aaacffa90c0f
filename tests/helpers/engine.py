"""Building blocks for driving the engine directly: a bot from skill dicts, a turn's context, what it said."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rejoinder.engine import StepResult, TurnContext
from rejoinder.skills.model import Bot, BotConfig, Skill

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_bot(*skills: dict[str, Any], **config: Any) -> Bot:
    """A bot "test" of ``skills`` (as dicts, validated here), with ``config`` in its BotConfig."""
    parsed = [Skill.model_validate(s) for s in skills]
    return Bot(config=BotConfig(id="test", **config), skills={s.id: s for s in parsed})


def ctx(**kw: Any) -> TurnContext:
    """The context of a turn of conversation cnv_1, started and taken at ``NOW``."""
    return TurnContext(conversation_id="cnv_1", started_at=NOW, now=NOW, **kw)


def texts(result: StepResult) -> list[str]:
    """The texts of the messages a step produced."""
    return [m.text for m in result.messages]


def skill(nodes: dict[str, Any], *, start: str = "a", id: str = "main", **extra: Any) -> dict[str, Any]:
    """A skill as a dict; its own id is its event, and "main" is the default skill."""
    return {
        "id": id,
        "start": start,
        "triggers": {"events": [id], "default": id == "main"},
        "nodes": nodes,
        **extra,
    }
