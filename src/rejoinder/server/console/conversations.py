"""The Conversations pages: a bot's conversations (filters, search, keyset pages), one conversation whole (its
transcript kept live, variables, position, tokens, audit trail), a token issued from it, and its erasure behind a
confirmation page. Every change is the service's own operation, audited with the console user as the actor."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from rejoinder.server import state
from rejoinder.server.console.live import choice_text, drawn_message, open_stream
from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.reading import (
    Selection,
    ShownTime,
    choice_filter,
    chosen_bot,
    page_links,
    refusals_as_pages,
    served_bots,
    shown_time,
    text_filter,
    time_filter,
)
from rejoinder.server.console.session import PREFIX, ConsoleRefused, Editor, Viewer, actor, form_of, signed_in
from rejoinder.server.console.tokens import token_row
from rejoinder.server.in_order import parse_seq
from rejoinder.service import AuditFilters, ConversationFilters, ConversationView
from rejoinder.service.accounts import role_allows
from rejoinder.service.admin import audit_actor
from rejoinder.store import MAX_SEQ, AuditRecord, ConversationRecord, MessageRecord
from rejoinder.store.records import ConversationSummary

router = APIRouter()

CONVERSATIONS = PREFIX + "/conversations"
PAGE_SIZE = 50
TRANSCRIPT_PAGE = 500  # messages drawn at once; a longer transcript goes on by a link
LIVE_BATCH = 100  # messages one poll of a live page gets at most
AUDIT_SHOWN = 50  # a conversation page shows its newest audit events; the Audit page has them all
VALUE_CHARS = 500  # a variable's value is cut to this on the page
STATUSES = ("active", "closed")
NOTICES = {
    "erased": "The conversation was erased with its messages, tokens and sessions.",
    "revoked": "The token was revoked; the sessions opened with it have ended.",
}


def conversation_selection(
    request: Request,
    bot: str | None = None,
    status: str | None = None,
    skill: str | None = None,
    version: str | None = None,
    user: str | None = None,
    since: str | None = None,
    q: str | None = None,
) -> Selection[ConversationFilters]:
    """The Conversations page's filters and search."""
    bot_id = chosen_bot(request, bot)
    shown = {
        "bot": bot_id or "",
        "status": choice_filter(status, STATUSES, "status") or "",
        "skill": text_filter(skill, "skill") or "",
        "version": text_filter(version, "bot version") or "",
        "user": text_filter(user, "user id") or "",
        "since": text_filter(since, "updated since") or "",
        "q": text_filter(q, "search") or "",
    }
    if bot_id is None:
        return Selection(shown, None)
    filters = ConversationFilters(
        status=shown["status"] or None,
        skill_id=shown["skill"] or None,
        bot_version=shown["version"] or None,
        user_id=shown["user"] or None,
        updated_after=time_filter(since, "updated since"),
        search=shown["q"] or None,
    )
    return Selection(shown, filters)


@router.get(CONVERSATIONS)
async def conversations_page(
    request: Request,
    _user: Viewer,
    selection: Annotated[Selection[ConversationFilters], Depends(conversation_selection)],
    cursor: str | None = None,
    notice: str | None = None,
) -> Response:
    page = await selection.page(state.service(request).list_conversations, PAGE_SIZE, cursor)
    shown = selection.shown
    context = {
        "bots": served_bots(request),
        "filters": shown,
        "filtered": any(value for name, value in shown.items() if name != "bot"),
        "statuses": STATUSES,
        "rows": [_conversation_row(c) for c in page.items] if page is not None else [],
        "links": page_links(CONVERSATIONS, shown, page),
        "paged": cursor is not None,
        "flashes": [Flash("notice", NOTICES[notice])] if notice in NOTICES else [],
    }
    return render(request, "conversations.html", context)


@router.get(CONVERSATIONS + "/{conversation_id}")
async def conversation_page(
    request: Request, conversation_id: str, _user: Viewer, after: str | None = None, notice: str | None = None
) -> Response:
    flashes = [Flash("notice", NOTICES[notice])] if notice in NOTICES else []
    return await _conversation_page(request, conversation_id, after=_seq(after), flashes=flashes)


