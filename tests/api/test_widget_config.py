"""GET /v1/widget: the bot's widget settings and welcome event, for the SDK at initialize."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rejoinder.skills import Bot, BotConfig
from tests.helpers.app import ALLOWED_ORIGIN, Launch, Server


async def test_the_example_bot_names_itself_and_its_welcome_skill(server: Server) -> None:
    answer = await server.client.get("/v1/widget", headers=server.sdk(Origin=ALLOWED_ORIGIN))

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "title": "Demo Shop",
        "accent": "#2f5d50",
        "avatar": None,
        "name": "Demo Shop assistant",
        "welcome_event": "welcome",
        "welcome_skill": True,
    }


async def test_the_bots_widget_settings_reach_the_page(tmp_path: Path, shop_bot: Bot, launch: Launch) -> None:
    config = {
        **shop_bot.config.model_dump(),
        "welcome_event": "hello",
        "widget": {
            "title": "Acme help",
            "accent": "#0f766e",
            "avatar": "https://acme.example/bot.png",
            "greeting_name": "Ada",
        },
    }
    bot = Bot(config=BotConfig.model_validate(config), skills=shop_bot.skills)
    bare = BotConfig.model_validate({"id": "bare"})
    assert (bare.welcome_event, bare.widget.title, bare.widget.accent) == ("welcome", None, None)
    async with launch(tmp_path / "w.db", {"shop": bot}) as server:
        answer = await server.client.get("/v1/widget", headers=server.sdk())

    assert answer.json() == {
        "title": "Acme help",
        "accent": "#0f766e",
        "avatar": "https://acme.example/bot.png",
        "name": "Ada",
        "welcome_event": "hello",
        "welcome_skill": False,  # no skill of the shop is triggered by "hello"
    }


async def test_the_widget_route_takes_the_sdk_key_from_allowed_origins(server: Server) -> None:
    stranger = await server.client.get("/v1/widget", headers=server.sdk(Origin="https://evil.example"))
    no_key = await server.client.get("/v1/widget")

    assert stranger.status_code == 403
    assert stranger.json()["type"] == "origin_not_allowed"
    assert stranger.headers["access-control-allow-origin"] == "*"
    assert no_key.status_code == 401


@pytest.mark.parametrize(
    ("widget", "message"),
    [
        ({"accent": "blue"}, "String should match pattern"),
        ({"avatar": "javascript:alert(1)"}, r"avatar must be an http\(s\) URL"),
        ({"title": "x" * 61}, "at most 60 characters"),
        ({"colour": "#fff"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_widget_settings_are_refused(widget: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BotConfig.model_validate({"id": "shop", "widget": widget})
