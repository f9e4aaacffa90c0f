"""Turn statistics of ``rejoinder serve --workers 2``: each worker's counts reach ``turn_stats`` when it stops, and
the two add up in one row per bot and hour."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rejoinder.store import Store
from rejoinder.store.records import TurnStats
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import ServeProcess, serve_environment

TURNS = 6
# Two workers start, run and stop: seconds on a quiet machine, minutes on a busy one.
pytestmark = pytest.mark.timeout(400)


async def stored(database: Path) -> list[TurnStats]:
    store = Store.from_url(f"sqlite:///{database}")
    try:
        return await store.turn_stats.since("shop", datetime.now(UTC) - timedelta(days=1))
    finally:
        await store.close()


def test_two_workers_flush_their_turns_on_shutdown_into_one_sum(tmp_path: Path) -> None:
    database = tmp_path / "workers.db"
    with ServeProcess(EXAMPLE_BOT, serve_environment(database), tmp_path / "server.log", workers=2) as server:
        server.create_keys()
        server.start()
        for _ in range(TURNS):
            # A new connection per request: the kernel hands them to either worker.
            started = httpx.post(
                f"{server.base}/v1/conversations",
                json={"event": "welcome"},
                headers={"Authorization": f"Bearer {server.sdk_key}"},
                timeout=30,
            )
            assert started.status_code == 201, started.text
        # Nothing is written per turn: the minute has not come, so the table is still empty.
        assert asyncio.run(stored(database)) == []
        server.stop(grace=90)

    rows = asyncio.run(stored(database))
    assert sum(row.turns for row in rows) == TURNS
    assert sum(sum(row.latency) for row in rows) == TURNS
    assert len({row.hour for row in rows}) == len(rows)  # one row per hour, whichever worker wrote first
