"""Turn statistics of ``rejoinder serve --workers 2``: each worker's counts reach ``turn_stats`` when it stops, and
the two add up in one row per bot and hour."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from rejoinder.store import Store
from rejoinder.store.records import TurnStats
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import (
    REJOINDER,
    create_keys,
    ending,
    free_port,
    serve_environment,
    wait_until_up,
)

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
    env = serve_environment(database)
    sdk_key = create_keys(env)["sdk_key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [REJOINDER, "serve", str(EXAMPLE_BOT), "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=log,
            text=True,
        )
    try:
        wait_until_up(base, server, timeout=90)
        for _ in range(TURNS):
            # A new connection per request: the kernel hands them to either worker.
            started = httpx.post(
                f"{base}/v1/conversations",
                json={"event": "welcome"},
                headers={"Authorization": f"Bearer {sdk_key}"},
                timeout=30,
            )
            assert started.status_code == 201, started.text
        # Nothing is written per turn: the minute has not come, so the table is still empty.
        assert asyncio.run(stored(database)) == []
    finally:
        server.send_signal(signal.SIGTERM)
        with ending(server, signal.SIGKILL, grace=0):
            server.wait(timeout=90)

    rows = asyncio.run(stored(database))
    assert sum(row.turns for row in rows) == TURNS
    assert sum(sum(row.latency) for row in rows) == TURNS
    assert len({row.hour for row in rows}) == len(rows)  # one row per hour, whichever worker wrote first
