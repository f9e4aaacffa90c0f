"""The turn service: the imperative shell around the engine.

One turn = load the conversation → run the engine → perform its outside calls → save everything the turn produced in
one short transaction → publish. Turns of one conversation are serialised by a lock held for the whole turn, with the
store's version check at commit as the last line of defence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rejoinder.credentials import CONVERSATION_ID_PREFIX, new_public_id
from rejoinder.engine import (
    STATE_VERSION_KEY,
    ConversationState,
    CustomerChoice,
    CustomerText,
    Engine,
    EngineError,
    HttpCall,
    HttpResponse,
    Input,
    IssueToken,
    SkillError,
    StartEvent,
    StepResult,
    TurnContext,
)
from rejoinder.expr.budget import DEFAULT_TIME_BUDGET
from rejoinder.integrations import IntegratePolicy, IntegrationClient
from rejoinder.skills.model import Bot, parse_duration
from rejoinder.store import (
    CommittedTurn,
    ConversationRecord,
    DuplicateClientMessage,
    MessageRecord,
    NewMessage,
    NewToken,
    SessionRecord,
    Store,
    TurnWrite,
    VersionConflict,
)
from rejoinder.store.access import NewAudit
from rejoinder.tokens import TokenOutcome, TokenRecord, hash_token, is_well_formed, judge, mint

log = logging.getLogger("rejoinder.service")

_COMMIT_ATTEMPTS = 8
_RETRY_PAUSE = 0.005  # seconds, doubled each attempt and jittered: racing workers fall out of step


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_conversation_id() -> str:
    return new_public_id(CONVERSATION_ID_PREFIX)


# Engines of earlier bot versions kept for the conversations still on them; others are loaded again from the store.
EARLIER_VERSIONS_KEPT = 8


class ServiceError(Exception):
    """A request the service refuses; ``code`` is the API's problem type."""

    code = "invalid_request"
    status = 400


class ConversationNotFound(ServiceError):
    code = "conversation_not_found"
    status = 404


class UnknownBot(ServiceError):
    code = "bot_not_found"
    status = 404


class TurnConflict(ServiceError):
    code = "conflict"
    status = 409


class ClientMessageIdReused(ServiceError):
    """A ``client_message_id`` already answered comes with another message: a client bug, never a replay."""

    code = "client_message_id_reused"
    status = 409


class _AlreadyAnswered(Exception):
    """A turn started from a snapshot found its message already answered before making an outside call."""


class TokenRefused(ServiceError):
    """A resume by token failed; ``outcome`` says how (API.md's table)."""

    def __init__(self, outcome: TokenOutcome, message: str):
        super().__init__(message)
        self.outcome = outcome
        self.code = outcome.value
        self.status = outcome.http_status


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


@dataclass
class ResumeOutcome:
    conversation_id: str
    bot_id: str
    token_id: str
    messages: list[MessageRecord]
    pending: dict[str, Any] | None
    status: str
    session: SessionRecord | None = None  # the session opened with it, when one was asked for


@dataclass(frozen=True)
class NewSession:
    """A session for a resume to open: its public id, the hash of its secret, and how long it lasts."""

    id: str
    session_hash: str
    lifetime: timedelta


def _session_record(session: NewSession, token: TokenRecord, now: datetime) -> SessionRecord:
    return SessionRecord(
        id=session.id,
        session_hash=session.session_hash,
        bot_id=token.bot_id,
        conversation_id=token.conversation_id,
        token_id=token.id,
        created_at=now,
        expires_at=now + session.lifetime,
        revoked_at=None,
    )


class HttpPerformer(Protocol):
    """What performs the engine's outside calls: the real IntegrationClient, or a test's fake backend."""

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse: ...

    async def aclose(self) -> None: ...


