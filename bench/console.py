"""The operator's lists at 100,000 conversations: first page of the conversations list and a search, against
``/healthz`` in the same run (QUALITY.md: first page <= 10 x /healthz server time).

Seeds a SQLite file straight through the store's tables — 100,000
conversations over 30 days, each with four messages and a token, a few words of which a search finds — then
starts a real server (``rejoinder serve`` for the example shop, as echo_server.py runs it) and asks, in
interleaved rounds so that all see the same machine:

* ``GET /healthz``: what any request costs;
* ``GET /v1/conversations?limit=50``: the admin API's first page (secret key);
* ``GET /dashboard/conversations``: the console's first page, and ``?q=refund`` (a search of the customers' words)
  and ``?q=<token id>`` (signed in as a viewer, when the server has a console).

Server time is the ``duration_ms`` of each request's access log line (from the app's first byte in to its last
byte out); the client's round trip is shown too. Medians over ``--requests`` of each. Then the server process's
CPU time per request of each, from ``--requests`` more in a row: on a machine busy with other work, wall times
swing, CPU time much less.

    python bench/console.py [--conversations 100000] [--requests 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from echo_server import ServerProcess, create_keys, environment, serve_shop
from rejoinder.service.accounts import CLI_ACTOR, Accounts, SignInLimits
from rejoinder.store import Store
from rejoinder.store.connect import create_sqlite_sync_engine
from rejoinder.store.prepared import Prepared
from rejoinder.store.tables import conversations, messages, tokens
from rejoinder.store.urls import normalize_url

RATIO_TARGET = 10.0
BATCH = 5_000
WARMUP = 10
STARTUP_TIMEOUT = 180.0  # a busy machine imports slowly
SEARCH_WORD = "refund"  # in about one customer message in 200
WORDS = ["where is my order", "I want to change the address", "hello", "cancel please", "is it shipped yet"]
SKILLS = ["welcome", "orders", "returns", "handoff"]
NOW = datetime.now(UTC)
_INSERT_CONVERSATIONS = Prepared(conversations.insert(), column_keys=[c.key for c in conversations.c])
_INSERT_MESSAGES = Prepared(messages.insert(), column_keys=[c.key for c in messages.c if c.key != "id"])
_INSERT_TOKENS = Prepared(
    tokens.insert(), column_keys=[c.key for c in tokens.c if c.key not in ("revoked_at", "last_used_at")]
)


def already_seeded(url: str) -> bool:
    engine = create_sqlite_sync_engine(sa.make_url(normalize_url(url)), busy_timeout=30)
    with engine.connect() as connection:
        found = connection.execute(sa.select(conversations.c.id).limit(1)).first() is not None
    engine.dispose()
    return found


def seed(url: str, count: int) -> None:
    """``count`` conversations of the shop bot, with their messages and a token each (``tok_`` + its number)."""
    engine = create_sqlite_sync_engine(sa.make_url(normalize_url(url)), busy_timeout=30)
    rng = random.Random(7)
    started = time.perf_counter()
    with engine.begin() as connection:
        for first in range(0, count, BATCH):
            rows, said, issued = [], [], []
            for n in range(first, min(first + BATCH, count)):
                conversation_id = f"cnv_{n:024x}"
                created = NOW - timedelta(days=30) + timedelta(seconds=n * (30 * 86400 / count))
                updated = created + timedelta(minutes=rng.randint(0, 90))
                rows.append(
                    {
                        "id": conversation_id,
                        "bot_id": "shop",
                        "status": "closed" if rng.random() < 0.8 else "active",
                        "state": {"variables": {"n": n}, "waiting": "customer", "bot_version": "v1"},
                        "bot_version": "v1",
                        "skill_id": rng.choice(SKILLS),
                        "node_id": "ask",
                        "version": 3,
                        "last_seq": 4,
                        "user": {"id": f"user-{n % 5000}"} if n % 2 else {},
                        "created_at": created,
                        "updated_at": updated,
                    }
                )
                for seq in range(1, 5):
                    customer = seq % 2 == 1
                    text = rng.choice(WORDS) if customer else "Let me check that for you."
                    if customer and rng.random() < 0.005:
                        text = f"I want a {SEARCH_WORD} for order {n}"
                    said.append(
                        {
                            "conversation_id": conversation_id,
                            "seq": seq,
                            "turn_seq": seq if customer else seq - 1,
                            "sender": "customer" if customer else "bot",
                            "type": "text",
                            "payload": {"text": text},
                            "client_message_id": f"m-{n}-{seq}" if customer else None,
                            "pending": None,
                            "created_at": updated,
                        }
                    )
                issued.append(
                    {
                        "id": f"tok_{n:024x}",
                        "token_hash": f"{n:064x}",
                        "bot_id": "shop",
                        "conversation_id": conversation_id,
                        "created_at": created,
                        "expires_at": created + timedelta(days=7),
                        "max_uses": None,
                        "uses": 0,
                    }
                )
            # Straight to the driver, with SQLAlchemy's compiled SQL and value processing, as a turn writes.
            _INSERT_CONVERSATIONS.execute_many(connection, rows)
            _INSERT_MESSAGES.execute_many(connection, said)
            _INSERT_TOKENS.execute_many(connection, issued)
            done = min(first + BATCH, count)
            print(f"\r  seeded {done:,} / {count:,} conversations", end="", flush=True)
    print(f"  ({time.perf_counter() - started:.0f} s)")
    engine.dispose()


def upgrade(url: str) -> None:
    """Bring the database to the newest schema, as a server would."""

    async def migrate() -> None:
        store = Store.from_url(url)
        await store.upgrade()
        await store.close()

    asyncio.run(migrate())


def create_viewer(url: str, email: str, password: str) -> None:
    """A console viewer in the database, made by the accounts service as ``rejoinder users`` makes one."""

    async def create() -> None:
        store = Store.from_url(url)
        try:
            if await store.users.by_email(email) is None:
                accounts = Accounts(store.users, limits=SignInLimits.in_memory())
                await accounts.create_user(email, "viewer", password, CLI_ACTOR)
        finally:
            await store.close()

    asyncio.run(create())


def console_session(url: str, base: str) -> httpx.Client | None:
    """A client signed in to the console as a viewer, or None when this server has no console."""
    client = httpx.Client(base_url=base, timeout=30)
    form = client.get("/dashboard/sign-in")
    if form.status_code == 404:
        client.close()
        return None
    email, password = "bench@example.com", "bench password, long enough"
    create_viewer(url, email, password)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None, "the sign-in form has no CSRF token"
    answer = client.post(
        "/dashboard/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf.group(1), "next": "/dashboard"},
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.status_code} {answer.text[:300]}")
    return client


def access_durations(log: Path, seen: int) -> tuple[list[tuple[str, float]], int]:
    """The (path, duration_ms) of access log lines past the first ``seen``, and how many there are now."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if '"duration_ms"' in line]
    return [(entry["path"], float(entry["duration_ms"])) for entry in lines[seen:]], len(lines)


