"""The admin API's conversations: list them, read one (transcript, variables, position), erase one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator
from starlette.convertors import StringConvertor, register_url_convertor

from rejoinder.server import state
from rejoinder.server.admin.caller import Admin, actor
from rejoinder.server.errors import problem_responses
from rejoinder.service import ConversationFilters
from rejoinder.store import MAX_SEQ, ConversationRecord
from rejoinder.store.records import ConversationSummary, iso_z


class _ConversationIdConvertor(StringConvertor):
    """A conversation id in a path: any segment but ``resume``.

    ``/v1/conversations/resume`` is the client API's resume route (POST); another method on it must answer
    405, not fall through to the admin routes of a conversation called "resume".
    """

    regex = "(?!resume$)[^/]+"


register_url_convertor("conversation_id", _ConversationIdConvertor())
# The admin routes on a bare conversation path, which share their path with the client API's resume.
_CONVERSATION_PATH = "/conversations/{conversation_id:conversation_id}"

router = APIRouter()


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


UtcTime = Annotated[datetime, AfterValidator(_in_utc)]


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
    filters = ConversationFilters(status=status, updated_after=updated_after)
    page = await state.service(request).list_conversations(caller.bot.id, filters, limit=limit, cursor=cursor)
    return JSONResponse(
        {"items": [_conversation_item(c) for c in page.items], "next_cursor": page.next_cursor}
    )


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
    view = await state.service(request).view_conversation(
        caller.bot.id, conversation_id, after=after, limit=limit
    )
    conversation = view.conversation
    position = {
        "skill_id": conversation.skill_id,
        "node_id": conversation.node_id,
        "waiting": view.waiting,
        "pending": view.pending,
    }
    body = _conversation_item(conversation) | {
        "bot_version": view.bot_version,
        "variables": view.variables,
        "position": position,
        "messages": [message.to_api() for message in view.messages],
        "next_after": view.next_after,
    }
    return JSONResponse(body)


@router.delete(
    _CONVERSATION_PATH,
    status_code=204,
    summary="Erase a conversation with its messages, tokens and sessions",
    responses=problem_responses(401, 403, 404, 503),
)
async def erase_conversation(conversation_id: str, request: Request, caller: Admin) -> Response:
    await state.service(request).erase_conversation(caller.bot.id, conversation_id, actor(request, caller))
    return Response(status_code=204)


def _conversation_item(conversation: ConversationRecord | ConversationSummary) -> dict[str, Any]:
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
