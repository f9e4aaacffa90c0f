"""``GET /v1/widget``: what the web widget needs to know about its bot before a conversation starts.

The SDK calls it at ``initialize`` with the bot's SDK key, so that the bot's ``widget:`` settings (title, accent,
avatar, name) reach every page without a change to the page, and ``Alli.event()`` with no name knows the bot's
welcome event and whether a skill answers it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from rejoinder.server.auth import KeyCaller, require_sdk_key
from rejoinder.server.errors import problem_responses

router = APIRouter(prefix="/v1", tags=["client"])


class WidgetOut(BaseModel):
    title: str | None = Field(description="The chat window's title (the page's `title` option wins).")
    accent: str | None = Field(description="The widget's accent colour, `#rgb` or `#rrggbb`.")
    avatar: str | None = Field(description="An http(s) URL of the bot's picture, shown with its messages.")
    name: str = Field(description="The name shown with the bot's messages.")
    welcome_event: str = Field(description="The event `Alli.event()` with no name starts.")
    welcome_skill: bool = Field(description="Whether a skill is triggered by `welcome_event`.")


@router.get(
    "/widget",
    response_model=WidgetOut,
    summary="The widget's settings of the SDK key's bot",
    responses=problem_responses(401, 403, 503),
)
async def widget_settings(caller: Annotated[KeyCaller, Depends(require_sdk_key)]) -> WidgetOut:
    config = caller.bot.config
    widget = config.widget
    return WidgetOut(
        title=widget.title,
        accent=widget.accent,
        avatar=widget.avatar,
        name=widget.greeting_name or widget.title or config.name or config.id,
        welcome_event=config.welcome_event,
        welcome_skill=caller.bot.event_skill(config.welcome_event) is not None,
    )
