"""The admin API's audit trail: resume attempts and admin actions, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from rejoinder.server import state
from rejoinder.server.admin.caller import Admin
from rejoinder.server.errors import problem_responses
from rejoinder.service import AuditFilters
from rejoinder.store import AuditRecord
from rejoinder.store.records import iso_z

router = APIRouter()


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
    filters = AuditFilters(conversation_id=conversation_id)
    page = await state.service(request).list_audit(caller.bot.id, filters, limit=limit, cursor=cursor)
    return JSONResponse({"items": [_audit_item(e) for e in page.items], "next_cursor": page.next_cursor})


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
