"""What every part of the turn service works with: the store, the bots, the outside world and the clock."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rejoinder.engine import ConversationState, HttpCall, HttpResponse, TurnContext
from rejoinder.integrations import IntegratePolicy, IntegrationClient
from rejoinder.realtime import Event, Hub
from rejoinder.service.bots import BotVersions
from rejoinder.service.stats import TurnMeter
from rejoinder.store import ConversationRecord, MessageRecord, SessionRecord, Store


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewSession:
    """A session to open: its public id, the hash of its secret, and how long it lasts."""

    id: str
    session_hash: str
    lifetime: timedelta

    def record(self, bot_id: str, conversation_id: str, token_id: str | None, now: datetime) -> SessionRecord:
        """The session as the store keeps it, opened at ``now`` (with ``token_id``, when a token opened it)."""
        return SessionRecord(
            id=self.id,
            session_hash=self.session_hash,
            bot_id=bot_id,
            conversation_id=conversation_id,
            token_id=token_id,
            created_at=now,
            expires_at=now + self.lifetime,
            revoked_at=None,
        )


class HttpPerformer(Protocol):
    """What performs the engine's outside calls: the real IntegrationClient, or a test's fake backend."""

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse: ...

    async def aclose(self) -> None: ...


class ServiceParts:
    """The state the service's operations share; each group of operations is a subclass of its own module."""

    def __init__(
        self,
        store: Store,
        bots: BotVersions,
        *,
        http: HttpPerformer | None,
        environ: Mapping[str, str] | None,
        clock: Callable[[], datetime],
        hub: Hub | None,
    ) -> None:
        self.store = store
        self.bots = bots
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.clock = clock
        self.http: HttpPerformer = http or IntegrationClient()
        # Where the conversation's events go (messages, typing, status, sessions ended); None publishes nothing.
        self.hub = hub
        # Turn statistics counted here until the app flushes them to the store.
        self.meter = TurnMeter(clock)

    def publish(self, conversation_id: str, *events: Event) -> None:
        """Send ``events`` to the conversation's subscribers, together (one message to Redis) and in order."""
        if self.hub is not None:
            self.hub.publish_nowait(conversation_id, *events)

    async def history(self, conversation_id: str, *, after: int = 0, limit: int = 100) -> list[MessageRecord]:
        """Up to ``limit`` of the conversation's messages with ``seq > after``, oldest first."""
        return await self.store.conversations.messages_after(conversation_id, after, limit)

    async def pending(self, conversation: ConversationRecord) -> dict[str, Any] | None:
        """What a stored conversation waits for, on the bot version it runs on."""
        engine = await self.bots.engine_for(conversation)
        pending = engine.pending(ConversationState.from_json(conversation.state))
        return pending.to_json() if pending else None

    def context(
        self, bot_id: str, conversation_id: str, started_at: datetime, now: datetime, user: dict[str, Any]
    ) -> TurnContext:
        allowed = self.bots.bot(bot_id).config.env
        env = {name: self.environ[name] for name in allowed if name in self.environ}
        return TurnContext(
            conversation_id=conversation_id, started_at=started_at, now=now, user=user, env=env
        )
