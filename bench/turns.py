"""In-process turns per second through the turn service on SQLite, with a durable commit each turn.

Baseline, same run: the commit alone (``Store.conversations.commit_turn`` with the same rows, no load, no engine), i.e. the least a
durable turn can cost on this database. Also: the p50 latency of turn 1,000 of one conversation against its turn 10.

    python bench/turns.py [--turns 2000] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rejoinder.service import ConversationService
from rejoinder.skills import load_bot
from rejoinder.store import NewMessage, Store, TurnWrite

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"


async def service_turns(service: ConversationService, turns: int, concurrency: int) -> float:
    conversations = [
        (await service.start("shop", event="welcome")).conversation_id for _ in range(concurrency)
    ]
    per_worker = turns // concurrency

    async def talk(conversation_id: str) -> None:
        for _ in range(per_worker):
            await service.send(conversation_id, text="something else")  # not understood → menu again

    started = time.perf_counter()
    await asyncio.gather(*(talk(c) for c in conversations))
    return per_worker * concurrency / (time.perf_counter() - started)


async def commit_only(store: Store, turns: int, concurrency: int) -> float:
    conversation_ids = []
    for i in range(concurrency):
        conversation_id = f"cnv_base{i}"
        await store.conversations.commit_turn(_write(conversation_id, create=True, version=0))
        conversation_ids.append(conversation_id)
    per_worker = turns // concurrency

    async def write(conversation_id: str) -> None:
        version = 1
        for _ in range(per_worker):
            version = (
                await store.conversations.commit_turn(_write(conversation_id, create=False, version=version))
            ).version

    started = time.perf_counter()
    await asyncio.gather(*(write(c) for c in conversation_ids))
    return per_worker * concurrency / (time.perf_counter() - started)


def _write(conversation_id: str, *, create: bool, version: int) -> TurnWrite:
    state = {
        "variables": {"topic": "x"},
        "skill_id": "welcome",
        "node_id": "menu",
        "waiting": "customer",
        "retries": 0,
        "status": "active",
    }
    return TurnWrite(
        conversation_id=conversation_id,
        bot_id="shop",
        create=create,
        expected_version=version,
        state=state,
        status="active",
        skill_id="welcome",
        node_id="menu",
        messages=[
            NewMessage("customer", "text", {"text": "something else"}),
            NewMessage("bot", "text", {"text": "Sorry, I can help with your orders or our opening hours."}),
            NewMessage(
                "bot",
                "buttons",
                {
                    "text": "Hi! What can I do for you?",
                    "buttons": [{"label": "My orders", "value": "orders"}],
                },
            ),
        ],
        tokens=[],
        pending={"node": "menu", "input": "choice"},
        now=datetime.now(UTC),
    )


async def long_conversation(
    service: ConversationService, turns: int, samples: int = 200
) -> tuple[float, float]:
    """p50 of a turn on a conversation at turn ~10 and at turn ~``turns``, measured interleaved (noise hits both)."""

    async def conversation_at(n: int) -> str:
        conversation_id = (await service.start("shop", event="welcome")).conversation_id
        for _ in range(n):
            await service.send(conversation_id, text="something else")
        return conversation_id

    async def timed(conversation_id: str) -> float:
        started = time.perf_counter()
        await service.send(conversation_id, text="something else")
        return time.perf_counter() - started

    long_one = await conversation_at(turns)
    short, long = [], []
    for _ in range(samples):
        short.append(await timed(await conversation_at(9)))
        long.append(await timed(long_one))
    return statistics.median(short), statistics.median(long)


async def main(turns: int, concurrency: int, long_turns: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{tmp}/bench.db")
        await store.upgrade()
        bot = load_bot(SHOP)
        service = ConversationService(store, {bot.id: bot}, environ={})
        await service_turns(service, 200, concurrency)  # warm up
        ours = await service_turns(service, turns, concurrency)
        base = await commit_only(store, turns, concurrency)
        early, late = await long_conversation(service, long_turns)
        await service.aclose()
        await store.close()
    print(
        f"turn service:  {ours:>8,.0f} turns/s  (load + engine + durable commit, {concurrency} conversations at once)"
    )
    print(
        f"commit only:   {base:>8,.0f} turns/s  (baseline: the same rows, Store.conversations.commit_turn alone)"
    )
    print(f"ratio service/commit-only: {ours / base:.2f}")
    print(
        f"long conversation: p50 of turns ~10: {early * 1000:.2f} ms, of turns ~{long_turns}: {late * 1000:.2f} ms, "
        f"ratio {late / early:.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--long", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.concurrency, args.long))
