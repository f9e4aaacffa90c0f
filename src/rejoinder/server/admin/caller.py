"""The admin caller: a secret key of one bot, what it may reach, and how the audit trail names it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rejoinder.server.auth import KeyCaller, require_secret_key
from rejoinder.service import Actor

Admin = Annotated[KeyCaller, Depends(require_secret_key)]


def actor(request: Request, caller: KeyCaller) -> Actor:
    """The audit trail's record of who made an admin change: the key, and the client's address and agent."""
    return Actor(
        key_id=caller.key.id,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:500] or None,
    )