def measure(
    targets: dict[str, tuple[httpx.Client, str]], server: ServerProcess, requests: int
) -> dict[str, tuple[float, float, float]]:
    """Median server and round-trip milliseconds of each target, asked in interleaved rounds, and the server's
    CPU milliseconds per request of each (asked in a run of its own: on a busy machine, the steadiest figure)."""
    server_ms: dict[str, list[float]] = defaultdict(list)
    client_ms: dict[str, list[float]] = defaultdict(list)
    _, seen = access_durations(server.log, 0)
    for round_ in range(requests + WARMUP):
        for name, (http, path) in targets.items():
            began = time.perf_counter()
            answer = http.get(path)
            took = (time.perf_counter() - began) * 1000
            if answer.status_code != 200:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:300]}")
            if round_ >= WARMUP:
                client_ms[name].append(took)
        time.sleep(0.05)  # the log is written by a thread of its own
        logged, seen = access_durations(server.log, seen)
        if round_ >= WARMUP:
            for name, duration in zip(targets, (d for _, d in logged), strict=False):
                server_ms[name].append(duration)
    cpu_ms = {}
    for name, (http, path) in targets.items():
        before = server.cpu_seconds()
        for _ in range(requests):
            http.get(path)
        cpu_ms[name] = (server.cpu_seconds() - before) / requests * 1000
    return {
        name: (statistics.median(server_ms[name]), statistics.median(client_ms[name]), cpu_ms[name])
        for name in targets
    }


def run(args: argparse.Namespace, workdir: Path) -> None:
    env = environment(workdir, "info")
    url = env["REJOINDER_DATABASE_URL"]
    upgrade(url)
    if already_seeded(url):
        print(f"{url} holds conversations already (--keep): measured as it is")
    else:
        print(f"seeding {args.conversations:,} conversations into {url}")
        seed(url, args.conversations)
    token_id = f"tok_{args.conversations // 2:024x}"
    sdk_key, secret_key = create_keys(env)
    with serve_shop(workdir, sdk_key=sdk_key, startup_timeout=STARTUP_TIMEOUT) as running:
        admin = httpx.Client(
            base_url=running.base, timeout=30, headers={"Authorization": f"Bearer {secret_key}"}
        )
        plain = httpx.Client(base_url=running.base, timeout=30)
        targets: dict[str, tuple[httpx.Client, str]] = {
            "/healthz": (plain, "/healthz"),
            "admin API first page": (admin, "/v1/conversations?limit=50"),
        }
        console = console_session(url, running.base)
        if console is not None:
            targets["console first page"] = (console, "/dashboard/conversations")
            targets[f"console search {SEARCH_WORD!r}"] = (
                console,
                f"/dashboard/conversations?q={SEARCH_WORD}",
            )
            targets["console search token id"] = (console, f"/dashboard/conversations?q={token_id}")
        else:
            print("(this server has no console: only the admin API is measured)")
        results = measure(targets, running, args.requests)
    base_ms, _, base_cpu = results["/healthz"]
    print(
        f"\n{'':34} {'server p50':>11} {'round trip':>11} {'x /healthz':>11} {'server CPU':>11} {'x /healthz':>11}"
    )
    for name, (server_ms, client_ms, cpu_ms) in results.items():
        ratio = server_ms / base_ms
        verdict = "" if name == "/healthz" else ("ok" if ratio <= RATIO_TARGET else "MISSED")
        print(
            f"{name:34} {server_ms:8.2f} ms {client_ms:8.2f} ms {ratio:10.1f}x {cpu_ms:8.2f} ms "
            f"{cpu_ms / base_cpu:10.1f}x {verdict}"
        )
    print(f"target: first page <= {RATIO_TARGET:.0f} x /healthz server time (the verdict is on server p50)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--keep",
        type=Path,
        help="work in this directory and keep it (a database seeded there before is reused)",
    )
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="rejoinder-console-bench-") as workdir:
        run(args, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
