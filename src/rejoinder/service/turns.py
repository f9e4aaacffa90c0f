"""Turns: the customer's message → the engine → its outside calls → one short write → the turn's events.

One turn = read the conversation → run the engine → perform its outside calls → save everything the turn produced
in one transaction → publish. Turns of one conversation are serialised by a lock held for the whole turn, with the
store's version check at commit as the last line of defence. A message sent again (same ``client_message_id``) is
answered from the first time, and its outside calls are never made twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rejoinder.credentials import CONVERSATION_ID_PREFIX, new_public_id
from rejoinder.engine import (
    ConversationState,
    CustomerChoice,
    CustomerText,
    Engine,
    HttpResponse,
    Input,
    IssueToken,
    SkillError,
    StartEvent,
    StepResult,
    TurnContext,
)
from rejoinder.realtime import message_event, status_event, typing_event
from rejoinder.service.errors import (
    ClientMessageIdReused,
    ConversationNotFound,
    MessageTooLong,
    ServiceError,
    SessionRefused,
    TurnConflict,
)
from rejoinder.service.shared import NewSession, ServiceParts
from rejoinder.skills.model import Bot
from rejoinder.store import (
    CommittedTurn,
    ConversationRecord,
    DuplicateClientMessage,
    MessageRecord,
    NewMessage,
    NewToken,
    SessionRecord,
    TurnWrite,
    VersionConflict,
)

log = logging.getLogger("rejoinder.service")

MAX_TEXT_CHARS = 4000
_COMMIT_ATTEMPTS = 8
_RETRY_PAUSE = 0.005  # seconds, doubled each attempt and jittered: racing workers fall out of step


def new_conversation_id() -> str:
    return new_public_id(CONVERSATION_ID_PREFIX)


@dataclass(frozen=True)
class CustomerMessage:
    """What a customer sends in a turn: a text or a choice's value, with the id the client gave it."""

    text: str | None = None
    choice: str | None = None
    client_message_id: str | None = None


@dataclass
class TurnOutcome:
    """What a turn answered: the messages it stored (customer echo first), what the bot waits for, and its status."""

    conversation_id: str
    bot_id: str
    messages: list[MessageRecord]
    pending: dict[str, Any] | None
    status: str
    errors: list[str] = field(default_factory=list)
    replayed: bool = False  # answered from an earlier turn with the same client_message_id
    session: SessionRecord | None = (
        None  # the session a conversation was started with, when one was asked for
    )


# Called once a session may take the turn and before anything runs: refuses by raising (a quota, an origin).
Admit = Callable[[Bot], Awaitable[None]]