@router.get(CONVERSATIONS + "/{conversation_id}/messages")
async def new_messages(
    request: Request, conversation_id: str, _user: Viewer, after: str | None = None
) -> Response:
    """The messages after ``after`` as JSON, for the page's live transcript (at most LIVE_BATCH at a time)."""
    service = state.service(request)
    try:
        async with refusals_as_pages():
            conversation = await _served_conversation(request, conversation_id)
            messages = await service.messages_since(
                conversation.bot_id, conversation_id, after=_seq(after), limit=LIVE_BATCH
            )
    except ConsoleRefused as refused:
        return _json_refusal(refused)
    drawn = [{**item, "at": asdict(item["at"])} for item in map(_message, messages)]
    return JSONResponse({"messages": drawn, "status": conversation.status})


@router.get(CONVERSATIONS + "/{conversation_id}/live")
async def live_transcript(
    request: Request, conversation_id: str, _user: Viewer, after: str | None = None
) -> Response:
    """The messages after ``after`` (or the browser's ``Last-Event-ID``), then the new ones as they are sent, as
    server-sent events (``live.py``)."""
    try:
        async with refusals_as_pages():
            await _served_conversation(request, conversation_id)
        return open_stream(request, conversation_id, _seq(request.headers.get("last-event-id") or after))
    except ConsoleRefused as refused:
        return _json_refusal(refused)


def _json_refusal(refused: ConsoleRefused) -> JSONResponse:
    """A refusal as the live transcript's script reads it."""
    body = {"error": refused.title, "detail": refused.message}
    return JSONResponse(body, status_code=refused.status, headers=refused.headers)


@router.post(CONVERSATIONS + "/{conversation_id}/tokens")
async def issue_token(request: Request, conversation_id: str, _user: Editor) -> Response:
    """Issue a token; the page that answers shows its secret, this once (it is never stored)."""
    form = await form_of(request)
    ttl = text_filter(str(form.get("ttl") or ""), "lifetime")
    uses = _uses(str(form.get("uses") or ""))
    async with refusals_as_pages():
        conversation = await _served_conversation(request, conversation_id)
        secret, record = await state.service(request).issue_token(
            conversation_id, ttl=ttl, uses=uses, bot_id=conversation.bot_id, actor=actor(request)
        )
    issued = {"secret": secret, "id": record.id, "expires": shown_time(record.expires_at)}
    return await _conversation_page(request, conversation_id, issued=issued, status=201)


@router.get(CONVERSATIONS + "/{conversation_id}/erase")
async def erase_confirmation(request: Request, conversation_id: str, _user: Editor) -> Response:
    async with refusals_as_pages():
        conversation = await _served_conversation(request, conversation_id)
        tokens = await state.service(request).conversation_tokens(conversation.bot_id, conversation_id)
    context = {"conversation": _conversation_row(conversation), "token_count": len(tokens)}
    return render(request, "erase.html", context)


@router.post(CONVERSATIONS + "/{conversation_id}/erase")
async def erase(request: Request, conversation_id: str, _user: Editor) -> Response:
    async with refusals_as_pages():
        conversation = await _served_conversation(request, conversation_id)
        await state.service(request).erase_conversation(conversation.bot_id, conversation_id, actor(request))
    return RedirectResponse(f"{CONVERSATIONS}?bot={conversation.bot_id}&notice=erased", status_code=303)


# ------------------------------------------------------------------------------------------------ the page


