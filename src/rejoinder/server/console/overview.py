"""The console's first page: the bots this server runs, each with its version and how many skills it has."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rejoinder.server import state
from rejoinder.server.console.pages import render
from rejoinder.server.console.session import PREFIX, Viewer

router = APIRouter()


@router.get(PREFIX)
async def overview(request: Request, _user: Viewer) -> Response:
    service = state.service(request)
    bots = [service.bot(bot_id) for bot_id in sorted(request.app.state.bots)]
    rows = [
        {"id": bot.id, "name": bot.config.name or bot.id, "version": bot.version, "skills": len(bot.skills)}
        for bot in bots
    ]
    return render(request, "overview.html", {"bots": rows})
