"""The bots a service runs, each on its newest version, with the earlier versions that conversations still use.

A conversation finishes on the bot version it began on: its engine is kept at hand while used lately, and
loaded again from the store when it was let go.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping

from rejoinder.engine import STATE_VERSION_KEY, Engine
from rejoinder.integrations import IntegratePolicy
from rejoinder.service.errors import UnknownBot
from rejoinder.skills.model import Bot
from rejoinder.skills.stored import bot_from_json
from rejoinder.store import ConversationRecord, Store

log = logging.getLogger("rejoinder.service")

# Engines of earlier bot versions kept for the conversations still on them; others are loaded again from the store.
EARLIER_VERSIONS_KEPT = 8


class BotVersions:
    """Each bot's newest engine and Integrate policy, and the engines of earlier versions used lately."""

    def __init__(self, store: Store, environ: Mapping[str, str], turn_time_budget: float) -> None:
        self.store = store
        self.environ = environ
        self.turn_time_budget = turn_time_budget
        self._bots: dict[str, Bot] = {}
        self._engines: dict[str, Engine] = {}  # the newest version of each bot
        # Bot versions met lately, newest use last.
        self._versions: OrderedDict[tuple[str, str], Engine] = OrderedDict()
        self._policies: dict[str, IntegratePolicy] = {}

    def add(self, bot: Bot) -> None:
        """Make ``bot`` the version new conversations start on; those begun on earlier versions keep theirs."""
        self._bots[bot.id] = bot
        engine = self._versions.get((bot.id, bot.version)) or Engine(bot, time_budget=self.turn_time_budget)
        self._engines[bot.id] = engine
        self._keep(engine)
        self._policies[bot.id] = IntegratePolicy.from_settings(bot.config.integrate, self.environ)

    def bot(self, bot_id: str) -> Bot:
        try:
            return self._bots[bot_id]
        except KeyError:
            raise UnknownBot(f"no bot {bot_id!r} is loaded") from None

    def ids(self) -> list[str]:
        """The ids of the bots loaded."""
        return list(self._bots)

    def knows(self, bot_id: str) -> bool:
        return bot_id in self._bots

    def kept(self) -> list[tuple[str, str]]:
        """The (bot id, version) pairs whose engines are at hand, least recently used first."""
        return list(self._versions)

    def newest(self, bot_id: str) -> Engine:
        engine = self._engines.get(bot_id)
        if engine is None:
            raise UnknownBot(f"no bot {bot_id!r} is loaded")
        return engine

    def policy(self, bot_id: str) -> IntegratePolicy:
        return self._policies[bot_id]

    async def engine_for(self, conversation: ConversationRecord) -> Engine:
        """The engine of the bot version the conversation began on (the newest when that one is not kept)."""
        newest = self.newest(conversation.bot_id)
        version = conversation.state.get(STATE_VERSION_KEY)
        if not isinstance(version, str) or version == newest.bot.version:
            return newest
        engine = self._versions.get((conversation.bot_id, version))
        if engine is not None:
            self._versions.move_to_end((conversation.bot_id, version))
        else:
            skills = await self.store.bots.find_bot_skills(conversation.bot_id, version)
            if skills is None:
                log.warning(
                    "conversation %s began on version %s of bot %s, which is not kept; it goes on with the newest",
                    conversation.id,
                    version,
                    conversation.bot_id,
                )
                return newest
            engine = Engine(
                bot_from_json(newest.bot.config, version, skills), time_budget=self.turn_time_budget
            )
            self._keep(engine)
        return engine

    def _keep(self, engine: Engine) -> None:
        """Keep ``engine`` at hand; free those of earlier versions unused lately (the store still has them)."""
        self._versions[(engine.bot.id, engine.bot.version)] = engine
        self._versions.move_to_end((engine.bot.id, engine.bot.version))
        newest = {id(current) for current in self._engines.values()}
        earlier = [key for key, kept in self._versions.items() if id(kept) not in newest]
        for key in earlier[: max(len(earlier) - EARLIER_VERSIONS_KEPT, 0)]:
            del self._versions[key]
