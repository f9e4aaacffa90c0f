"""The client API of API.md: what the web widget (or any customer-facing client) calls.

Starting or resuming takes the bot's SDK key and answers with a session; everything after takes that session,
which opens exactly one conversation. Answers are built as plain JSON; the models below describe them for
/openapi.json.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, model_validator

from rejoinder.server import state
from rejoinder.server.auth import (
    KeyCaller,
    SessionCaller,
    bearer,
    new_session,
    require_sdk_key,
    require_session,
    session_scheme,
    verify_user,
)
from rejoinder.server.errors import Problem, problem_responses
from rejoinder.server.turn import Body, SendRequest, take_turn
from rejoinder.service import MAX_TEXT_CHARS, ResumeOutcome, TokenRefused, TurnOutcome
from rejoinder.store import MAX_SEQ, MessageRecord
from rejoinder.store.records import iso_z

router = APIRouter(prefix="/v1/conversations", tags=["client"])


# ------------------------------------------------------------------------------------------------ requests


class UserIn(Body):
    """Who the customer is, as the page knows it. ``id`` is kept only with a valid ``hash``."""

    id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str | None = Field(default=None, max_length=200)
    hash: str | None = Field(
        default=None, max_length=128, description="Hex HMAC-SHA256 of `id` with the bot's identity secret."
    )


class StartRequest(Body):
    event: str | None = Field(
        default=None, min_length=1, max_length=100, description="Start the skill this event triggers."
    )
    text: str | None = Field(
        default=None,
        min_length=1,
        description="Start with a first customer message (at most 4,000 characters).",
        json_schema_extra={"maxLength": MAX_TEXT_CHARS},
    )
    variables: dict[str, Any] | None = Field(
        default=None, description="Values for the skill's settable variables."
    )
    user: UserIn | None = None

    @model_validator(mode="after")
    def _event_or_text(self) -> StartRequest:
        if (self.event is None) == (self.text is None):
            raise ValueError("give either 'event' or 'text'")
        return self


class ResumeRequest(Body):
    token: str = Field(max_length=512, description="The conversation token (`rjt_…`).")


# ------------------------------------------------------------------------------------------------ answers


class ButtonOut(BaseModel):
    label: str
    url: str | None = None
    value: str | None = None


class MessageOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    seq: int
    sender: Literal["customer", "bot", "system"]
    type: str = Field(examples=["text", "buttons"])
    text: str
    buttons: list[ButtonOut] | None = None
    created_at: str = Field(examples=["2026-01-01T12:00:00.000Z"])


class ChoiceOut(BaseModel):
    label: str
    value: str


class PendingOut(BaseModel):
    node: str
    input: str = Field(examples=["text", "number", "email", "regex"])
    choices: list[ChoiceOut] | None = None


class ConversationOut(BaseModel):
    conversation_id: str
    session: str = Field(description="Use as `Authorization: Bearer <session>` for this conversation.")
    session_expires_at: str = Field(
        examples=["2026-01-01T12:00:00.000Z"], description="Refresh the session before this moment."
    )
    status: Literal["active", "closed"]
    messages: list[MessageOut]
    pending: PendingOut | None


class TurnOut(BaseModel):
    messages: list[MessageOut] = Field(description="The customer's message, then the bot's replies.")
    pending: PendingOut | None


class HistoryOut(BaseModel):
    messages: list[MessageOut]
    next_after: int = Field(description="Pass as `after` to read on from here.")


class SessionOut(BaseModel):
    session: str
    session_expires_at: str = Field(examples=["2026-01-01T12:00:00.000Z"])


# ------------------------------------------------------------------------------------------------ routes

SdkCaller = Annotated[KeyCaller, Depends(require_sdk_key)]
Session = Annotated[SessionCaller, Depends(require_session)]


@router.post(
    "",
    status_code=201,
    response_model=ConversationOut,
    summary="Start a conversation by event or by a first message",
    responses=problem_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
)
async def start_conversation(body: StartRequest, request: Request, caller: SdkCaller) -> JSONResponse:
    await state.quotas(request).start(_client_ip(request), caller.bot.id)
    service = state.service(request)
    user = verify_user(caller.bot, body.user.model_dump() if body.user else None, request.app.state.environ)
    secret, session = new_session(caller.bot)
    with state.metrics(request).turn(caller.bot.id, "start"):
        outcome = await service.start(
            caller.bot.id,
            event=body.event,
            text=body.text,
            variables=body.variables,
            user=user,
            session=session,
        )
    return JSONResponse(_conversation(outcome, secret), status_code=201)


@router.post(
    "/resume",
    response_model=ConversationOut,
    summary="Resume a conversation by its token",
    responses=problem_responses(400, 401, 403, 404, 410, 413, 415, 422, 429, 503),
)
async def resume_conversation(body: ResumeRequest, request: Request, caller: SdkCaller) -> JSONResponse:
    service, guard, bot_id = state.service(request), state.resume_guard(request), caller.bot.id
    ip = _client_ip(request)
    started = time.perf_counter()
    try:
        await guard.check(ip)
    except Problem:
        state.metrics(request).resume(bot_id, "rate_limited", time.perf_counter() - started)
        service.meter.resume_rate_limited(bot_id)
        raise
    secret, session = new_session(caller.bot)
    try:
        outcome = await service.resume(
            bot_id,
            body.token,
            ip=ip,
            user_agent=(request.headers.get("user-agent") or "")[:500] or None,
            session=session,
        )
    except TokenRefused as refused:
        try:
            await guard.failed(ip, bot_id)
        except Problem:
            state.metrics(request).resume(bot_id, "rate_limited", time.perf_counter() - started)
            service.meter.resume_rate_limited(bot_id)
            raise
        state.metrics(request).resume(bot_id, refused.code, time.perf_counter() - started)
        raise
    state.metrics(request).resume(bot_id, "ok", time.perf_counter() - started)
    return JSONResponse(_conversation(outcome, secret))


@router.post(
    "/{conversation_id}/messages",
    response_model=TurnOut,
    summary="Send a message or a choice",
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
)
async def send_message(
    conversation_id: str,
    body: SendRequest,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(session_scheme)],
) -> JSONResponse:
    outcome = await take_turn(request, bearer(credentials), conversation_id, body)
    return JSONResponse({"messages": _items(outcome.messages), "pending": outcome.pending})


@router.get(
    "/{conversation_id}/messages",
    response_model=HistoryOut,
    summary="Read the history after a watermark",
    responses=problem_responses(401, 403, 422, 503),
)
async def read_history(
    conversation_id: str,
    request: Request,
    caller: Session,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Only messages with a greater seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many messages.")] = 100,
) -> JSONResponse:
    messages = await state.service(request).history(conversation_id, after=after, limit=limit)
    return JSONResponse({"messages": _items(messages), "next_after": messages[-1].seq if messages else after})


@router.post(
    "/{conversation_id}/session/refresh",
    response_model=SessionOut,
    summary="Exchange the session for a fresh one",
    responses=problem_responses(401, 403, 503),
)
async def refresh_session(conversation_id: str, request: Request, caller: Session) -> JSONResponse:
    secret, fresh = new_session(caller.bot)
    record = await state.service(request).refresh_session(caller.session, fresh)
    return JSONResponse({"session": secret, "session_expires_at": iso_z(record.expires_at)})


# ------------------------------------------------------------------------------------------------ helpers


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _conversation(outcome: TurnOutcome | ResumeOutcome, secret: str) -> dict[str, Any]:
    """A started or resumed conversation as ``ConversationOut``, with the session opened for it."""
    assert outcome.session is not None  # the route asked for one
    return {
        "conversation_id": outcome.conversation_id,
        "session": secret,
        "session_expires_at": iso_z(outcome.session.expires_at),
        "status": outcome.status,
        "messages": _items(outcome.messages),
        "pending": outcome.pending,
    }


def _items(messages: list[MessageRecord]) -> list[dict[str, Any]]:
    return [message.to_api() for message in messages]