class ConversationService:
    """Starts, continues and resumes conversations for a set of loaded bots."""

    def __init__(
        self,
        store: Store,
        bots: Mapping[str, Bot],
        *,
        http: HttpPerformer | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[str, list[MessageRecord]], Any] | None = None,
        turn_time_budget: float = DEFAULT_TIME_BUDGET,
    ):
        self.store = store
        self.turn_time_budget = turn_time_budget
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.http: HttpPerformer = http or IntegrationClient()
        self.on_commit = on_commit
        self._bots: dict[str, Bot] = {}
        self._engines: dict[str, Engine] = {}  # the newest version of each bot
        # Bot versions met lately, newest use last: a conversation finishes on the version it began on.
        self._versions: OrderedDict[tuple[str, str], Engine] = OrderedDict()
        self._policies: dict[str, IntegratePolicy] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        for bot in bots.values():
            self.add_bot(bot)

    def add_bot(self, bot: Bot) -> None:
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

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------------------------ turns

    async def start(
        self,
        bot_id: str,
        *,
        event: str | None = None,
        text: str | None = None,
        variables: Mapping[str, Any] | None = None,
        user: Mapping[str, Any] | None = None,
        client_message_id: str | None = None,
    ) -> TurnOutcome:
        """Start a conversation by a skill trigger (``event``) or by a first customer message (``text``)."""
        if (event is None) == (text is None):
            raise ServiceError(
                "start a conversation with an event or with a first message, not both or neither"
            )
        engine = self._engine(bot_id)
        conversation_id = new_conversation_id()
        state = ConversationState(bot_version=engine.bot.version)
        now = self.clock()
        ctx = self._context(bot_id, conversation_id, now, now, dict(user or {}))
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
        committed = await self._commit(
            bot_id, conversation_id, None, result, inbound, ctx, now, user=dict(user or {}), created=True
        )
        return self._outcome(bot_id, conversation_id, committed, result)

    async def send(
        self,
        conversation_id: str,
        *,
        text: str | None = None,
        choice: str | None = None,
        client_message_id: str | None = None,
        bot_id: str | None = None,
        snapshot: ConversationRecord | None = None,
    ) -> TurnOutcome:
        """Take one customer message (text or a choice's value) and run the turn it causes.

        ``snapshot`` is the conversation as the caller has just read it (with its session): the turn starts from
        it instead of reading it again. Whether ``client_message_id`` was answered before is then learnt from
        the message's unique index at commit, or from the database before any Integrate call: a message sent
        twice is still answered from the first time, and its outside calls are never made twice.
        """
        if (text is None) == (choice is None):
            raise ServiceError("send either text or a choice")
        lock = self._lock(conversation_id)
        if lock.locked():
            # Another turn of this conversation is under way here: the snapshot is going stale.
            snapshot = None
        async with lock:
            for attempt in range(_COMMIT_ATTEMPTS):
                conversation: ConversationRecord | None
                if snapshot is not None:
                    conversation, answered, snapshot = snapshot, False, None
                    confirm = self._unanswered_check(conversation_id, client_message_id)
                else:
                    conversation, answered = await self.store.conversation_for_turn(
                        conversation_id, client_message_id
                    )
                    confirm = None
                if conversation is None or (bot_id is not None and conversation.bot_id != bot_id):
                    raise ConversationNotFound(f"no conversation {conversation_id!r}")
                if answered and client_message_id is not None:
                    replay = await self._replay(
                        conversation.bot_id, conversation_id, client_message_id, text, choice
                    )
                    if replay is not None:
                        return replay
                engine = await self._engine_for(conversation)
                state = ConversationState.from_json(conversation.state)
                state.bot_version = engine.bot.version
                now = self.clock()
                ctx = self._context(
                    conversation.bot_id, conversation_id, conversation.created_at, now, conversation.user
                )
                shown = text if text is not None else self._choice_label(engine, state, choice or "")
                event: Input = CustomerText(text) if text is not None else CustomerChoice(choice or "")
                inbound = NewMessage(
                    "customer",
                    "text",
                    {"text": shown} if text is not None else {"text": shown, "choice": choice},
                    client_message_id,
                )
                try:
                    try:
                        result = await self._run(
                            engine, conversation.bot_id, state, event, ctx, before_call=confirm
                        )
                    except EngineError:
                        # A message sent again is answered as the first time, not refused by the new state.
                        if confirm is not None:
                            await confirm()
                        raise
                    committed = await self._commit(
                        conversation.bot_id, conversation_id, conversation.version, result, inbound, ctx, now
                    )
                except VersionConflict:
                    log.info("turn on %s lost a version race; running it again", conversation_id)
                    await asyncio.sleep(random.uniform(0, _RETRY_PAUSE * 2**attempt))
                    continue
                except DuplicateClientMessage:
                    replay = await self._replay(
                        conversation.bot_id, conversation_id, client_message_id or "", text, choice
                    )
                    if replay is not None:
                        return replay
                    raise
                except _AlreadyAnswered:
                    replay = await self._replay(
                        conversation.bot_id, conversation_id, client_message_id or "", text, choice
                    )
                    if replay is not None:
                        return replay
                    continue  # gone again meanwhile (erased): read the conversation anew
                return self._outcome(conversation.bot_id, conversation_id, committed, result)
        raise TurnConflict("the conversation is changing too fast; send the message again")

    def _unanswered_check(
        self, conversation_id: str, client_message_id: str | None
    ) -> Callable[[], Awaitable[None]] | None:
        """What a turn started from a snapshot runs before its first outside call (None: nothing to check)."""
        if client_message_id is None:
            return None

        async def check() -> None:
            _, answered = await self.store.conversation_for_turn(conversation_id, client_message_id)
            if answered:
                raise _AlreadyAnswered(client_message_id)

        return check

    async def _run(
        self,
        engine: Engine,
        bot_id: str,
        state: ConversationState,
        event: Input,
        ctx: TurnContext,
        *,
        before_call: Callable[[], Awaitable[None]] | None = None,
    ) -> StepResult:
        """Step the engine, performing its outside calls, until it waits for the customer or the skill ends.

        ``before_call`` runs once, before the first outside call, and may stop the turn by raising.
        """
        result = engine.step(state, event, ctx)
        messages, effects, errors, steps = (
            list(result.messages),
            list(result.effects),
            list(result.errors),
            result.steps,
        )
        while result.http_call is not None:
            if before_call is not None:
                await before_call()
                before_call = None
            response: HttpResponse = await self.http.perform(result.http_call, self._policies[bot_id])
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
        created: bool = False,
    ) -> CommittedTurn:
        messages = [inbound] if inbound is not None else []
        messages += [NewMessage(m.sender, m.type, m.to_payload()) for m in result.messages]
        tokens = [
            NewToken(e.token_id, e.token_hash, now + timedelta(seconds=e.ttl_seconds), e.max_uses)
            for e in result.effects
            if isinstance(e, IssueToken)
        ]
        state = result.state
        committed = await self.store.commit_turn(
            TurnWrite(
                conversation_id=conversation_id,
                bot_id=bot_id,
                create=created,
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
            )
        )
        for token in tokens:
            log.info("issued token %s for conversation %s", token.id, conversation_id)
        if self.on_commit is not None and committed.messages:
            self.on_commit(conversation_id, committed.messages)
        return committed

    async def _replay(
        self,
        bot_id: str,
        conversation_id: str,
        client_message_id: str,
        text: str | None,
        choice: str | None,
    ) -> TurnOutcome | None:
        """The earlier answer to ``client_message_id``, when the message sent now is the one stored then."""
        found = await self.store.turn_by_client_message_id(conversation_id, client_message_id)
        if found is None:
            return None
        messages, pending = found
        if not _same_message(messages[0].payload, text, choice):
            raise ClientMessageIdReused(
                f"client_message_id {client_message_id!r} was already used for another message in this "
                "conversation; give every new message an id of its own"
            )
        conversation = await self.store.get_conversation(conversation_id)
        status = conversation.status if conversation else "active"
        return TurnOutcome(conversation_id, bot_id, messages, pending, status, replayed=True)

    @staticmethod
    def _outcome(
        bot_id: str, conversation_id: str, committed: CommittedTurn, result: StepResult
    ) -> TurnOutcome:
        return TurnOutcome(
            conversation_id=conversation_id,
            bot_id=bot_id,
            messages=committed.messages,
            pending=result.pending.to_json() if result.pending else None,
            status=result.state.status,
            errors=result.errors,
        )

    # ------------------------------------------------------------------------------------ resume and history

    async def resume(
        self,
        bot_id: str,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        history_limit: int = 500,
        session: NewSession | None = None,
    ) -> ResumeOutcome:
        """Verify a conversation token and load its conversation: history (oldest first) and what it waits for.

        Every attempt is audited by token id (never the secret). Unknown and foreign tokens answer alike. With
        ``session``, a successful resume also opens that session, in the same transaction as the token's use.
        """
        now = self.clock()
        record: TokenRecord | None = None
        conversation: ConversationRecord | None = None
        opened: SessionRecord | None = None
        history: list[MessageRecord] = []
        if not is_well_formed(token):
            outcome = TokenOutcome.MALFORMED
        else:
            # History is read with the token (one connection), before spending a use, as it only ever grows.
            record, conversation, history = await self.store.token_with_conversation(
                hash_token(token), history=history_limit
            )
            outcome = judge(record, bot_id=bot_id, now=now)
            if outcome is TokenOutcome.OK and record is not None:
                if conversation is None:
                    outcome = TokenOutcome.NOT_FOUND
                else:
                    opened = _session_record(session, record, now) if session else None
                    audit = NewAudit(
                        kind="resume",
                        bot_id=bot_id,
                        outcome=TokenOutcome.OK.value,
                        at=now,
                        conversation_id=record.conversation_id,
                        token_id=record.id,
                        ip=ip,
                        user_agent=user_agent,
                    )
                    if not await self.store.spend_token(record.id, now, audit=audit, session=opened):
                        # A concurrent resume used the last use, or it expired/was revoked meanwhile.
                        fresh = await self.store.find_token_by_hash(hash_token(token))
                        outcome = judge(fresh, bot_id=bot_id, now=now)
                        if outcome is TokenOutcome.OK:
                            outcome = TokenOutcome.USED_UP
        if outcome is not TokenOutcome.OK or record is None:
            visible = record is not None and record.bot_id == bot_id
            refusal = NewAudit(
                kind="resume",
                bot_id=bot_id,
                outcome=outcome.value,
                at=now,
                conversation_id=record.conversation_id if visible and record else None,
                token_id=record.id if visible and record else None,
                ip=ip,
                user_agent=user_agent,
            )
            await self.store.add_audit(refusal)
            log.info(
                "resume refused for bot %s: %s (token %s)",
                bot_id,
                outcome.value,
                record.id if record else "-",
            )
            raise TokenRefused(outcome, _TOKEN_MESSAGES[outcome])
        log.info("resumed conversation %s with token %s", record.conversation_id, record.id)
        assert conversation is not None
        pending = await self.pending(conversation)
        return ResumeOutcome(
            conversation_id=conversation.id,
            bot_id=bot_id,
            token_id=record.id,
            messages=history,
            pending=pending,
            status=conversation.status,
            session=opened,
        )

    async def issue_token(
        self, conversation_id: str, *, ttl: str | None = None, uses: int | None = None
    ) -> tuple[str, TokenRecord]:
        """Issue a token for an existing conversation outside any turn (admin API); returns (secret, metadata)."""
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        defaults = self.bot(conversation.bot_id).config.tokens
        try:
            lifetime = parse_duration(ttl or defaults.ttl)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        minted = mint()
        now = self.clock()
        record = await self.store.insert_token(
            conversation.bot_id,
            conversation_id,
            NewToken(minted.token_id, minted.token_hash, now + lifetime, uses or defaults.max_uses),
            now,
        )
        log.info("issued token %s for conversation %s", record.id, conversation_id)
        return minted.secret, record

    async def history(self, conversation_id: str, *, after: int = 0, limit: int = 100) -> list[MessageRecord]:
        return await self.store.messages_after(conversation_id, after, limit)

    # ------------------------------------------------------------------------------------ helpers

    async def pending(self, conversation: ConversationRecord) -> dict[str, Any] | None:
        """What a stored conversation waits for, on the bot version it runs on."""
        engine = await self._engine_for(conversation)
        pending = engine.pending(ConversationState.from_json(conversation.state))
        return pending.to_json() if pending else None

    async def _engine_for(self, conversation: ConversationRecord) -> Engine:
        """The engine of the bot version the conversation began on (the newest when that one is not kept)."""
        newest = self._engine(conversation.bot_id)
        version = conversation.state.get(STATE_VERSION_KEY)
        if not isinstance(version, str) or version == newest.bot.version:
            return newest
        engine = self._versions.get((conversation.bot_id, version))
        if engine is not None:
            self._versions.move_to_end((conversation.bot_id, version))
        else:
            bot = await self.store.find_bot(newest.bot.config, version)
            if bot is None:
                log.warning(
                    "conversation %s began on version %s of bot %s, which is not kept; it goes on with the newest",
                    conversation.id,
                    version,
                    conversation.bot_id,
                )
                return newest
            engine = Engine(bot, time_budget=self.turn_time_budget)
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

    def _engine(self, bot_id: str) -> Engine:
        engine = self._engines.get(bot_id)
        if engine is None:
            raise UnknownBot(f"no bot {bot_id!r} is loaded")
        return engine

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        lock = self._locks.get(conversation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[conversation_id] = lock
        return lock

    def _context(
        self, bot_id: str, conversation_id: str, started_at: datetime, now: datetime, user: dict[str, Any]
    ) -> TurnContext:
        allowed = self._bots[bot_id].config.env
        env = {name: self.environ[name] for name in allowed if name in self.environ}
        return TurnContext(
            conversation_id=conversation_id, started_at=started_at, now=now, user=user, env=env
        )

    @staticmethod
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


_TOKEN_MESSAGES = {
    TokenOutcome.MALFORMED: "This is not a conversation token. Check that the whole token was passed.",
    TokenOutcome.NOT_FOUND: "No conversation belongs to this token. It may have been erased, or be for another bot.",
    TokenOutcome.EXPIRED: "This conversation token has expired. Start a new conversation.",
    TokenOutcome.REVOKED: "This conversation token was revoked. Start a new conversation.",
    TokenOutcome.USED_UP: "This conversation token has been used as many times as it allows.",
}
