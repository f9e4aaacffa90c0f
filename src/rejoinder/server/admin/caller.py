"""The admin caller: a secret key of one bot, what it may reach, and how the audit trail names it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rejoinder.server import state
from rejoinder.server.auth import KeyCaller, require_secret_key
from rejoinder.server.errors import Problem
from rejoinder.service import Actor
from rejoinder.store import ConversationRecord

Admin = Annotated[KeyCaller, Depends(require_secret_key)]


def actor(request: Request, caller: KeyCaller) -> Actor:
    """The audit trail's record of who made an admin change: the key, and the client's address and agent."""
    return Actor(
        key_id=caller.key.id,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:500] or None,
    )


async def own_conversation(request: Request, caller: KeyCaller, conversation_id: str) -> ConversationRecord:
    """The caller's bot's conversation ``conversation_id``; another bot's answers 404 as a missing one does."""
    conversation = await state.store(request).conversations.get(conversation_id)
    if conversation is None or conversation.bot_id != caller.bot.id:
        raise Problem(404, "conversation_not_found", f"The bot has no conversation {conversation_id!r}.")
    return conversation