class Turns(ServiceParts):
    """Starting conversations and taking their turns."""

    _locks: weakref.WeakValueDictionary[str, asyncio.Lock]

    async def start(
        self,
        bot_id: str,
        *,
        event: str | None = None,
        text: str | None = None,
        variables: Mapping[str, Any] | None = None,
        user: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
        session: NewSession | None = None,
    ) -> TurnOutcome:
        """Start a conversation by a skill trigger (``event``) or by a first customer message (``text``).

        One store call: the conversation, its first turn and ``session`` (when given) are committed together.
        """
        if (event is None) == (text is None):
            raise ServiceError(
                "start a conversation with an event or with a first message, not both or neither"
            )
        check_length(text)
        began = time.perf_counter()
        engine = self.bots.newest(bot_id)
        conversation_id = new_conversation_id()
        state = ConversationState(bot_version=engine.bot.version)
        now = self.clock()
        ctx = self.context(bot_id, conversation_id, now, now, dict(user or {}))
        inbound: NewMessage | None = None
        if event is not None:
            first: Input = StartEvent(event, dict(variables or {}))
        else:
            assert text is not None
            first = CustomerText(text)
            inbound = NewMessage("customer", "text", {"text": text}, client_message_id)
            if variables:
                engine.check_settable(variables)
                state.variables.update(variables)
        result = await self._run(engine, bot_id, state, first, ctx)
        opened = session.record(bot_id, conversation_id, None, now) if session is not None else None
        committed = await self._commit(
            bot_id, conversation_id, None, result, inbound, ctx, now, user=dict(user or {}), session=opened
        )
        self.publish(conversation_id, *(message_event(record) for record in committed.messages))
        self.meter.turn(bot_id, time.perf_counter() - began)
        return replace(_outcome(bot_id, conversation_id, committed, result), session=opened)

    async def turn(
        self,
        session_hash: str,
        conversation_id: str,
        message: CustomerMessage,
        *,
        admit: Admit | None = None,
    ) -> TurnOutcome:
        """A customer's turn, for HTTP and WebSocket alike: the session may take it, then the turn and its events.

        Two store calls: the session, its conversation and whether the message was answered before, in one
        read; everything the turn produced, in one write.
        """
        _check_message(message)
        async with self._lock(conversation_id):
            session, conversation, answered = await self.store.credentials.session_for_turn(
                session_hash, message.client_message_id
            )
            bot = self.authorise(session, conversation_id)
            check_length(message.text)
            if admit is not None:
                await admit(bot)
            return await self._take(conversation_id, bot.id, message, conversation, answered)

    async def send(
        self,
        conversation_id: str,
        *,
        text: str | None = None,
        choice: str | None = None,
        client_message_id: str | None = None,
        bot_id: str | None = None,
    ) -> TurnOutcome:
        """Take one customer message (text or a choice's value) in a conversation, without a session (the CLI, tests)."""
        message = CustomerMessage(text, choice, client_message_id)
        _check_message(message)
        check_length(text)
        async with self._lock(conversation_id):
            conversation, answered = await self.store.conversations.for_turn(
                conversation_id, client_message_id
            )
            return await self._take(conversation_id, bot_id, message, conversation, answered)

    def authorise(self, session: SessionRecord | None, conversation_id: str) -> Bot:
        """The bot whose session this is, if the session may act on ``conversation_id`` now."""
        if session is None or not self.bots.knows(session.bot_id):
            raise SessionRefused(
                "unauthorized",
                "This session is not known. Resume the conversation with its token to get a new one.",
            )
        if session.revoked_at is not None:
            raise SessionRefused(
                "unauthorized",
                "This session has ended. Resume the conversation with its token to get a new one.",
            )
        if session.expires_at <= self.clock():
            raise SessionRefused(
                "unauthorized",
                "This session has expired. Resume the conversation with its token to get a new one.",
            )
        if session.conversation_id != conversation_id:
            raise SessionRefused("forbidden", "This session belongs to another conversation.")
        return self.bots.bot(session.bot_id)

    async def _take(
        self,
        conversation_id: str,
        bot_id: str | None,
        message: CustomerMessage,
        conversation: ConversationRecord | None,
        answered: bool,
    ) -> TurnOutcome:
        """Run the turn from the conversation as just read (under its lock), reading it again after a lost race."""
        text, choice, client_message_id = message.text, message.choice, message.client_message_id
        began = time.perf_counter()
        typing = False
        for attempt in range(_COMMIT_ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, _RETRY_PAUSE * 2**attempt))
                conversation, answered = await self.store.conversations.for_turn(
                    conversation_id, client_message_id
                )
            if conversation is None or (bot_id is not None and conversation.bot_id != bot_id):
                raise ConversationNotFound(f"no conversation {conversation_id!r}")
            if answered and client_message_id is not None:
                replay = await self._replay(conversation.bot_id, conversation_id, client_message_id, message)
                if replay is not None:
                    return replay
            if not typing:
                self.publish(conversation_id, typing_event())
                typing = True
            engine = await self.bots.engine_for(conversation)
            state = ConversationState.from_json(conversation.state)
            state.bot_version = engine.bot.version
            now = self.clock()
            ctx = self.context(
                conversation.bot_id, conversation_id, conversation.created_at, now, conversation.user
            )
            shown = text if text is not None else _choice_label(engine, state, choice or "")
            event: Input = CustomerText(text) if text is not None else CustomerChoice(choice or "")
            inbound = NewMessage(
                "customer",
                "text",
                {"text": shown} if text is not None else {"text": shown, "choice": choice},
                client_message_id,
            )
            try:
                result = await self._run(engine, conversation.bot_id, state, event, ctx)
                committed = await self._commit(
                    conversation.bot_id, conversation_id, conversation.version, result, inbound, ctx, now
                )
            except VersionConflict:
                log.info("turn on %s lost a version race; running it again", conversation_id)
                continue
            except DuplicateClientMessage:
                # Answered on another worker meanwhile.
                replay = await self._replay(
                    conversation.bot_id, conversation_id, client_message_id or "", message
                )
                if replay is not None:
                    return replay
                raise
            self.meter.turn(conversation.bot_id, time.perf_counter() - began)
            outcome = _outcome(conversation.bot_id, conversation_id, committed, result)
            if outcome.messages:
                self.publish(
                    conversation_id,
                    *(message_event(record) for record in committed.messages),
                    status_event(outcome.status, outcome.pending, outcome.messages[-1].seq),
                )
            return outcome
        raise TurnConflict("the conversation is changing too fast; send the message again")

    async def _run(
        self, engine: Engine, bot_id: str, state: ConversationState, event: Input, ctx: TurnContext
    ) -> StepResult:
        """Step the engine, performing its outside calls, until it waits for the customer or the skill ends."""
        result = engine.step(state, event, ctx)
        messages, effects, errors, steps = (
            list(result.messages),
            list(result.effects),
            list(result.errors),
            result.steps,
        )
        while result.http_call is not None:
            response: HttpResponse = await self.http.perform(result.http_call, self.bots.policy(bot_id))
            if not response.ok:
                self.meter.integrate_failed(bot_id)
            result = engine.step(result.state, response, ctx)
            messages += result.messages
            effects += result.effects
            errors += result.errors
            steps += result.steps
        for error in errors:
            # Only the fault's kind and node: its message may quote what the customer typed.
            described = error.for_log() if isinstance(error, SkillError) else "skill fault"
            log.warning("bot %s conversation %s: skill error: %s", bot_id, ctx.conversation_id, described)
        return StepResult(result.state, messages, effects, None, result.pending, steps, errors)

    async def _commit(
        self,
        bot_id: str,
        conversation_id: str,
        expected_version: int | None,
        result: StepResult,
        inbound: NewMessage | None,
        ctx: TurnContext,
        now: datetime,
        *,
        user: dict[str, Any] | None = None,
        session: SessionRecord | None = None,
    ) -> CommittedTurn:
        """Save what the turn produced; ``expected_version`` None creates the conversation (with ``session``)."""
        messages = [inbound] if inbound is not None else []
        messages += [NewMessage(m.sender, m.type, m.to_payload()) for m in result.messages]
        tokens = [
            NewToken(e.token_id, e.token_hash, now + timedelta(seconds=e.ttl_seconds), e.max_uses)
            for e in result.effects
            if isinstance(e, IssueToken)
        ]
        state = result.state
        committed = await self.store.conversations.commit_turn(
            TurnWrite(
                conversation_id=conversation_id,
                bot_id=bot_id,
                create=expected_version is None,
                expected_version=expected_version or 0,
                state=state.to_json(),
                status=state.status,
                skill_id=state.skill_id,
                node_id=state.node_id,
                messages=messages,
                tokens=tokens,
                pending=result.pending.to_json() if result.pending else None,
                now=now,
                user=user,
                session=session,
            )
        )
        for token in tokens:
            log.info("issued token %s for conversation %s", token.id, conversation_id)
        return committed

    async def _replay(
        self, bot_id: str, conversation_id: str, client_message_id: str, message: CustomerMessage
    ) -> TurnOutcome | None:
        """The earlier answer to ``client_message_id``, when the message sent now is the one stored then."""
        found = await self.store.conversations.turn_by_client_message_id(conversation_id, client_message_id)
        if found is None:
            return None
        messages, pending = found
        if not _same_message(messages[0].payload, message.text, message.choice):
            raise ClientMessageIdReused(
                f"client_message_id {client_message_id!r} was already used for another message in this "
                "conversation; give every new message an id of its own"
            )
        conversation = await self.store.conversations.get(conversation_id)
        status = conversation.status if conversation else "active"
        return TurnOutcome(conversation_id, bot_id, messages, pending, status, replayed=True)

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock


def check_length(text: str | None) -> None:
    if text is not None and len(text) > MAX_TEXT_CHARS:
        raise MessageTooLong(f"The message has {len(text)} characters; the limit is {MAX_TEXT_CHARS:,}.")


def _check_message(message: CustomerMessage) -> None:
    if (message.text is None) == (message.choice is None):
        raise ServiceError("send either text or a choice")


def _outcome(bot_id: str, conversation_id: str, committed: CommittedTurn, result: StepResult) -> TurnOutcome:
    return TurnOutcome(
        conversation_id=conversation_id,
        bot_id=bot_id,
        messages=committed.messages,
        pending=result.pending.to_json() if result.pending else None,
        status=result.state.status,
        errors=result.errors,
    )


def _choice_label(engine: Engine, state: ConversationState, value: str) -> str:
    pending = engine.pending(state)
    for choice in (pending.choices if pending else None) or []:
        if choice["value"] == value:
            return choice["label"]
    return value


def _same_message(stored: Mapping[str, Any], text: str | None, choice: str | None) -> bool:
    """Whether a stored customer message is the one now sent (a choice is kept with its label as text)."""
    if choice is not None:
        return stored.get("choice") == choice
    return "choice" not in stored and stored.get("text") == text
