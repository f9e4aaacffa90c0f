"""The turn service: the imperative shell around the engine, for every edge (HTTP, WebSocket, CLI).

Its operations come in modules of one idea each — :mod:`.turns` (a customer's turn), :mod:`.resume` (resume,
sessions, tokens, erasure), :mod:`.bots` (which engine runs a conversation), :mod:`.overview` (a bot's activity by
hour and day) — over the state they share (:mod:`.shared`); :mod:`.admin` is what an operator reads. Its refusals
(:mod:`.errors`) name a problem type and no HTTP status: each edge answers them.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime

from rejoinder.expr.budget import DEFAULT_TIME_BUDGET
from rejoinder.realtime import Hub
from rejoinder.service.admin import (
    AdminReads,
    AuditFilters,
    ConversationFilters,
    ConversationView,
    TokenFilters,
)
from rejoinder.service.bots import EARLIER_VERSIONS_KEPT, BotVersions
from rejoinder.service.errors import (
    ClientMessageIdReused,
    ConversationNotFound,
    MessageTooLong,
    ServiceError,
    SessionRefused,
    TokenNotFound,
    TokenRefused,
    TurnConflict,
    UnknownBot,
)
from rejoinder.service.overview import Overviews
from rejoinder.service.resume import Actor, ResumeOutcome, Resumes
from rejoinder.service.shared import HttpPerformer, NewSession, utcnow
from rejoinder.service.turns import MAX_TEXT_CHARS, CustomerMessage, TurnOutcome, Turns, new_conversation_id
from rejoinder.skills.model import Bot
from rejoinder.store import Store

__all__ = [
    "EARLIER_VERSIONS_KEPT",
    "MAX_TEXT_CHARS",
    "Actor",
    "AuditFilters",
    "ClientMessageIdReused",
    "ConversationFilters",
    "ConversationNotFound",
    "ConversationService",
    "ConversationView",
    "CustomerMessage",
    "HttpPerformer",
    "MessageTooLong",
    "NewSession",
    "ResumeOutcome",
    "ServiceError",
    "SessionRefused",
    "TokenFilters",
    "TokenNotFound",
    "TokenRefused",
    "TurnConflict",
    "TurnOutcome",
    "UnknownBot",
    "new_conversation_id",
    "utcnow",
]


class ConversationService(Turns, Resumes, AdminReads, Overviews):
    """Starts, continues and resumes conversations for a set of loaded bots."""

    def __init__(
        self,
        store: Store,
        bots: Mapping[str, Bot],
        *,
        http: HttpPerformer | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        hub: Hub | None = None,
        turn_time_budget: float = DEFAULT_TIME_BUDGET,
    ):
        environment: Mapping[str, str] = os.environ if environ is None else environ
        super().__init__(
            store,
            BotVersions(store, environment, turn_time_budget),
            http=http,
            environ=environment,
            clock=clock,
            hub=hub,
        )
        self._locks = weakref.WeakValueDictionary[str, asyncio.Lock]()  # a turn holds its conversation's
        for bot in bots.values():
            self.add_bot(bot)

    def add_bot(self, bot: Bot) -> None:
        """Make ``bot`` the version new conversations start on; those begun on earlier versions keep theirs."""
        self.bots.add(bot)

    def bot(self, bot_id: str) -> Bot:
        return self.bots.bot(bot_id)

    async def aclose(self) -> None:
        await self.http.aclose()
