"""A customer's turn at the edge, for HTTP and the stream alike: the message as a client sends it, and the one
call that runs it.

The turn service checks the session and runs the turn; what only the server knows is added here, once both
edges: the page's origin and the per-address quota, checked once the session says which bot it is.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import HTTPConnection

from rejoinder.server import state
from rejoinder.server.auth import SESSION_PREFIX, check_origin, hash_secret
from rejoinder.service import MAX_TEXT_CHARS, CustomerMessage, SessionRefused, TurnOutcome
from rejoinder.skills.model import Bot


class Body(BaseModel):
    """A request body: unknown fields are errors; text holds no NUL or unpaired surrogate, numbers are finite."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable_text(self) -> Body:
        for value in self.__dict__.values():
            _check_storable(value)
        return self


class SendRequest(Body):
    text: str | None = Field(
        default=None,
        min_length=1,
        description="The customer's message (at most 4,000 characters).",
        json_schema_extra={"maxLength": MAX_TEXT_CHARS},
    )
    choice: str | None = Field(
        default=None, min_length=1, max_length=200, description="The value of a choice."
    )
    client_message_id: str = Field(
        min_length=1, max_length=128, description="Chosen by the client; the same id twice is answered once."
    )

    @model_validator(mode="after")
    def _text_or_choice(self) -> SendRequest:
        if (self.text is None) == (self.choice is None):
            raise ValueError("give either 'text' or 'choice'")
        return self


async def take_turn(
    conn: HTTPConnection, session_secret: str, conversation_id: str, request: SendRequest
) -> TurnOutcome:
    """Run the customer's message through the turn service, on the session ``session_secret``."""
    if not session_secret.startswith(SESSION_PREFIX):
        raise SessionRefused(
            "unauthorized", "This route takes a session (ses_…) from starting or resuming the conversation."
        )
    client = conn.client.host if conn.client else None
    with ExitStack() as timing:

        async def admit(bot: Bot) -> None:
            check_origin(conn, bot)
            await state.quotas(conn).message(client, bot.id)
            # Timed from here: a turn refused before it ran is not a turn.
            timing.enter_context(state.metrics(conn).turn(bot.id, "message"))

        return await state.service(conn).turn(
            hash_secret(session_secret),
            conversation_id,
            CustomerMessage(request.text, request.choice, request.client_message_id),
            admit=admit,
        )


def _check_storable(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no unpaired surrogates)") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key)
            _check_storable(item)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item)
