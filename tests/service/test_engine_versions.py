"""Engines of earlier bot versions are freed when unused lately, and loaded again for a conversation on one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rejoinder.service import EARLIER_VERSIONS_KEPT, ConversationService
from rejoinder.skills.loader import bot_version
from rejoinder.skills.model import Bot, BotConfig, Skill
from rejoinder.store import Store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def version(number: int) -> Bot:
    """Version ``number`` of a bot that asks a name, then thanks with the version's number."""
    skill = Skill.model_validate(
        {
            "id": "ask",
            "triggers": {"events": ["ask"], "default": True},
            "start": "name",
            "nodes": {
                "name": {"type": "question", "text": "Your name?", "save_to": "name", "next": "thanks"},
                "thanks": {"type": "end", "text": f"Thanks {{{{ name }}}} (v{number})"},
            },
        }
    )
    config = BotConfig(id="versions")
    skills = {"ask": skill}
    return Bot(config=config, skills=skills, version=bot_version(config, skills))


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ConversationService]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'versions.db'}")
    await store.upgrade()
    first = version(0)
    await store.bots.save_bot(first, NOW)
    service = ConversationService(store, {first.id: first}, clock=lambda: NOW)
    yield service
    await service.aclose()
    await store.close()


async def test_unused_engines_are_freed_and_a_conversation_on_one_still_finishes(
    service: ConversationService,
) -> None:
    started = await service.start("versions", event="ask")
    assert started.pending is not None
    for number in range(1, EARLIER_VERSIONS_KEPT + 6):
        newer = version(number)
        await service.store.bots.save_bot(newer, NOW)
        service.add_bot(newer)
    kept = [key for key in service.bots.kept() if key[0] == "versions"]
    assert len(kept) == EARLIER_VERSIONS_KEPT + 1  # the newest, and the earlier ones used last
    assert ("versions", version(0).version) not in service.bots.kept()

    answer = await service.send(started.conversation_id, text="Ada")
    assert [message.payload["text"] for message in answer.messages][-1] == "Thanks Ada (v0)"
    assert ("versions", version(0).version) in service.bots.kept()  # loaded again from the store
    assert len([key for key in service.bots.kept() if key[0] == "versions"]) == EARLIER_VERSIONS_KEPT + 1
