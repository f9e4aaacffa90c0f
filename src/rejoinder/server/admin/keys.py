"""The admin API's API keys: list the bot's keys, create a pair, revoke one, rotate one (new secrets shown once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rejoinder.server import state
from rejoinder.server.admin.caller import Admin, actor
from rejoinder.server.errors import problem_responses
from rejoinder.service.keys import DEFAULT_OVERLAP, MAX_OVERLAP, key_summary
from rejoinder.skills.model import parse_duration

router = APIRouter()

KeyId = Annotated[str, Path(max_length=100, description="The key's public id, `key_…`.")]


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: str | int = Field(
        default=int(DEFAULT_OVERLAP.total_seconds()),
        description="How long the old key goes on working beside the new one: '30m', '24h', '7d' or seconds "
        "(0 stops it at once; at most 30 days).",
    )

    @field_validator("overlap")
    @classmethod
    def _length(cls, overlap: str | int) -> int:
        if overlap in (0, "0"):
            return 0
        try:
            length = parse_duration(overlap)
        except OverflowError:
            length = MAX_OVERLAP + timedelta(seconds=1)
        if length > MAX_OVERLAP:
            raise ValueError(f"an overlap may be at most {MAX_OVERLAP.days} days")
        return int(length.total_seconds())

    def length(self) -> timedelta:
        return timedelta(seconds=int(self.overlap))


@router.get(
    "/keys",
    summary="List the bot's API keys (ids and dates, never a secret)",
    responses=problem_responses(401, 403, 503),
)
async def list_keys(request: Request, caller: Admin) -> JSONResponse:
    keys = state.keys(request)
    now = keys.clock()
    records = await keys.list(caller.bot.id)
    return JSONResponse({"items": [key_summary(record, now) for record in records], "next_cursor": None})


@router.post(
    "/keys",
    status_code=201,
    summary="Create an SDK key and a secret key for the bot (the secrets shown once)",
    responses=problem_responses(401, 403, 503),
)
async def create_keys(request: Request, caller: Admin) -> JSONResponse:
    keys = state.keys(request)
    issued = await keys.create(caller.bot.id, actor(request, caller))
    now = keys.clock()
    items = [
        {"key": issued.sdk_key} | key_summary(issued.sdk_record, now),
        {"key": issued.secret_key} | key_summary(issued.secret_record, now),
    ]
    return JSONResponse({"items": items}, status_code=201)


@router.delete(
    "/keys/{key_id}",
    summary="Revoke one of the bot's keys now",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def revoke_key(
    key_id: KeyId,
    request: Request,
    caller: Admin,
    revoke_own_key: Annotated[
        bool,
        Query(
            description="Needed to revoke the secret key making this request (it is refused otherwise: the "
            "caller would lock itself out)."
        ),
    ] = False,
) -> JSONResponse:
    keys = state.keys(request)
    record = await keys.revoke(
        key_id, actor(request, caller), bot_id=caller.bot.id, allow_self=revoke_own_key
    )
    return JSONResponse(key_summary(record, keys.clock()))


@router.post(
    "/keys/{key_id}:rotate",
    status_code=201,
    summary="Replace a key with a new one of its kind; the old one works for the overlap, then stops",
    responses=problem_responses(401, 403, 404, 409, 415, 422, 503),
)
async def rotate_key(
    key_id: KeyId, request: Request, caller: Admin, body: RotateRequest | None = None
) -> JSONResponse:
    body = body or RotateRequest()
    keys = state.keys(request)
    rotated = await keys.rotate(key_id, actor(request, caller), overlap=body.length(), bot_id=caller.bot.id)
    now = keys.clock()
    answer = (
        {"key": rotated.secret}
        | key_summary(rotated.key, now)
        | {"replaces": key_summary(rotated.retired, now)}
    )
    return JSONResponse(answer, status_code=201)
