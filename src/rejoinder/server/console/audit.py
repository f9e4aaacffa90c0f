"""The Audit page: a bot's audit trail (resumes and every change, with who made it), filtered by conversation,
kind, actor and time, and the same selection downloaded as CSV (streamed, at most EXPORT_ROWS rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from rejoinder.server import state
from rejoinder.server.console.conversations import audit_row
from rejoinder.server.console.pages import render
from rejoinder.server.console.reading import (
    chosen_bot,
    filtered_link,
    page_link,
    refusals_as_pages,
    served_bots,
    text_filter,
    time_filter,
)
from rejoinder.server.console.session import PREFIX, ConsoleRefused, Viewer
from rejoinder.service.admin import EXPORT_ROWS
from rejoinder.store.records import AuditQuery

router = APIRouter()

AUDIT = PREFIX + "/audit"
PAGE_SIZE = 100
# The kinds the service writes, offered in the filter (any other text is still taken).
KINDS = ("resume", "token_issued", "token_revoked", "conversation_erased")


@router.get(AUDIT)
async def audit_page(
    request: Request,
    _user: Viewer,
    bot: str | None = None,
    conversation: str | None = None,
    kind: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> Response:
    shown, query = _selection(request, bot, conversation, kind, actor, since, until)
    rows: list[dict[str, Any]] = []
    links: dict[str, str | None] = {"next": None, "previous": None}
    if query is not None:
        async with refusals_as_pages():
            page = await state.service(request).list_audit(
                query, limit=PAGE_SIZE, cursor=text_filter(cursor, "page")
            )
        rows = [audit_row(e) for e in page.items]
        links = {
            "next": page_link(AUDIT, shown, page.next_cursor),
            "previous": page_link(AUDIT, shown, page.previous_cursor),
        }
    context = {
        "bots": served_bots(request),
        "filters": shown,
        "kinds": KINDS,
        "rows": rows,
        "links": links,
        "csv": filtered_link(AUDIT + ".csv", shown),
        "export_rows": EXPORT_ROWS,
    }
    return render(request, "audit.html", context)


@router.get(AUDIT + ".csv")
async def audit_csv(
    request: Request,
    _user: Viewer,
    bot: str | None = None,
    conversation: str | None = None,
    kind: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    shown, query = _selection(request, bot, conversation, kind, actor, since, until)
    if query is None:
        raise ConsoleRefused(404, "No bot", "This server runs no bot, so there is no audit trail.")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        state.service(request).export_audit(query),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{shown["bot"]}-{stamp}.csv"'},
    )


def _selection(
    request: Request,
    bot: str | None,
    conversation: str | None,
    kind: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
) -> tuple[dict[str, str], AuditQuery | None]:
    """The filters as the form shows them again, and the query they make (None when the server runs no bot)."""
    bot_id = chosen_bot(request, bot)
    shown = {
        "bot": bot_id or "",
        "conversation": text_filter(conversation, "conversation") or "",
        "kind": text_filter(kind, "kind") or "",
        "actor": text_filter(actor, "actor") or "",
        "since": text_filter(since, "since") or "",
        "until": text_filter(until, "until") or "",
    }
    if bot_id is None:
        return shown, None
    query = AuditQuery(
        bot_id=bot_id,
        conversation_id=shown["conversation"] or None,
        kind=shown["kind"] or None,
        actor=shown["actor"] or None,
        since=time_filter(since, "since"),
        until=time_filter(until, "until"),
    )
    return shown, query
