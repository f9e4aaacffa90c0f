"""Bots built from skills kept as JSON: a kept bot version, and a directory's bot overlaid with its changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rejoinder.skills.loader import bot_version
from rejoinder.skills.model import Bot, BotConfig, Skill


def skills_json(skills: Mapping[str, Skill]) -> dict[str, Any]:
    """Skills as kept: the JSON of each model, by id."""
    return {skill_id: skill.model_dump(mode="json", by_alias=True) for skill_id, skill in skills.items()}


def bot_from_json(config: BotConfig, version: str, skills: Mapping[str, Any]) -> Bot:
    """A kept bot version, run with the bot's current settings."""
    parsed = {skill_id: Skill.model_validate(data) for skill_id, data in skills.items()}
    return Bot(config=config, skills=parsed, version=version)


def compose(directory_bot: Bot, changes: Mapping[str, Mapping[str, Any] | None]) -> Bot:
    """The bot's own skills overlaid with its newest changes, each a skill's JSON (an upload adds or replaces it)
    or None (a deletion removes it)."""
    skills = dict(directory_bot.skills)
    for skill_id, definition in changes.items():
        if definition is None:
            skills.pop(skill_id, None)
        else:
            skills[skill_id] = Skill.model_validate(definition)
    return Bot(config=directory_bot.config, skills=skills, version=bot_version(directory_bot.config, skills))
