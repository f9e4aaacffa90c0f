"""Reaching a conversation again, and the credentials that allow it: resume by token, sessions, tokens issued
and revoked outside a turn, and erasure (which ends them all). Each operation is one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rejoinder.realtime import sessions_ended_event
from rejoinder.service.errors import ConversationNotFound, ServiceError, TokenNotFound, TokenRefused
from rejoinder.service.shared import NewSession, ServiceParts
from rejoinder.skills.model import parse_duration
from rejoinder.store import ConversationRecord, MessageRecord, NewToken, SessionRecord
from rejoinder.store.records import AUDIT_ACTOR_KEY, NewAudit
from rejoinder.tokens import TokenOutcome, TokenRecord, hash_token, is_well_formed, judge, mint

log = logging.getLogger("rejoinder.service")


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
class Actor:
    """Who asks for an admin action, as its audit event records them."""

    key_id: str
    ip: str | None = None
    user_agent: str | None = None

    def audit(
        self,
        kind: str,
        bot_id: str,
        at: datetime,
        *,
        conversation_id: str | None = None,
        token_id: str | None = None,
        **detail: Any,
    ) -> NewAudit:
        """The audit event of a change this actor made: its ``detail`` names them (:data:`AUDIT_ACTOR_KEY`)."""
        return NewAudit(
            kind=kind,
            bot_id=bot_id,
            outcome="ok",
            at=at,
            conversation_id=conversation_id,
            token_id=token_id,
            ip=self.ip,
            user_agent=self.user_agent,
            detail={AUDIT_ACTOR_KEY: self.key_id, **detail},
        )


class Resumes(ServiceParts):
    """Resume by token; sessions, tokens and erasure."""

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
            record, conversation, history = await self.store.conversations.token_with_conversation(
                hash_token(token), history=history_limit
            )
            outcome = judge(record, bot_id=bot_id, now=now)
            if outcome is TokenOutcome.OK and record is not None:
                if conversation is None:
                    outcome = TokenOutcome.NOT_FOUND
                else:
                    opened = (
                        session.record(record.bot_id, record.conversation_id, record.id, now)
                        if session
                        else None
                    )
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
                    if not await self.store.credentials.spend_token(
                        record.id, now, audit=audit, session=opened
                    ):
                        # A concurrent resume used the last use, or it expired/was revoked meanwhile.
                        fresh = await self.store.credentials.find_token_by_hash(hash_token(token))
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
            await self.store.audit.add(refusal)
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

    async def refresh_session(self, old: SessionRecord, new: NewSession) -> SessionRecord:
        """Exchange ``old`` for ``new`` in one transaction; the old one's open streams end, on every worker."""
        now = self.clock()
        record = new.record(old.bot_id, old.conversation_id, old.token_id, now)
        await self.store.credentials.replace_session(old.id, record, now)
        self.publish(old.conversation_id, sessions_ended_event("session_refreshed", session_id=old.id))
        return record

    async def issue_token(
        self,
        conversation_id: str,
        *,
        ttl: str | None = None,
        uses: int | None = None,
        bot_id: str | None = None,
        actor: Actor | None = None,
    ) -> tuple[str, TokenRecord]:
        """Issue a token for an existing conversation outside any turn; returns (secret, metadata).

        With ``bot_id`` the conversation must be that bot's; with ``actor`` the issue is audited in the same
        transaction as the token is stored.
        """
        conversation = await self.store.conversations.get(conversation_id)
        if conversation is None or (bot_id is not None and conversation.bot_id != bot_id):
            raise ConversationNotFound(f"The bot has no conversation {conversation_id!r}.")
        defaults = self.bots.bot(conversation.bot_id).config.tokens
        try:
            lifetime = parse_duration(ttl or defaults.ttl)
        except ValueError as exc:
            raise ServiceError(str(exc)) from exc
        minted = mint()
        now = self.clock()
        audit = None
        if actor is not None:
            audit = actor.audit(
                "token_issued",
                conversation.bot_id,
                now,
                conversation_id=conversation_id,
                token_id=minted.token_id,
            )
        record = await self.store.credentials.insert_token(
            conversation.bot_id,
            conversation_id,
            NewToken(minted.token_id, minted.token_hash, now + lifetime, uses or defaults.max_uses),
            now,
            audit=audit,
        )
        log.info("issued token %s for conversation %s", record.id, conversation_id)
        return minted.secret, record

    async def revoke_token(self, bot_id: str, token_id: str, actor: Actor) -> TokenRecord:
        """Revoke one of the bot's tokens, end the sessions opened with it and audit it, in one transaction."""
        audit = actor.audit("token_revoked", bot_id, self.clock(), token_id=token_id)
        record = await self.store.credentials.revoke_bot_token(bot_id, token_id, audit)
        if record is None:
            raise TokenNotFound(f"The bot has no token {token_id!r}.")
        self.publish(record.conversation_id, sessions_ended_event("token_revoked", token_id=token_id))
        return record

    async def erase_conversation(self, bot_id: str, conversation_id: str, actor: Actor) -> None:
        """Erase one of the bot's conversations with its messages, tokens and sessions, and audit it, in one
        transaction; its open streams close."""
        audit = actor.audit("conversation_erased", bot_id, self.clock(), conversation_id=conversation_id)
        if not await self.store.conversations.erase(bot_id, conversation_id, audit):
            raise ConversationNotFound(f"The bot has no conversation {conversation_id!r}.")
        self.publish(conversation_id, sessions_ended_event("conversation_erased"))


_TOKEN_MESSAGES = {
    TokenOutcome.MALFORMED: "This is not a conversation token. Check that the whole token was passed.",
    TokenOutcome.NOT_FOUND: "No conversation belongs to this token. It may have been erased, or be for another bot.",
    TokenOutcome.EXPIRED: "This conversation token has expired. Start a new conversation.",
    TokenOutcome.REVOKED: "This conversation token was revoked. Start a new conversation.",
    TokenOutcome.USED_UP: "This conversation token has been used as many times as it allows.",
}
