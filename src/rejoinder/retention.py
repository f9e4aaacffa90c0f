"""Retention: conversations idle for longer than their bot's ``retention`` are erased, a short batch at a time.

The server runs :func:`purge_loop` in the background; ``rejoinder db purge`` runs :func:`purge_bot` once. Each batch
is one short write transaction (erased as ``DELETE /v1/conversations/{id}`` erases), with a pause between batches,
so turns keep being written while a large backlog is purged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from rejoinder.skills.model import Bot, parse_duration
from rejoinder.store import Store, StoreUnavailable

log = logging.getLogger("rejoinder.retention")

PURGE_BATCH = 100  # conversations erased per write transaction
PURGE_PAUSE = 0.05  # seconds between two batches: other writes go first


def utcnow() -> datetime:
    return datetime.now(UTC)


def cutoff(retention: str, now: datetime) -> datetime:
    """Conversations last updated before this moment are past ``retention``."""
    return now - parse_duration(retention)


async def purge_bot(
    store: Store,
    bot_id: str,
    before: datetime,
    *,
    batch: int = PURGE_BATCH,
    pause: float = PURGE_PAUSE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Erase the bot's conversations last updated before ``before``, ``batch`` at a time; returns how many.

    ``progress`` hears how many each batch erased.
    """
    total = 0
    while True:
        erased = await store.conversations.purge_idle(bot_id, before, batch)
        total += erased
        if progress is not None:
            progress(erased)
        if erased < batch:
            return total
        await asyncio.sleep(pause)


async def purge_once(store: Store, bots: Mapping[str, Bot], now: datetime) -> dict[str, int]:
    """One pass over every bot with a retention period: how many conversations each lost."""
    erased: dict[str, int] = {}
    for bot in bots.values():
        if bot.config.retention is None:
            continue
        erased[bot.id] = count = await purge_bot(store, bot.id, cutoff(bot.config.retention, now))
        if count:
            log.info(
                "erased %d conversations of bot %s idle for over %s", count, bot.id, bot.config.retention
            )
    return erased


async def purge_loop(
    store: Store, bots: Mapping[str, Bot], interval: float, *, clock: Callable[[], datetime] = utcnow
) -> None:
    """Purge at start, then every ``interval`` seconds, until cancelled. A database outage skips a pass."""
    while True:
        try:
            await purge_once(store, bots, clock())
        except StoreUnavailable as error:
            log.warning("retention purge skipped, the database is unavailable: %s", error)
        except Exception:  # a bug must not end purging for the life of the process
            log.exception("retention purge failed; trying again at the next pass")
        await asyncio.sleep(interval)
