"""PostgreSQL restarted or unreachable for a moment: 503 with ``Retry-After``, never a half-saved turn, and the
service comes back by itself.

* A real ``rejoinder serve`` reaches the shared PostgreSQL through a TCP proxy; customers talk without pause while
  the proxy is cut (every connection reset, new ones refused) and restored.
* An app on a throwaway cluster of its own: the cluster crashes while a turn waits for an outside call, then
  starts again; the pool's dead connections are never handed to a request.
* The connection dies right after the database committed a turn: the client, answered 503, sends it again and
  gets the stored turn, once.
* The database stops answering without closing anything (a hung server, a network that drops packets): 503s
  come within seconds instead of requests that hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.service.keys import create_keys as create_keys_in
from rejoinder.skills import Bot, load_bot
from rejoinder.store import Store
from rejoinder.store.connect import create_engine
from rejoinder.store.database import Database
from rejoinder.store.urls import normalize_url
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import ServeProcess, create_keys, serve_environment
from tests.helpers.proxy import TcpProxy
from tests.helpers.services import POSTGRES_PORT
from tests.scale.faults import (
    PostgresCluster,
    assert_unavailable,
    transcript,
)

pytestmark = pytest.mark.timeout(60)

RETRY_PAUSE = 0.2  # a test client retries faster than Retry-After asks, to see more of the outage
PROMPT = "Hi! I'm the Demo Shop assistant. What can I do for you?"
NOT_UNDERSTOOD = "Sorry, I can help with your orders or our opening hours."
ANSWER_WITHIN = 5.0  # seconds: the longest any answer may take, outage or not
NO_BACKEND = "http://127.0.0.1:9"  # the shop's backend calls fail fast (none of these tests needs them)


class Customer:
    """One conversation sending numbered messages, each until acknowledged: a 503 is retried with the same
    ``client_message_id``, anything else but 200 fails the test."""

    def __init__(self, name: str, started: dict[str, Any]) -> None:
        self.name = name
        self.conversation_id: str = started["conversation_id"]
        self.session: str = started["session"]
        self.acknowledged: dict[int, list[dict[str, Any]]] = {}  # message number -> the turn's messages
        self.refusals = 0  # 503 answers
        self.slowest = 0.0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session}"}

    async def send_once(self, client: httpx.AsyncClient, number: int) -> httpx.Response:
        return await client.post(
            f"/v1/conversations/{self.conversation_id}/messages",
            json={"text": f"{self.name} says {number}", "client_message_id": f"{self.name}-{number}"},
            headers=self.headers,
        )

    async def say(self, client: httpx.AsyncClient, number: int) -> None:
        while True:
            began = time.monotonic()
            response = await self.send_once(client, number)
            self.slowest = max(self.slowest, time.monotonic() - began)
            if response.status_code == 200:
                self.acknowledged[number] = response.json()["messages"]
                return
            assert_unavailable(response)
            self.refusals += 1
            await asyncio.sleep(RETRY_PAUSE)

    async def talk(self, client: httpx.AsyncClient, until: asyncio.Event) -> None:
        number = 0
        while not until.is_set():
            await self.say(client, number)
            number += 1

    async def check_transcript(self, client: httpx.AsyncClient) -> None:
        """Every acknowledged message once, in order, each followed by its whole answer and nothing else."""
        messages = await transcript(client, self.conversation_id, self.session)
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        assert [m["text"] for m in messages[:1]] == [PROMPT]
        turns = [messages[index : index + 3] for index in range(1, len(messages), 3)]
        assert len(turns) == len(self.acknowledged)
        for number, turn in enumerate(turns):
            assert [(m["sender"], m["text"]) for m in turn] == [
                ("customer", f"{self.name} says {number}"),
                ("bot", NOT_UNDERSTOOD),
                ("bot", PROMPT),
            ]
            assert [m["seq"] for m in self.acknowledged[number]] == [m["seq"] for m in turn]


def through(url: str, port: int) -> str:
    return sa.make_url(url).set(port=port).render_as_string(hide_password=False)


async def test_postgres_unreachable_for_a_moment_answers_503_then_serves_again_without_a_restart(
    make_postgres_url: Any, tmp_path: Path
) -> None:
    with TcpProxy(POSTGRES_PORT) as proxy:
        env = serve_environment(through(make_postgres_url(), proxy.port))
        served = ServeProcess(EXAMPLE_BOT, env, tmp_path / "serve.log")
        try:
            keys, _ = await asyncio.gather(
                asyncio.to_thread(create_keys, env), asyncio.to_thread(served.start)
            )
            async with httpx.AsyncClient(base_url=served.base, timeout=ANSWER_WITHIN * 2) as client:
                await _talk_through_an_outage(client, proxy, served, keys)
        except BaseException:
            print(served.log_text())
            raise
        finally:
            await asyncio.to_thread(served.stop)
    access = [json.loads(line) for line in served.log_text().splitlines() if line.startswith("{")]
    statuses = {line["status"] for line in access if line.get("logger") == "rejoinder.access"}
    assert statuses <= {200, 201, 503}, statuses


async def _talk_through_an_outage(
    client: httpx.AsyncClient, proxy: TcpProxy, served: ServeProcess, keys: dict[str, str]
) -> None:
    sdk = {"Authorization": f"Bearer {keys['sdk_key']}"}
    customers = []
    for index in range(3):
        started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
        assert started.status_code == 201, started.text
        customers.append(Customer(f"c{index}", started.json()))
    pid = served.process.pid if served.process else None
    stop = asyncio.Event()
    talking = [asyncio.create_task(customer.talk(client, stop)) for customer in customers]
    try:
        await _until(lambda: all(len(c.acknowledged) >= 3 for c in customers), within=10)

        assert sum(c.refusals for c in customers) == 0
        proxy.cut()  # mid-conversation: some turns are on their way to the database
        await _until(lambda: all(c.refusals >= 1 for c in customers), within=ANSWER_WITHIN)
        cut_at = {c.name: len(c.acknowledged) for c in customers}
        assert_unavailable(await client.get("/readyz"))
        assert_unavailable(await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk))
        await _until(lambda: all(c.refusals >= 4 for c in customers), within=ANSWER_WITHIN)
        # Nothing got through while the database was away.
        assert {c.name: len(c.acknowledged) for c in customers} == cut_at
        proxy.restore()

        await _until(lambda: all(len(c.acknowledged) >= cut_at[c.name] + 3 for c in customers), within=10)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*talking), ANSWER_WITHIN * 2)
    finally:
        stop.set()
        for task in talking:
            task.cancel()

    assert (await client.get("/readyz")).status_code == 200
    assert served.alive and served.process is not None and served.process.pid == pid
    for customer in customers:
        assert customer.slowest < ANSWER_WITHIN, f"{customer.name} waited {customer.slowest:.1f} s"
        await customer.check_transcript(client)


async def _until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------------------------ a real restart


class SlowBackend(ThreadingHTTPServer):
    """The shop's backend, holding each resume-token call until the test lets it answer."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SlowBackendHandler)
        self.called = threading.Event()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _SlowBackendHandler(BaseHTTPRequestHandler):
    server: SlowBackend

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.called.set()
        self.server.release.wait(10)
        body = b'{"login_url": "http://127.0.0.1/login"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_backend() -> Iterator[SlowBackend]:
    server = SlowBackend()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def shop_bot() -> Bot:
    return load_bot(EXAMPLE_BOT)


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster() as started:
        yield started


