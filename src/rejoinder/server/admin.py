"""The admin API of API.md (secret key): skills, conversations, tokens and the audit trail.

Skills are versioned (see :mod:`rejoinder.server.skill_catalog`): each upload or deletion makes a new bot
version for new conversations, while conversations already under way finish on the version they began on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from starlette.convertors import StringConvertor, register_url_convertor

from rejoinder.engine import ConversationState
from rejoinder.server import state
from rejoinder.server.auth import KeyCaller, require_secret_key
from rejoinder.server.errors import PROBLEM_MEDIA_TYPE, Problem, problem_responses
from rejoinder.server.skill_catalog import (
    JSON_MEDIA_TYPE,
    SkillInUse,
    SkillNotFound,
    SkillsBusy,
)
from rejoinder.service import Actor
from rejoinder.skills import Bot
from rejoinder.skills import Problem as SkillProblem
from rejoinder.skills.model import ID_PATTERN, parse_duration
from rejoinder.skills.problems import errors
from rejoinder.store import AuditRecord, ConversationRecord
from rejoinder.store.records import iso_z
from rejoinder.store.skill_versions import STATE_VERSION_KEY, SkillVersionRecord
from rejoinder.tokens import TokenRecord

MAX_SEQ = 2**31 - 1
_MAX_TOKEN_TTL = timedelta(days=3660)
YAML_MEDIA_TYPE = "application/yaml"
_YAML_TYPES = {YAML_MEDIA_TYPE, "application/x-yaml", "text/yaml", "text/x-yaml"}
_SKILL_BODY = {
    "required": True,
    "description": "One skill, as YAML (`Content-Type: application/yaml`) or JSON (`application/json`).",
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}


class _ConversationIdConvertor(StringConvertor):
    """A conversation id in a path: any segment but ``resume``.

    ``/v1/conversations/resume`` is the client API's resume route (POST); another method on it must answer
    405, not fall through to the admin routes of a conversation called "resume".
    """

    regex = "(?!resume$)[^/]+"


register_url_convertor("conversation_id", _ConversationIdConvertor())
# The admin routes on a bare conversation path, which share their path with the client API's resume.
_CONVERSATION_PATH = "/conversations/{conversation_id:conversation_id}"

router = APIRouter(prefix="/v1", tags=["admin"])
Admin = Annotated[KeyCaller, Depends(require_secret_key)]
SkillId = Annotated[str, Path(pattern=ID_PATTERN, max_length=100, description="The skill's id ([a-z0-9_]+).")]


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


UtcTime = Annotated[datetime, AfterValidator(_in_utc)]


# ---------------------------------------------------------------------------------------------- problems


_SKILL_TITLES = {
    "invalid_skill": "The skill is not valid",
    "skill_in_use": "Other skills still need this one",
}


class SkillProblems(Problem):
    """A problem document that also lists the skill problems found, each with its file, line and node."""

    def __init__(self, status: int, type: str, detail: str, problems: list[SkillProblem]) -> None:
        super().__init__(status, type, detail, title=_SKILL_TITLES.get(type))
        self.problems = problems

    def to_response(self) -> JSONResponse:
        body = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "problems": [_problem_item(problem) for problem in self.problems],
        }
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_MEDIA_TYPE)


def _problem_item(problem: SkillProblem) -> dict[str, Any]:
    return {
        "severity": problem.severity,
        "message": problem.message,
        "file": problem.file,
        "line": problem.line,
        "skill": problem.skill,
        "node": problem.node,
        "text": problem.format(),
    }


def _invalid_skill(problems: list[SkillProblem]) -> SkillProblems:
    found = errors(problems)
    listed = "; ".join(str(problem) for problem in found[:3])
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    count = f"{len(found)} error{'' if len(found) == 1 else 's'}"
    return SkillProblems(422, "invalid_skill", f"The skill has {count}: {listed}{more}.", problems)


def _skill_not_found(skill_id: str) -> Problem:
    return Problem(
        404, "skill_not_found", f"The bot has no skill {skill_id!r}. GET /v1/skills lists its skills."
    )


def _busy() -> Problem:
    return Problem(409, "conflict", "The bot's skills changed at the same moment; send the request again.")


def _conversation_not_found(conversation_id: str) -> Problem:
    return Problem(404, "conversation_not_found", f"The bot has no conversation {conversation_id!r}.")


# ---------------------------------------------------------------------------------------------- skills


@router.put(
    "/skills/{skill_id}",
    summary="Upload a skill (a new version of it)",
    openapi_extra={"requestBody": _SKILL_BODY},
    responses={
        200: {"description": "A new version of an existing skill"},
        **problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    },
    status_code=201,
)
async def put_skill(skill_id: SkillId, request: Request, caller: Admin) -> JSONResponse:
    text, media_type = await _skill_body(request)
    try:
        upload = await state.skill_catalog(request).upload(caller.bot.id, skill_id, text, media_type)
    except SkillsBusy:
        raise _busy() from None
    if upload.record is None:
        raise _invalid_skill(upload.problems)
    body = {
        "id": skill_id,
        "version": upload.record.version,
        "bot_version": upload.record.bot_version,
        "created_at": iso_z(upload.record.created_at),
        "warnings": [_problem_item(problem) for problem in upload.problems],
    }
    return JSONResponse(body, status_code=200 if upload.replaced else 201)


@router.post(
    "/skills:validate",
    summary="Check a skill without storing it",
    openapi_extra={"requestBody": _SKILL_BODY},
    responses=problem_responses(400, 401, 403, 413, 415, 503),
)
async def validate_skill_upload(request: Request, caller: Admin) -> JSONResponse:
    text, media_type = await _skill_body(request)
    problems = await state.skill_catalog(request).check(caller.bot.id, text, media_type)
    valid = not errors(problems)
    return JSONResponse({"valid": valid, "problems": [_problem_item(problem) for problem in problems]})


@router.get("/skills", summary="List the bot's skills", responses=problem_responses(401, 403, 503))
async def list_skills(request: Request, caller: Admin) -> JSONResponse:
    catalog = state.skill_catalog(request)
    bot = await catalog.sync(caller.bot.id)
    _, changes = await catalog.versions.current(caller.bot.id)
    items = [_skill_item(bot, skill_id, changes.get(skill_id)) for skill_id in sorted(bot.skills)]
    return JSONResponse({"items": items, "next_cursor": None})


@router.get(
    "/skills/{skill_id}",
    summary="A skill, its source and its versions",
    responses=problem_responses(401, 403, 404, 503),
)
async def get_skill(skill_id: SkillId, request: Request, caller: Admin) -> JSONResponse:
    catalog = state.skill_catalog(request)
    bot = await catalog.sync(caller.bot.id)
    if skill_id not in bot.skills:
        raise _skill_not_found(skill_id)
    history = await catalog.versions.history(caller.bot.id, skill_id)
    item = _skill_item(bot, skill_id, history[-1] if history else None)
    item["definition"] = bot.skills[skill_id].model_dump(mode="json", by_alias=True, exclude_none=True)
    item["source"] = history[-1].source if history else None
    item["media_type"] = history[-1].media_type if history else None
    item["versions"] = [
        {
            "version": change.version,
            "deleted": change.deleted,
            "bot_version": change.bot_version,
            "created_at": iso_z(change.created_at),
        }
        for change in history
    ]
    return JSONResponse(item)


@router.delete(
    "/skills/{skill_id}",
    status_code=204,
    summary="Delete a skill (as a new version)",
    responses=problem_responses(401, 403, 404, 409, 503),
)
async def delete_skill(skill_id: SkillId, request: Request, caller: Admin) -> Response:
    try:
        await state.skill_catalog(request).delete(caller.bot.id, skill_id)
    except SkillNotFound:
        raise _skill_not_found(skill_id) from None
    except SkillInUse as in_use:
        listed = "; ".join(str(problem) for problem in in_use.problems[:3])
        detail = f"Other skills still need {skill_id!r}: {listed}. Change them first."
        raise SkillProblems(409, "skill_in_use", detail, in_use.problems) from None
    except SkillsBusy:
        raise _busy() from None
    return Response(status_code=204)


def _skill_item(bot: Bot, skill_id: str, change: SkillVersionRecord | None) -> dict[str, Any]:
    skill = bot.skills[skill_id]
    return {
        "id": skill_id,
        "name": skill.name,
        "description": skill.description,
        "events": list(skill.triggers.events),
        "default": skill.triggers.default,
        "nodes": len(skill.nodes),
        "origin": "upload" if change is not None else "directory",
        "version": change.version if change is not None else None,
        "updated_at": iso_z(change.created_at) if change is not None else None,
        "bot_version": bot.version,
    }


async def _skill_body(request: Request) -> tuple[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == JSON_MEDIA_TYPE or content_type.endswith("+json"):
        media_type = JSON_MEDIA_TYPE
    elif content_type in _YAML_TYPES:
        media_type = YAML_MEDIA_TYPE
    else:
        raise Problem(
            415,
            "unsupported_media_type",
            "Send the skill with Content-Type: application/yaml (YAML) or application/json (JSON).",
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise Problem(400, "malformed_body", f"The skill is not UTF-8 text (byte {error.start}).") from None
    return text, media_type


# ---------------------------------------------------------------------------------------------- conversations


@router.get(
    "/conversations",
    summary="List the bot's conversations, most recently updated first",
    responses=problem_responses(400, 401, 403, 422, 503),
)
async def list_conversations(
    request: Request,
    caller: Admin,
    status: Annotated[
        Literal["active", "closed"] | None, Query(description="Only conversations in this status.")
    ] = None,
    updated_after: Annotated[
        UtcTime | None, Query(description="Only conversations changed after this time (ISO 8601).")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=500, description="The next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JSONResponse:
    page, next_cursor = await state.store(request).list_conversations(
        bot_id=caller.bot.id, status=status, updated_after=updated_after, limit=limit, cursor=cursor
    )
    return JSONResponse({"items": [_conversation_item(c) for c in page], "next_cursor": next_cursor})


@router.get(
    _CONVERSATION_PATH,
    summary="A conversation: transcript, variables and position",
    responses=problem_responses(401, 403, 404, 422, 503),
)
async def get_conversation(
    conversation_id: str,
    request: Request,
    caller: Admin,
    after: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="Transcript: only messages with a greater seq.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Transcript: at most this many messages.")] = 500,
) -> JSONResponse:
    conversation = await _own_conversation(request, caller, conversation_id)
    messages = await state.store(request).messages_after(conversation_id, after, limit)
    saved = {
        key: value
        for key, value in conversation.state.items()
        if key in ConversationState.__dataclass_fields__
    }
    position = {
        "skill_id": conversation.skill_id,
        "node_id": conversation.node_id,
        "waiting": saved.get("waiting"),
        "pending": await state.service(request).pending(conversation),
    }
    more = bool(messages) and messages[-1].seq < conversation.last_seq
    body = _conversation_item(conversation) | {
        "bot_version": conversation.state.get(STATE_VERSION_KEY),
        "variables": saved.get("variables", {}),
        "position": position,
        "messages": [message.to_api() for message in messages],
        "next_after": messages[-1].seq if more else None,
    }
    return JSONResponse(body)


@router.delete(
    _CONVERSATION_PATH,
    status_code=204,
    summary="Erase a conversation with its messages, tokens and sessions",
    responses=problem_responses(401, 403, 404, 503),
)
async def erase_conversation(conversation_id: str, request: Request, caller: Admin) -> Response:
    await state.service(request).erase_conversation(caller.bot.id, conversation_id, _actor(request, caller))
    return Response(status_code=204)


def _conversation_item(conversation: ConversationRecord) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "status": conversation.status,
        "skill_id": conversation.skill_id,
        "node_id": conversation.node_id,
        "last_seq": conversation.last_seq,
        "user": conversation.user,
        "created_at": iso_z(conversation.created_at),
        "updated_at": iso_z(conversation.updated_at),
    }


# ---------------------------------------------------------------------------------------------- tokens


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
        conversation_id, ttl=ttl, uses=body.uses, bot_id=caller.bot.id, actor=_actor(request, caller)
    )
    return JSONResponse({"token": secret} | _token_item(record), status_code=201)


@router.get(
    "/conversations/{conversation_id}/tokens",
    summary="List a conversation's tokens (metadata only)",
    responses=problem_responses(401, 403, 404, 503),
)
async def list_tokens(conversation_id: str, request: Request, caller: Admin) -> JSONResponse:
    await _own_conversation(request, caller, conversation_id)
    records = await state.store(request).list_tokens(conversation_id)
    return JSONResponse({"items": [_token_item(record) for record in records], "next_cursor": None})


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token and end the sessions opened with it",
    responses=problem_responses(401, 403, 404, 503),
)
async def revoke_token(
    token_id: Annotated[str, Path(max_length=100)], request: Request, caller: Admin
) -> JSONResponse:
    record = await state.service(request).revoke_token(caller.bot.id, token_id, _actor(request, caller))
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


# ---------------------------------------------------------------------------------------------- audit


@router.get(
    "/audit",
    summary="Resume attempts and admin actions, newest first",
    responses=problem_responses(400, 401, 403, 422, 503),
)
async def list_audit(
    request: Request,
    caller: Admin,
    conversation_id: Annotated[str | None, Query(max_length=100)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    page, next_cursor = await state.store(request).list_audit(
        bot_id=caller.bot.id, conversation_id=conversation_id, limit=limit, cursor=cursor
    )
    return JSONResponse({"items": [_audit_item(event) for event in page], "next_cursor": next_cursor})


def _audit_item(event: AuditRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": iso_z(event.at),
        "kind": event.kind,
        "conversation_id": event.conversation_id,
        "token_id": event.token_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "outcome": event.outcome,
        "detail": event.detail,
    }


def _actor(request: Request, caller: KeyCaller) -> Actor:
    return Actor(
        key_id=caller.key.id,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:500] or None,
    )


# ---------------------------------------------------------------------------------------------- helpers


async def _own_conversation(request: Request, caller: KeyCaller, conversation_id: str) -> ConversationRecord:
    conversation = await state.store(request).get_conversation(conversation_id)
    if conversation is None or conversation.bot_id != caller.bot.id:
        raise _conversation_not_found(conversation_id)
    return conversation


def _iso(moment: datetime | None) -> str | None:
    return iso_z(moment) if moment is not None else None
