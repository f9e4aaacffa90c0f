"""The Tokens page: a bot's conversation tokens (metadata only: a token's secret is never stored), filtered by
conversation and status, and revoking one (editors), which ends the sessions opened with it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from rejoinder.server import state
from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.reading import (
    Selection,
    choice_filter,
    chosen_bot,
    page_links,
    refusals_as_pages,
    served_bots,
    shown_time,
    text_filter,
)
from rejoinder.server.console.session import PREFIX, ConsoleRefused, Editor, Viewer, actor, form_of, safe_next
from rejoinder.service import TokenFilters
from rejoinder.service.accounts import role_allows
from rejoinder.store.records import TokenStatus
from rejoinder.tokens import TokenRecord

router = APIRouter()

TOKENS = PREFIX + "/tokens"
PAGE_SIZE = 50
STATUSES: tuple[str, ...] = get_args(TokenStatus)
STATUS_LABELS = {"active": "active", "revoked": "revoked", "expired": "expired", "used_up": "used up"}
NOTICES = {"revoked": "The token was revoked; the sessions opened with it have ended."}


def token_selection(
    request: Request, bot: str | None = None, status: str | None = None, conversation: str | None = None
) -> Selection[TokenFilters]:
    """The Tokens page's filters."""
    bot_id = chosen_bot(request, bot)
    shown = {
        "bot": bot_id or "",
        "status": choice_filter(status, STATUSES, "status") or "",
        "conversation": text_filter(conversation, "conversation") or "",
    }
    if bot_id is None:
        return Selection(shown, None)
    filters = TokenFilters(
        conversation_id=shown["conversation"] or None,
        status=cast("TokenStatus | None", shown["status"] or None),
    )
    return Selection(shown, filters)


@router.get(TOKENS)
async def tokens_page(
    request: Request,
    user: Viewer,
    selection: Annotated[Selection[TokenFilters], Depends(token_selection)],
    cursor: str | None = None,
    notice: str | None = None,
) -> Response:
    service = state.service(request)
    page = await selection.page(service.list_tokens, PAGE_SIZE, cursor)
    now = service.clock()
    context = {
        "bots": served_bots(request),
        "filters": selection.shown,
        "statuses": [(value, STATUS_LABELS[value]) for value in STATUSES],
        "rows": [token_row(t, now) for t in page.items] if page is not None else [],
        "links": page_links(TOKENS, selection.shown, page),
        "can_edit": role_allows(user.role, "editor"),
        "here": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
        "flashes": [Flash("notice", NOTICES[notice])] if notice in NOTICES else [],
    }
    return render(request, "tokens.html", context)


@router.post(TOKENS + "/{token_id}/revoke")
async def revoke_token(request: Request, token_id: str, _user: Editor) -> Response:
    """Revoke one of a bot's tokens, then go back to the page the form was on (a console page only)."""
    form = await form_of(request)
    bot_id = chosen_bot(request, str(form.get("bot") or "")) or ""
    if len(token_id) > 100 or not bot_id:
        raise ConsoleRefused(404, "Token not found", "There is no such token.")
    async with refusals_as_pages():
        await state.service(request).revoke_token(bot_id, token_id, actor(request))
    back = safe_next(str(form.get("next") or TOKENS))
    separator = "&" if "?" in back else "?"
    if "notice=" not in back:
        back += f"{separator}notice=revoked"
    return RedirectResponse(back, status_code=303)


def token_row(token: TokenRecord, now: datetime) -> dict[str, Any]:
    """A token as a page lists it: when it was made and lasts, its uses, and its status now."""
    return {
        "id": token.id,
        "bot_id": token.bot_id,
        "conversation_id": token.conversation_id,
        "conversation_href": f"{PREFIX}/conversations/{token.conversation_id}",
        "created": shown_time(token.created_at),
        "expires": shown_time(token.expires_at),
        "last_used": shown_time(token.last_used_at),
        "revoked": shown_time(token.revoked_at),
        "uses": token.uses,
        "max_uses": token.max_uses,
        "status": token_status(token, now),
    }


def token_status(token: TokenRecord, now: datetime) -> str:
    """active, revoked, expired or used up, in the order a resume judges them."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    if token.max_uses is not None and token.uses >= token.max_uses:
        return "used up"
    return "active"
