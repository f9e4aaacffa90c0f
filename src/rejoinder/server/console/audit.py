"""The Audit page: a bot's audit trail (resumes and every change, with who made it), filtered by conversation,
kind, actor and time, and the same selection downloaded as CSV (streamed, at most EXPORT_ROWS rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from rejoinder.server import state
from rejoinder.server.console.conversations import audit_row
from rejoinder.server.console.pages import render
from rejoinder.server.console.reading import (
    Selection,
    chosen_bot,
    filtered_link,
    page_links,
    served_bots,
    text_filter,
    time_filter,
)
from rejoinder.server.console.session import PREFIX, ConsoleRefused, Viewer
from rejoinder.service import AuditFilters
from rejoinder.service.admin import EXPORT_ROWS

router = APIRouter()

AUDIT = PREFIX + "/audit"
PAGE_SIZE = 100
# The kinds the service writes, offered in the filter (any other text is still taken).
KINDS = ("resume", "token_issued", "token_revoked", "conversation_erased")


def audit_selection(
    request: Request,
    bot: str | None = None,
    conversation: str | None = None,
    kind: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Selection[AuditFilters]:
    """The Audit page's filters, for the page and its CSV alike."""
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
        return Selection(shown, None)
    filters = AuditFilters(
        conversation_id=shown["conversation"] or None,
        kind=shown["kind"] or None,
        actor=shown["actor"] or None,
        since=time_filter(since, "since"),
        until=time_filter(until, "until"),
    )
    return Selection(shown, filters)


AuditSelection = Annotated[Selection[AuditFilters], Depends(audit_selection)]


@router.get(AUDIT)
async def audit_page(
    request: Request, _user: Viewer, selection: AuditSelection, cursor: str | None = None
) -> Response:
    page = await selection.page(state.service(request).list_audit, PAGE_SIZE, cursor)
    context = {
        "bots": served_bots(request),
        "filters": selection.shown,
        "kinds": KINDS,
        "rows": [audit_row(e) for e in page.items] if page is not None else [],
        "links": page_links(AUDIT, selection.shown, page),
        "csv": filtered_link(AUDIT + ".csv", selection.shown),
        "export_rows": EXPORT_ROWS,
    }
    return render(request, "audit.html", context)


@router.get(AUDIT + ".csv")
async def audit_csv(request: Request, _user: Viewer, selection: AuditSelection) -> Response:
    if selection.filters is None:
        raise ConsoleRefused(404, "No bot", "This server runs no bot, so there is no audit trail.")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        state.service(request).export_audit(selection.bot, selection.filters),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{selection.bot}-{stamp}.csv"'},
    )