async def _conversation_page(
    request: Request,
    conversation_id: str,
    *,
    after: int = 0,
    issued: dict[str, Any] | None = None,
    flashes: list[Flash] | None = None,
    status: int = 200,
) -> Response:
    service = state.service(request)
    async with refusals_as_pages():
        conversation = await _served_conversation(request, conversation_id)
        view = await service.view_conversation(
            conversation.bot_id, conversation_id, after=after, limit=TRANSCRIPT_PAGE
        )
        tokens = await service.conversation_tokens(conversation.bot_id, conversation_id)
        trail = await service.list_audit(
            conversation.bot_id, AuditFilters(conversation_id=conversation_id), limit=AUDIT_SHOWN
        )
    now = service.clock()
    context = {
        "conversation": _conversation_row(view.conversation),
        "view": _view(view),
        "messages": [_message(m) for m in view.messages],
        "last_seq": view.messages[-1].seq if view.messages else after,
        "live": view.next_after is None,
        "later": f"{CONVERSATIONS}/{conversation_id}?after={view.next_after}" if view.next_after else None,
        "earlier": f"{CONVERSATIONS}/{conversation_id}" if after else None,
        "tokens": [token_row(t, now) for t in tokens],
        "audit": [audit_row(e) for e in trail.items],
        "more_audit": trail.next_cursor is not None,
        "issued": issued,
        # The conversation's own address, also on the page that answers a form posted to …/tokens.
        "here": f"{CONVERSATIONS}/{conversation_id}",
        "can_edit": _can_edit(request),
        "flashes": flashes or [],
    }
    return render(request, "conversation.html", context, status=status)


async def _served_conversation(request: Request, conversation_id: str) -> ConversationRecord:
    """The conversation, when one of the bots this server runs has it (any other is not found alike)."""
    if len(conversation_id) > 100:
        raise ConsoleRefused(404, "Conversation not found", "There is no such conversation.")
    conversation = await state.service(request).conversation_of(None, conversation_id)
    if conversation.bot_id not in served_bots(request):
        raise ConsoleRefused(404, "Conversation not found", "There is no such conversation.")
    return conversation


def _can_edit(request: Request) -> bool:
    signed = signed_in(request)
    return signed is not None and role_allows(signed.user.role, "editor")


@dataclass(frozen=True)
class ConversationRow:
    """A conversation as the pages list it (attributes, not a dict: a template reads them fastest so)."""

    id: str
    bot_id: str
    status: str
    skill_id: str | None
    node_id: str | None
    user_id: str | None
    messages: int
    updated: ShownTime | None
    href: str


def _conversation_row(conversation: ConversationRecord | ConversationSummary) -> ConversationRow:
    user_id = conversation.user.get("id") if isinstance(conversation.user, dict) else None
    return ConversationRow(
        id=conversation.id,
        bot_id=conversation.bot_id,
        status=conversation.status,
        skill_id=conversation.skill_id,
        node_id=conversation.node_id,
        user_id=user_id if isinstance(user_id, str) else None,
        messages=conversation.last_seq,
        updated=shown_time(conversation.updated_at),
        href=f"{CONVERSATIONS}/{conversation.id}",
    )


def _view(view: ConversationView) -> dict[str, Any]:
    variables = [
        {"name": name, "value": _shown_value(value)} for name, value in sorted(view.variables.items())
    ]
    pending = view.pending or {}
    return {
        "started": shown_time(view.conversation.created_at),
        "bot_version": view.bot_version,
        "waiting": view.waiting,
        "variables": variables,
        "pending": view.pending is not None,
        "pending_node": pending.get("node"),
        "pending_input": pending.get("input"),
        "pending_choices": [choice_text(c) for c in pending.get("choices") or []],
    }


def _message(message: MessageRecord) -> dict[str, Any]:
    """A message as the page draws it (and the live endpoints send it)."""
    return drawn_message(message.to_api())


def audit_row(event: AuditRecord) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": shown_time(event.at),
        "kind": event.kind,
        "outcome": event.outcome,
        "actor": audit_actor(event),
        "conversation_id": event.conversation_id,
        "token_id": event.token_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
    }


def _shown_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def _seq(value: str | None) -> int:
    if not value:
        return 0
    seq = parse_seq(value)
    if seq is None:
        raise ConsoleRefused(400, "Unknown position", f"'after' is a message number, 0 to {MAX_SEQ}.")
    return seq


def _uses(value: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise ConsoleRefused(
            400, "Not done", "Uses is a whole number from 1 to 1,000,000, or empty for the default."
        )
    return int(value)
