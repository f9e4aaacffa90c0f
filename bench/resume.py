"""Resume by token, in process: verify the token, load the conversation's state and its history of 50+ messages.

Measured on a temporary SQLite database through the real app (lifespan, middleware, routes) over httpx's
ASGITransport, in three ways, interleaved so that all three see the same machine:

* ``POST /v1/conversations/resume``: server time, from the moment the app is called until its answer is sent
  (the client's own work is left out; its round trip is shown too). It verifies the token, spends one use of it,
  writes the audit row, opens a session and loads state and history. Target p50 <= 3 ms.
* ``ConversationService.resume`` alone: the same without HTTP and without the session.
* Baseline: ``GET /healthz`` through the same app and transport: what any request costs.

    python bench/resume.py [--conversations 20] [--messages 50] [--resumes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.service import ConversationService
from rejoinder.service.keys import create_keys
from rejoinder.skills import load_bot
from rejoinder.store import Store

SHOP = Path(__file__).resolve().parents[1] / "examples" / "shop"
P50_TARGET_MS = 3.0
WARMUP = 50


class ServerTime:
    """ASGI wrapper: how long the app took for the last request, from call to answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.last = time.perf_counter() - started


async def prepare(service: ConversationService, conversations: int, messages: int) -> list[str]:
    """Conversations with at least ``messages`` messages each, and a token for each (unlimited uses)."""
    tokens = []
    for _ in range(conversations):
        started = await service.start("shop", event="welcome")
        count = len(started.messages)
        while count < messages:
            outcome = await service.send(started.conversation_id, text="something else")
            count += len(outcome.messages)
        secret, _record = await service.issue_token(started.conversation_id, ttl="1h")
        tokens.append(secret)
    return tokens


def summary(label: str, samples_ms: list[float]) -> str:
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return (
        f"{label:<44} p50 {statistics.median(samples_ms):6.3f} ms   p90 {q[89]:6.3f} ms   p99 {q[98]:6.3f} ms"
    )


async def run(conversations: int, messages: int, resumes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rejoinder-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        app = create_app(
            {"shop": load_bot(SHOP)},
            store=Store.from_url(url),
            settings=Settings(database_url=url, redis_url=None),
            environ={"SHOP_BACKEND": "http://127.0.0.1:9"},
        )
        async with app.router.lifespan_context(app):
            service: ConversationService = app.state.service
            keys = await create_keys(app.state.store, "shop", now=datetime.now(UTC))
            tokens = await prepare(service, conversations, messages)
            timed = ServerTime(app)
            transport = httpx.ASGITransport(app=timed, client=("127.0.0.1", 50000))
            sdk = {"Authorization": f"Bearer {keys.sdk_key}"}
            health_ms: list[float] = []
            resume_ms: list[float] = []
            round_trip_ms: list[float] = []
            service_ms: list[float] = []
            history: list[int] = []
            async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.bench") as client:
                for index in range(WARMUP + resumes):
                    token = tokens[index % len(tokens)]
                    await client.get("/healthz")
                    health = timed.last
                    sent = time.perf_counter()
                    response = await client.post(
                        "/v1/conversations/resume", json={"token": token}, headers=sdk
                    )
                    round_trip = time.perf_counter() - sent
                    if response.status_code != 200:
                        raise RuntimeError(f"resume answered {response.status_code}: {response.text}")
                    resumed = timed.last
                    started = time.perf_counter()
                    outcome = await service.resume("shop", token, ip="127.0.0.1", user_agent="bench")
                    alone = time.perf_counter() - started
                    if index >= WARMUP:
                        health_ms.append(health * 1000)
                        resume_ms.append(resumed * 1000)
                        round_trip_ms.append(round_trip * 1000)
                        service_ms.append(alone * 1000)
                        history.append(len(outcome.messages))

    print(
        f"{resumes} resumes over {conversations} conversations of {min(history)}-{max(history)} messages each\n"
    )
    print(summary("GET /healthz, server time (baseline)", health_ms))
    print(summary("POST /v1/conversations/resume, server time", resume_ms))
    print(summary("POST /v1/conversations/resume, round trip", round_trip_ms))
    print(summary("ConversationService.resume alone", service_ms))
    p50 = statistics.median(resume_ms)
    verdict = "ok" if p50 <= P50_TARGET_MS else "MISSED"
    print(f"\nresume p50 server time: {p50:.2f} ms (target <= {P50_TARGET_MS:.0f} ms) {verdict}")
    print(f"ratio resume / healthz (p50): {p50 / statistics.median(health_ms):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument(
        "--messages", type=int, default=50, help="at least this many messages per conversation"
    )
    parser.add_argument("--resumes", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.conversations, args.messages, args.resumes))


if __name__ == "__main__":
    main()
