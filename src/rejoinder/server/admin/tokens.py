"""The admin API's conversation tokens: issue one (its secret shown once), list them, revoke one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rejoinder.server import state
from rejoinder.server.admin.caller import Admin, actor
from rejoinder.server.errors import problem_responses
from rejoinder.skills.model import parse_duration
from rejoinder.store.records import iso_z
from rejoinder.tokens import TokenRecord

_MAX_TOKEN_TTL = timedelta(days=3660)

router = APIRouter()


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl: str | int | None = Field(
        default=None, description="Lifetime: '15m', '24h', '7d' or seconds; the bot's tokens.ttl by default."
    )
    uses: int | None = Field(default=None, ge=1, le=1_000_000, description="How many resumes it allows.")

    @field_validator("ttl")
    @classmethod
    def _duration(cls, ttl: str | int | None) -> str | None:
        if ttl is None:
            return None
        too_long = "a token may live at most 10 years"
        try:
            lifetime = parse_duration(ttl)
        except OverflowError:
            raise ValueError(too_long) from None
        if lifetime > _MAX_TOKEN_TTL:
            raise ValueError(too_long)
        return f"{int(lifetime.total_seconds())}s"


@router.post(
    "/conversations/{conversation_id}/tokens",
    status_code=201,
    summary="Issue a conversation token (shown once)",
    responses=problem_responses(400, 401, 403, 404, 415, 422, 503),
)
async def issue_token(
    conversation_id: str, request: Request, caller: Admin, body: TokenRequest | None = None
) -> JSONResponse:
    # No body at all means the bot's defaults, as `{}` does.
    body = body or TokenRequest()
    ttl = None if body.ttl is None else str(body.ttl)
    secret, record = await state.service(request).issue_token(
        conversation_id, ttl=ttl, uses=body.uses, bot_id=caller.bot.id, actor=actor(request, caller)
    )
    return JSONResponse({"token": secret} | _token_item(record), status_code=201)


@router.get(
    "/conversations/{conversation_id}/tokens",
    summary="List a conversation's tokens (metadata only)",
    responses=problem_responses(401, 403, 404, 503),
)
async def list_tokens(conversation_id: str, request: Request, caller: Admin) -> JSONResponse:
    records = await state.service(request).conversation_tokens(caller.bot.id, conversation_id)
    return JSONResponse({"items": [_token_item(record) for record in records], "next_cursor": None})


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token and end the sessions opened with it",
    responses=problem_responses(401, 403, 404, 503),
)
async def revoke_token(
    token_id: Annotated[str, Path(max_length=100)], request: Request, caller: Admin
) -> JSONResponse:
    record = await state.service(request).revoke_token(caller.bot.id, token_id, actor(request, caller))
    return JSONResponse(_token_item(record))


def _token_item(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "conversation_id": record.conversation_id,
        "created_at": iso_z(record.created_at),
        "expires_at": iso_z(record.expires_at),
        "max_uses": record.max_uses,
        "uses": record.uses,
        "revoked_at": _iso(record.revoked_at),
        "last_used_at": _iso(record.last_used_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None
