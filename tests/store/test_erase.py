"""Erasing a conversation leaves nothing personal: no row, no copy in the SQLite files, no IP in its audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rejoinder.store import NewAudit, Store
from tests.store.factories import NOW, start, turn

SECRET_WORDS = "my card is 4111-1111-1111-1111 and I live at 12 Erasure Lane"
KEPT_WORDS = "a neighbour's conversation that stays"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'erase.db'}")
    await store.upgrade()
    yield store
    await store.close()


def files_holding(directory: Path, text: str) -> list[str]:
    """The database files (main, WAL, shared memory) whose bytes contain ``text``."""
    needle = text.encode()
    return sorted(path.name for path in directory.glob("erase.db*") if needle in path.read_bytes())


async def test_the_erased_text_leaves_the_database_files_within_seconds(
    sqlite_store: Store, tmp_path: Path
) -> None:
    version = await start(
        sqlite_store, "cnv_gone", customer=SECRET_WORDS, state={"variables": {"card": SECRET_WORDS}}
    )
    for n in range(3):
        committed = await sqlite_store.conversations.commit_turn(
            turn(
                "cnv_gone",
                version=version,
                customer=f"{SECRET_WORDS} #{n}",
                replies=[f"noted: {SECRET_WORDS}"],
            )
        )
        version = committed.version
    await start(sqlite_store, "cnv_kept", customer=KEPT_WORDS)
    assert files_holding(tmp_path, SECRET_WORDS)  # the test can see the text where it is

    assert await sqlite_store.conversations.delete("cnv_gone") is True

    deadline = time.monotonic() + 10  # it takes milliseconds; a busy machine gets plenty more
    for _ in range(1000):
        if not files_holding(tmp_path, SECRET_WORDS) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert files_holding(tmp_path, SECRET_WORDS) == []
    # The other conversation is whole, and writing goes on.
    kept = await sqlite_store.conversations.messages_after("cnv_kept")
    assert [m.payload["text"] for m in kept] == [KEPT_WORDS, "hi there"]
    await sqlite_store.conversations.commit_turn(turn("cnv_kept", version=1, customer="still here"))


async def test_an_erased_conversations_audit_events_keep_what_happened_but_no_ip_or_user_agent(
    sqlite_store: Store,
) -> None:
    for conversation_id in ("cnv_gone", "cnv_kept"):
        await start(sqlite_store, conversation_id)
        await sqlite_store.audit.add(
            NewAudit(
                kind="resume",
                bot_id="shop",
                outcome="ok",
                at=NOW,
                conversation_id=conversation_id,
                token_id="tok_1",
                ip="203.0.113.7",
                user_agent="Mozilla/5.0 (the customer's phone)",
            )
        )

    await sqlite_store.conversations.delete("cnv_gone")

    gone, _ = await sqlite_store.audit.list(conversation_id="cnv_gone")
    assert [(e.kind, e.outcome, e.token_id, e.ip, e.user_agent) for e in gone] == [
        ("resume", "ok", "tok_1", None, None)
    ]
    kept, _ = await sqlite_store.audit.list(conversation_id="cnv_kept")
    assert [(e.ip, e.user_agent) for e in kept] == [("203.0.113.7", "Mozilla/5.0 (the customer's phone)")]
