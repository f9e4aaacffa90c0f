"""``rejoinder conversations | tokens | audit`` on a SQLite database of their own, with conversations a real
service ran on the example shop bot (recorded as a server records it)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app, conversations
from rejoinder.config import get_settings
from rejoinder.service import ConversationService, TokenRefused
from rejoinder.skills import load_bot
from rejoinder.store import Store
from tests.helpers.bots import EXAMPLE_BOT

runner = CliRunner()
BOT_DIR = str(EXAMPLE_BOT)


@dataclass(frozen=True)
class Seeded:
    url: str
    waiting: str  # a conversation at the welcome question, with a token
    other: str  # a second conversation
    token_id: str
    token: str


async def _seed(url: str) -> Seeded:
    bot = load_bot(EXAMPLE_BOT)
    store = Store.from_url(url)
    await store.upgrade()
    now = datetime.now(UTC)
    await store.bots.upsert_bot(bot.id, bot.config.name, bot.version, bot.config.model_dump(mode="json"), now)
    await store.bots.save_bot(bot, now)
    service = ConversationService(store, {bot.id: bot})
    try:
        first = await service.start(bot.id, event="welcome", variables={}, user={"id": "u-1"})
        second = await service.start(bot.id, event="welcome")
        secret, token = await service.issue_token(first.conversation_id)
        await service.resume(bot.id, secret)
        return Seeded(url, first.conversation_id, second.conversation_id, token.id, secret)
    finally:
        await service.aclose()
        await store.close()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Seeded]:
    url = f"sqlite:///{tmp_path / 'rejoinder.db'}"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", url)
    get_settings.cache_clear()
    yield asyncio.run(_seed(url))
    get_settings.cache_clear()


def ok(*args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(*args: str, stdin: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.stderr


def resume_outcome(url: str, secret: str) -> str:
    async def attempt() -> str:
        store = Store.from_url(url)
        bot = load_bot(EXAMPLE_BOT)
        service = ConversationService(store, {bot.id: bot})
        try:
            await service.resume(bot.id, secret)
        except TokenRefused as refusal:
            return refusal.code
        finally:
            await service.aclose()
            await store.close()
        return "ok"

    return asyncio.run(attempt())


def test_conversations_list_as_a_table_and_as_json(seeded: Seeded) -> None:
    table = ok("conversations", "list", BOT_DIR)
    assert seeded.waiting in table and seeded.other in table and "Conversations (2)" in table

    listed = json.loads(ok("conversations", "list", BOT_DIR, "--json", "--limit", "1"))
    assert [c["id"] for c in listed] == [seeded.other]  # the most recently updated first
    assert listed[0]["status"] == "active" and listed[0]["bot_id"] == "shop"
    assert json.loads(ok("conversations", "list", BOT_DIR, "--json", "--status", "closed")) == []
    assert len(json.loads(ok("conversations", "list", BOT_DIR, "--json", "--since", "1h"))) == 2
    assert json.loads(ok("conversations", "list", BOT_DIR, "--json", "--since", "2999-01-01T00:00:00Z")) == []
    assert (
        "neither a duration"
        in runner.invoke(app, ["conversations", "list", BOT_DIR, "--since", "soon"]).output
    )


def test_conversations_show_prints_the_transcript_variables_and_what_it_waits_for(seeded: Seeded) -> None:
    shown = json.loads(ok("conversations", "show", seeded.waiting, "--json"))
    assert shown["id"] == seeded.waiting and shown["user"] == {"id": "u-1"}
    assert shown["messages"] and shown["messages"][0]["sender"] == "bot"
    assert shown["pending"] is not None

    text = ok("conversations", "show", seeded.waiting)
    assert f"{seeded.waiting} · bot shop · active" in text
    assert f"bot › {shown['messages'][0]['text']}" in text
    assert "Variables" in text and "Waiting for" in text

    assert "no conversation 'cnv_nope'" in refused("conversations", "show", "cnv_nope")


def test_erase_asks_on_a_terminal_and_refuses_without_yes_otherwise(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "refusing to erase without --yes" in refused("conversations", "erase", seeded.other)

    monkeypatch.setattr(conversations, "_interactive", lambda: True)
    declined = runner.invoke(app, ["conversations", "erase", seeded.other], input="n\n")
    assert declined.exit_code == 1 and "Nothing erased." in declined.stdout
    assert seeded.other in ok("conversations", "list", BOT_DIR)

    assert f"Erased {seeded.other}." in ok("conversations", "erase", seeded.other, stdin="y\n")
    assert seeded.other not in ok("conversations", "list", BOT_DIR)
    assert "no conversation" in refused("conversations", "erase", seeded.other, "--yes")

    assert f"Erased {seeded.waiting}." in ok("conversations", "erase", seeded.waiting, "--yes")
    trail = json.loads(ok("audit", BOT_DIR, "--json", "--conversation", seeded.waiting))
    assert trail[0]["kind"] == "conversation_erased" and trail[0]["actor"] == "cli"


def test_tokens_list_issue_and_revoke(seeded: Seeded) -> None:
    listed = json.loads(ok("tokens", "list", BOT_DIR, "--json"))
    assert [(t["id"], t["status"], t["uses"]) for t in listed] == [(seeded.token_id, "active", 1)]
    assert seeded.token_id in ok("tokens", "list", BOT_DIR, "--conversation", seeded.waiting)
    assert json.loads(ok("tokens", "list", BOT_DIR, "--json", "--conversation", seeded.other)) == []

    issued = json.loads(ok("tokens", "issue", seeded.other, "--ttl", "2h", "--uses", "1", "--json"))
    assert issued["conversation_id"] == seeded.other and issued["max_uses"] == 1
    assert issued["token"].startswith("rjt_")
    printed = ok("tokens", "issue", seeded.other)
    assert "shown only this once" in printed and "rjt_" in printed
    assert resume_outcome(seeded.url, issued["token"]) == "ok"
    assert resume_outcome(seeded.url, issued["token"]) == "token_used_up"

    assert f"Revoked {seeded.token_id}" in ok("tokens", "revoke", seeded.token_id)
    assert resume_outcome(seeded.url, seeded.token) == "token_revoked"
    statuses = {t["id"]: t["status"] for t in json.loads(ok("tokens", "list", BOT_DIR, "--json"))}
    assert statuses[seeded.token_id] == "revoked" and statuses[issued["id"]] == "used_up"

    assert "no token 'tok_nope'" in refused("tokens", "revoke", "tok_nope")
    assert "no conversation 'cnv_nope'" in refused("tokens", "issue", "cnv_nope")
    assert "duration" in refused("tokens", "issue", seeded.other, "--ttl", "forever")


def test_audit_as_a_table_json_and_csv(seeded: Seeded) -> None:
    ok("tokens", "revoke", seeded.token_id)
    events = json.loads(ok("audit", BOT_DIR, "--json"))
    assert [(e["kind"], e["outcome"]) for e in events] == [("token_revoked", "ok"), ("resume", "ok")]
    assert events[0]["actor"] == "cli" and events[1]["conversation_id"] == seeded.waiting
    assert "token_revoked" in ok("audit", BOT_DIR) and "Audit trail (2)" in ok("audit", BOT_DIR)

    rows = list(csv.reader(io.StringIO(ok("audit", BOT_DIR, "--csv"))))
    assert rows[0][:4] == ["id", "at", "kind", "outcome"]
    assert [row[2] for row in rows[1:]] == ["token_revoked", "resume"]
    assert json.loads(ok("audit", BOT_DIR, "--json", "--conversation", seeded.other)) == []
    assert json.loads(ok("audit", BOT_DIR, "--json", "--since", "2999-01-01T00:00:00")) == []
    assert "choose one" in refused("audit", BOT_DIR, "--json", "--csv")


def test_a_bad_bot_directory_or_database_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REJOINDER_DATABASE_URL", f"sqlite:///{tmp_path / 'rejoinder.db'}")
    get_settings.cache_clear()
    try:
        assert refused("conversations", "list", str(tmp_path / "missing")).strip()
        monkeypatch.setenv("REJOINDER_DATABASE_URL", "mysql://nowhere/db")
        get_settings.cache_clear()
        assert "REJOINDER_DATABASE_URL" in refused("tokens", "list", BOT_DIR)
    finally:
        get_settings.cache_clear()
