"""Quotas of anonymous clients: conversations started and messages sent, per client IP (IPv6 /64) and per bot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa

from rejoinder.config import Settings
from rejoinder.skills import Bot
from rejoinder.store.tables import conversations

if TYPE_CHECKING:
    from tests.helpers.app import Launch, Server


async def post_from(server: Server, ip: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """A request sent by a client at ``ip`` to the same app."""
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
        return await client.post(path, json=body, headers=headers)


async def start_from(server: Server, ip: str, text: str = "hello") -> Any:
    return await post_from(server, ip, "/v1/conversations", {"text": text}, server.sdk())


async def stored_conversations(server: Server) -> int:
    def count(conn: sa.Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(conversations)).scalar_one())

    return await server.store.database.read(count)


def assert_rate_limited(answer: Any, what: str) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "rate_limited"
    assert what in answer.json()["detail"]
    assert 1 <= int(answer.headers["retry-after"]) <= 60


async def test_one_client_may_start_only_so_many_conversations_a_minute(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, quota_starts_per_ip=3) as server:
        for _ in range(3):
            assert (await start_from(server, "198.51.100.7", "x" * 4000)).status_code == 201

        refused = await start_from(server, "198.51.100.7", "x" * 4000)

        assert_rate_limited(refused, "new conversations from this address")
        assert await stored_conversations(server) == 3  # nothing was stored for the refused start
        assert (await start_from(server, "198.51.100.8")).status_code == 201  # another client


async def test_an_ipv6_client_is_one_client_across_its_slash_64(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, quota_starts_per_ip=2) as server:
        assert (await start_from(server, "2001:db8:7:7::1")).status_code == 201
        assert (await start_from(server, "2001:db8:7:7:a:b:c:d")).status_code == 201

        assert_rate_limited(await start_from(server, "2001:db8:7:7::ffff"), "from this address")
        assert (await start_from(server, "2001:db8:7:8::1")).status_code == 201


async def test_all_clients_together_may_start_only_so_many_conversations_with_one_bot(
    tmp_path: Path, shop_bot: Bot, other_bot: Bot, launch: Launch
) -> None:
    bots = {"shop": shop_bot, "other": other_bot}
    async with launch(tmp_path / "db.sqlite", bots, quota_starts_per_bot=4) as server:
        for n in range(4):
            assert (await start_from(server, f"10.0.0.{n}")).status_code == 201

        assert_rate_limited(await start_from(server, "10.0.0.99"), "new conversations with this bot")
        other = await post_from(server, "10.0.0.99", "/v1/conversations", {"text": "hi"}, server.sdk("other"))
        assert other.status_code == 201  # another bot has a count of its own


async def test_one_client_may_send_only_so_many_messages_a_minute(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, quota_messages_per_ip=3) as server:
        started = await server.start()
        path = f"/v1/conversations/{started['conversation_id']}/messages"
        headers = server.bearer(started["session"])
        for n in range(3):
            sent = await server.client.post(
                path, json={"text": f"m{n}", "client_message_id": f"m{n}"}, headers=headers
            )
            assert sent.status_code == 200, sent.text

        refused = await server.client.post(
            path, json={"text": "one more", "client_message_id": "m3"}, headers=headers
        )

        assert_rate_limited(refused, "messages from this address")
        history = (await server.client.get(path, headers=headers)).json()["messages"]
        assert "one more" not in [m["text"] for m in history]


async def test_all_clients_together_may_send_only_so_many_messages_to_one_bot(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, quota_messages_per_bot=2) as server:
        first, second = await server.start(), await server.start()
        for n, started in enumerate((first, second)):
            sent = await post_from(
                server,
                f"10.1.0.{n}",
                f"/v1/conversations/{started['conversation_id']}/messages",
                {"text": "hi", "client_message_id": "a"},
                server.bearer(started["session"]),
            )
            assert sent.status_code == 200

        refused = await post_from(
            server,
            "10.1.0.9",
            f"/v1/conversations/{first['conversation_id']}/messages",
            {"text": "again", "client_message_id": "b"},
            server.bearer(first["session"]),
        )
        assert_rate_limited(refused, "messages to this bot")


async def test_the_defaults_stop_a_flood_of_conversations_from_one_client(
    tmp_path: Path, shop_bot: Bot, launch: Launch
) -> None:
    """The flood that made 1,400 conversations in a minute: with the default quotas it stops at 20."""
    # The suite turns quotas off in its environment; these are the settings' own defaults.
    names = ("quota_starts_per_ip", "quota_starts_per_bot", "quota_messages_per_ip", "quota_messages_per_bot")
    defaults = {name: Settings.model_fields[name].default for name in names}
    assert defaults["quota_starts_per_ip"] == 20
    async with launch(tmp_path / "db.sqlite", {"shop": shop_bot}, **defaults) as server:
        answers = [(await start_from(server, "203.0.113.9", "y" * 4000)).status_code for _ in range(40)]

        assert answers == [201] * 20 + [429] * 20
        assert await stored_conversations(server) == 20