@asynccontextmanager
async def in_process(
    store: Store, url: str, shop_bot: Bot, backend: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app on ``store`` (lifespan included) and a client for it; the shop's backend at ``backend``."""
    app = create_app(
        {"shop": shop_bot},
        store=store,
        settings=Settings(database_url=url, redis_url=None),
        environ={"SHOP_BACKEND": backend},
    )
    async with app.router.lifespan_context(app):
        keys = await create_keys_in(app.state.store, "shop", now=datetime.now(UTC))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
            yield client, {"Authorization": f"Bearer {keys.sdk_key}"}


@pytest.fixture
async def app_on_cluster(
    cluster: PostgresCluster, shop_bot: Bot, slow_backend: SlowBackend
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with in_process(Store.from_url(cluster.url), cluster.url, shop_bot, slow_backend.url) as running:
        yield running


async def test_postgres_restarted_mid_turn_saves_nothing_then_the_retry_is_answered_once(
    cluster: PostgresCluster,
    app_on_cluster: tuple[httpx.AsyncClient, dict[str, str]],
    slow_backend: SlowBackend,
) -> None:
    client, sdk = app_on_cluster
    conversations = []
    for _ in range(4):  # several conversations: several pooled connections, all dead after the restart
        started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
        assert started.status_code == 201, started.text
        conversations.append(started.json())
    first = conversations[0]
    path = f"/v1/conversations/{first['conversation_id']}/messages"
    headers = {"Authorization": f"Bearer {first['session']}"}
    orders = {"choice": "orders", "client_message_id": "m-orders"}

    # The turn reads the conversation, then waits for the shop's backend; the database crashes meanwhile.
    turn = asyncio.create_task(client.post(path, json=orders, headers=headers))
    assert await asyncio.to_thread(slow_backend.called.wait, 5)
    await asyncio.to_thread(cluster.stop, "immediate")
    slow_backend.release.set()
    began = time.monotonic()
    assert_unavailable(await asyncio.wait_for(turn, ANSWER_WITHIN * 2))
    for answer in await asyncio.gather(
        client.post(path, json=orders, headers=headers),
        client.get(path, headers=headers),
        client.get("/readyz"),
        client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk),
    ):
        assert_unavailable(answer)
    assert time.monotonic() - began < ANSWER_WITHIN

    await asyncio.to_thread(cluster.start)
    # The very first requests after the restart are answered: no dead pooled connection is handed out.
    retried, *others = await asyncio.gather(
        client.post(path, json=orders, headers=headers),
        *(
            client.post(
                f"/v1/conversations/{c['conversation_id']}/messages",
                json={"choice": "hours", "client_message_id": "m-hours"},
                headers={"Authorization": f"Bearer {c['session']}"},
            )
            for c in conversations[1:]
        ),
    )
    assert retried.status_code == 200, retried.text
    assert all(answer.status_code == 200 for answer in others), [a.text for a in others]
    assert (await client.get("/readyz")).status_code == 200
    again = await client.post(path, json=orders, headers=headers)
    assert again.status_code == 200 and again.json()["messages"] == retried.json()["messages"]

    messages = await transcript(client, first["conversation_id"], first["session"])
    assert [(m["seq"], m["sender"]) for m in messages] == [
        (1, "bot"),
        (2, "customer"),
        (3, "bot"),
        (4, "bot"),
    ]
    assert messages[1]["text"] == "My orders"
    assert messages[3]["text"] == "Please log in here: http://127.0.0.1/login. I'll be waiting."
    assert retried.json()["messages"] == messages[1:]


async def test_a_turn_committed_as_the_connection_died_is_answered_once_when_sent_again(
    make_postgres_url: Any, shop_bot: Bot
) -> None:
    with TcpProxy(POSTGRES_PORT) as proxy:
        url = through(make_postgres_url(), proxy.port)
        async with in_process(Store.from_url(url), url, shop_bot, NO_BACKEND) as running:
            client, sdk = running
            started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
            assert started.status_code == 201, started.text
            customer = Customer("c", started.json())
            await customer.say(client, 0)

            # The database commits the turn; the connection dies before the app hears so. The turn's write is
            # the one message that carries the customer's text (its statement commits on its own).
            proxy.cut_after(b"c says 1")
            assert_unavailable(await customer.send_once(client, 1))
            proxy.restore()
            stored = await transcript(client, customer.conversation_id, customer.session)
            assert [m["text"] for m in stored[-3:]] == ["c says 1", NOT_UNDERSTOOD, PROMPT]

            # Sent again with the same client_message_id: answered with what was stored, not run twice.
            await customer.say(client, 1)
            assert customer.refusals == 0
            assert customer.acknowledged[1] == stored[-3:]
            await customer.check_transcript(client)


# ------------------------------------------------------------------------------------------------ a hung server


async def test_postgres_that_stops_answering_gives_503_within_seconds_then_serves_again(
    make_postgres_url: Any, shop_bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    timeout = 1.0  # each of the store's timeouts, short to keep the test short (the defaults are 5 s)
    with TcpProxy(POSTGRES_PORT) as proxy:
        url = through(make_postgres_url(), proxy.port)
        engine = create_engine(
            normalize_url(url), busy_timeout=timeout, connect_timeout=timeout, command_timeout=timeout
        )
        async with in_process(
            Store(Database(engine, busy_timeout=timeout)), url, shop_bot, NO_BACKEND
        ) as running:
            client, sdk = running
            customers = []
            for index in range(3):  # three pooled connections in use, all of them hung below
                started = await client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
                assert started.status_code == 201, started.text
                customers.append(Customer(f"c{index}", started.json()))
            for customer in customers:
                await customer.say(client, 0)

            # Connections stay open, nothing gets through: a hung server, or a network that drops packets.
            proxy.freeze()
            began = time.monotonic()
            try:
                answers = await asyncio.wait_for(
                    asyncio.gather(
                        *(customer.send_once(client, 1) for customer in customers),
                        client.get("/readyz"),
                        client.post("/v1/conversations", json={"event": "welcome"}, headers=sdk),
                    ),
                    10 * timeout,
                )
            except TimeoutError:
                pytest.fail("requests hang while PostgreSQL does not answer")
            waited = time.monotonic() - began
            for answer in answers:
                assert_unavailable(answer)
            assert waited < 4 * timeout, f"the 503s took {waited:.1f} s"
            proxy.thaw()

            # Each customer sends its message again (same client_message_id) until it is answered.
            await asyncio.wait_for(
                asyncio.gather(*(customer.say(client, 1) for customer in customers)), 4 * timeout
            )
            assert (await client.get("/readyz")).status_code == 200
            for customer in customers:
                await customer.check_transcript(client)
    reasons = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert reasons and all(not reason.rstrip().endswith(":") for reason in reasons), reasons
