"""Reliability of the server: outside faults stay outside, one turn at a time, nothing acknowledged is lost.

* An Integrate endpoint that fails in any way (500, garbage, not HTTP, hangs, answers too late, stalls mid-body)
  routes the skill to ``on_error`` within its timeout, while other conversations keep being answered.
* Two clients sending to one conversation at once (through one app or two apps on one database) never interleave
  a turn or lose an update.
* A real ``rejoinder serve`` killed with SIGKILL during a stream of turns and restarted on the same database keeps
  every acknowledged message, in order, once; retries with the same client_message_id never duplicate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rejoinder.skills import Bot, load_bot
from tests.helpers import clients
from tests.helpers.bots import EXAMPLE_BOT, write_bot
from tests.helpers.disk import fill_disk
from tests.helpers.processes import ServeProcess, create_keys, serve_environment

if TYPE_CHECKING:
    from tests.helpers.app import Launch, Server

pytestmark = pytest.mark.timeout(60)

CALL_TIMEOUT = 1.0  # seconds: the Integrate node's timeout in the probe bot
FAILED = "The backend failed."


# ------------------------------------------------------------------------------------------------ a faulty backend


class Backend(ThreadingHTTPServer):
    """An HTTP endpoint on 127.0.0.1 that answers ``GET /<mode>`` well or in one of several broken ways."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _BackendHandler)
        self.released = threading.Event()  # set at the end: hanging handlers return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _BackendHandler(BaseHTTPRequestHandler):
    server: Backend

    def do_GET(self) -> None:
        mode = self.path.strip("/")
        if mode == "ok":
            self._answer(200, b'{"answer": "42"}')
        elif mode == "status500":
            self._answer(500, b'{"error": "boom"}')
        elif mode == "garbage":
            self._answer(200, b"<html>this is not JSON")
        elif mode == "not_http":
            self.wfile.write(b"\x00\xff\x13 definitely not an HTTP response\r\n\r\n")
            self.close_connection = True
        elif mode == "hang":
            self.server.released.wait(30)
            self.close_connection = True
        elif mode == "too_late":
            self.server.released.wait(CALL_TIMEOUT * 3)
            self._answer(200, b'{"answer": "late"}')
        elif mode == "stalls_mid_body":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"answer": ')
            self.wfile.flush()
            self.server.released.wait(30)
            self.close_connection = True
        else:
            self._answer(404, b'{"error": "unknown mode"}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def probe_bot(tmp_path: Path, backend: Backend) -> Bot:
    """Asks which mode to call, calls the backend with it, says what came back or that the call failed."""
    config = 'id: probe\nintegrate: {allow_hosts: ["127.0.0.1"]}\n'
    skill = f"""\
id: lookup
triggers: {{events: [lookup], default: true}}
start: ask
nodes:
  ask: {{type: question, text: "Which mode?", save_to: mode, next: call}}
  call:
    type: integrate
    method: GET
    url: "{backend.url}/{{{{ mode }}}}"
    save: {{answer: answer}}
    timeout: {CALL_TIMEOUT}
    on_error: failed
    next: answered
  answered: {{type: message, text: "Got {{{{ answer }}}}", next: ask}}
  failed: {{type: message, text: "{FAILED}", next: ask}}
"""
    return load_bot(write_bot(tmp_path / "probe", config, {"main": skill}))


async def say(server: Server, started: dict[str, Any], text: str, client_message_id: str) -> dict[str, Any]:
    response = await clients.say(
        server.client, started["conversation_id"], started["session"], text, client_message_id
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def bot_texts(answer: dict[str, Any]) -> list[str]:
    return [message["text"] for message in answer["messages"] if message["sender"] == "bot"]


# ------------------------------------------------------------------------------------------------ outside faults


@pytest.mark.parametrize("mode", ["status500", "garbage", "not_http"])
async def test_an_integrate_endpoint_that_fails_fast_routes_to_on_error(
    tmp_path: Path, launch: Launch, probe_bot: Bot, mode: str
) -> None:
    async with launch(tmp_path / "db.sqlite", {"probe": probe_bot}) as server:
        started = await server.start("probe", event="lookup")

        failed = await say(server, started, mode, "m-1")
        recovered = await say(server, started, "ok", "m-2")

    assert bot_texts(failed) == [FAILED, "Which mode?"]
    assert bot_texts(recovered) == ["Got 42", "Which mode?"]  # the conversation is not stuck


@pytest.mark.parametrize("mode", ["hang", "too_late", "stalls_mid_body"])
async def test_a_slow_integrate_endpoint_times_out_to_on_error_without_slowing_other_conversations(
    tmp_path: Path, launch: Launch, probe_bot: Bot, mode: str
) -> None:
    async with launch(tmp_path / "db.sqlite", {"probe": probe_bot}) as server:
        stuck = await server.start("probe", event="lookup")
        others = [await server.start("probe", event="lookup") for _ in range(3)]
        other_turns: list[float] = []

        async def talk(started: dict[str, Any], index: int) -> None:
            for turn in range(5):
                began = time.perf_counter()
                answer = await say(server, started, "ok", f"o{index}-{turn}")
                other_turns.append(time.perf_counter() - began)
                assert bot_texts(answer) == ["Got 42", "Which mode?"]

        began = time.perf_counter()
        faulty = asyncio.create_task(say(server, stuck, mode, "m-1"))
        await asyncio.sleep(0.05)  # the faulty call is under way
        await asyncio.gather(*(talk(started, index) for index, started in enumerate(others)))
        others_done_while_waiting = not faulty.done()
        failed = await faulty
        faulty_seconds = time.perf_counter() - began
        recovered = await say(server, stuck, "ok", "m-2")

    assert bot_texts(failed) == [FAILED, "Which mode?"]
    assert faulty_seconds < CALL_TIMEOUT + 2.0, f"on_error took {faulty_seconds:.2f} s"
    # Fifteen turns of other conversations were answered while the faulty call was still waiting.
    assert others_done_while_waiting
    assert len(other_turns) == 15 and max(other_turns) < CALL_TIMEOUT / 2
    assert bot_texts(recovered) == ["Got 42", "Which mode?"]


# ------------------------------------------------------------------------------------------------ one turn at a time

COUNTER_SKILL = """\
id: count
triggers: {events: [count], default: true}
start: ask
variables:
  n: {default: 0}
nodes:
  ask: {type: question, text: "Say something", save_to: said, next: bump}
  bump: {type: assign, set: {n: "n + 1"}, next: tell}
  tell: {type: message, text: "{{ n }}: {{ said }}", next: ask}
"""


@pytest.fixture
def counter_bot(tmp_path: Path) -> Bot:
    """Counts the customer's messages in a variable and says the count with each one."""
    return load_bot(write_bot(tmp_path / "counter", "id: counter\n", {"main": COUNTER_SKILL}))


@pytest.mark.parametrize("apps", [1, 2], ids=["one app", "two apps on one database"])
async def test_two_clients_sending_at_once_never_interleave_a_turn_or_lose_an_update(
    tmp_path: Path, launch: Launch, counter_bot: Bot, apps: int
) -> None:
    database = tmp_path / "db.sqlite"
    per_client = 15
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(launch(database, {"counter": counter_bot}))
        second = first
        if apps == 2:
            second = await stack.enter_async_context(
                launch(database, {"counter": counter_bot}, keys=first.keys)
            )
        started = await first.start("counter", event="count")
        conversation_id = started["conversation_id"]
        # The second client is another tab: it resumed the conversation by its token and has its own session.
        token = await first.token_for(conversation_id)
        resumed = await second.client.post(
            "/v1/conversations/resume", json={"token": token}, headers=second.sdk("counter")
        )
        assert resumed.status_code == 200, resumed.text
        tabs = [(first, started["session"]), (second, resumed.json()["session"])]

        async def send_until_answered(tab: int, index: int) -> dict[str, Any]:
            server, session = tabs[tab]
            body = {"text": f"tab{tab} #{index}", "client_message_id": f"t{tab}-{index}"}
            # One app serialises a conversation's turns itself. Two apps race at commit: the loser runs its turn
            # again, and after a few lost races answers 409 — then the client sends the same message again.
            for _ in range(1 if apps == 1 else 20):
                response = await server.client.post(
                    f"/v1/conversations/{conversation_id}/messages", json=body, headers=server.bearer(session)
                )
                if response.status_code != 409:
                    break
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        answers = await asyncio.gather(
            *(send_until_answered(tab, index) for index in range(per_client) for tab in (0, 1))
        )
        history = await first.client.get(
            f"/v1/conversations/{conversation_id}/messages",
            params={"limit": 500},
            headers=first.bearer(started["session"]),
        )

    turns = 2 * per_client
    for answer in answers:
        said, counted, asked = answer["messages"]
        # A turn's messages are contiguous: no other turn got in between.
        assert [said["seq"] + 1, said["seq"] + 2] == [counted["seq"], asked["seq"]]
        assert said["sender"] == "customer" and counted["text"].endswith(f": {said['text']}")
        assert asked["text"] == "Say something"
    messages = history.json()["messages"]
    assert [m["seq"] for m in messages] == list(range(1, 2 + 3 * turns))
    customer = [m["text"] for m in messages if m["sender"] == "customer"]
    assert sorted(customer) == sorted(f"tab{tab} #{index}" for tab in (0, 1) for index in range(per_client))
    # Every turn saw the count of the one before: the n-th turn in the history says n.
    counts = [m["text"] for m in messages if m["sender"] == "bot" and ": " in m["text"]]
    assert counts == [f"{n}: {text}" for n, text in enumerate(customer, start=1)]


# ------------------------------------------------------------------------------------------------ kill -9 and restart


class Customer:
    """One conversation sending numbered messages; remembers what was acknowledged and what was in doubt."""

    def __init__(self, name: str, conversation_id: str, session: str) -> None:
        self.name = name
        self.conversation_id = conversation_id
        self.session = session
        self.acknowledged: dict[int, dict[str, Any]] = {}  # message number -> the 200 answer
        self.in_doubt: int | None = None  # sent, no answer (the server died meanwhile)

    def body(self, number: int) -> dict[str, str]:
        return {"text": f"{self.name} says {number}", "client_message_id": f"{self.name}-{number}"}

    async def send(self, client: httpx.AsyncClient, base: str, number: int) -> httpx.Response:
        return await client.post(
            f"{base}/v1/conversations/{self.conversation_id}/messages",
            json=self.body(number),
            headers={"Authorization": f"Bearer {self.session}"},
        )

    async def talk_until_the_server_dies(
        self, client: httpx.AsyncClient, base: str, on_acknowledged: Callable[[], None]
    ) -> None:
        number = 0
        while True:
            try:
                response = await self.send(client, base, number)
            except httpx.TransportError:
                self.in_doubt = number
                return
            assert response.status_code == 200, response.text
            self.acknowledged[number] = response.json()
            on_acknowledged()
            number += 1


@pytest.mark.timeout(300)  # two server starts, each up to READY_TIMEOUT on a busy machine
async def test_kill_9_during_turns_then_a_restart_loses_nothing_acknowledged_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    env = serve_environment(tmp_path / "served.db")
    keys = await asyncio.to_thread(create_keys, env)
    sdk = {"Authorization": f"Bearer {keys['sdk_key']}"}

    server = ServeProcess(EXAMPLE_BOT, env, tmp_path / "server.log")
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            customers = []
            for index in range(4):
                started = await client.post(
                    f"{server.base}/v1/conversations", json={"event": "welcome"}, headers=sdk
                )
                assert started.status_code == 201, started.text
                answer = started.json()
                customers.append(Customer(f"c{index}", answer["conversation_id"], answer["session"]))

            # The kill comes once 60 messages are acknowledged, with every customer's next one under way.
            enough = asyncio.Event()

            def count() -> None:
                if sum(len(customer.acknowledged) for customer in customers) >= 60:
                    enough.set()

            talking = [
                asyncio.create_task(customer.talk_until_the_server_dies(client, server.base, count))
                for customer in customers
            ]
            waiting = asyncio.create_task(enough.wait())
            await asyncio.wait([waiting, *talking], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            server.kill()
            await asyncio.gather(*talking)
    finally:
        server.stop()

    restarted = ServeProcess(EXAMPLE_BOT, env, tmp_path / "restarted.log")
    await asyncio.to_thread(restarted.start)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for customer in customers:
                assert customer.in_doubt is not None and customer.acknowledged
                # The message in doubt is sent again, twice, with its client_message_id: it is taken once.
                retried = [await customer.send(client, restarted.base, customer.in_doubt) for _ in range(2)]
                assert [response.status_code for response in retried] == [200, 200]
                assert retried[0].json() == retried[1].json()
                # An acknowledged message sent again is answered from the first time, not run again.
                again = await customer.send(client, restarted.base, 0)
                assert again.status_code == 200 and again.json() == customer.acknowledged[0]
                # And the conversation goes on.
                next_one = await customer.send(client, restarted.base, customer.in_doubt + 1)
                assert next_one.status_code == 200, next_one.text

            histories = {
                customer.name: (
                    await client.get(
                        f"{restarted.base}/v1/conversations/{customer.conversation_id}/messages",
                        params={"limit": 500},
                        headers={"Authorization": f"Bearer {customer.session}"},
                    )
                ).json()["messages"]
                for customer in customers
            }
    finally:
        restarted.stop()

    for customer in customers:
        messages = histories[customer.name]
        assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
        assert customer.in_doubt is not None
        sent = range(customer.in_doubt + 2)
        customer_texts = [m["text"] for m in messages if m["sender"] == "customer"]
        # Every message is there once, in the order sent; acknowledged ones with the seqs they were given.
        assert customer_texts == [customer.body(number)["text"] for number in sent]
        by_seq = {m["seq"]: m for m in messages}
        for answer in customer.acknowledged.values():
            for message in answer["messages"]:
                assert by_seq[message["seq"]] == message
        # Each customer message is followed by the bot's two replies (not understood, then the menu).
        assert len(messages) == 1 + 3 * len(sent)


# ------------------------------------------------------------------------------------------------ a full disk


async def test_a_full_disk_is_a_storage_full_503_and_makes_the_server_not_ready(
    small_disk: Path, shop_bot: Bot, launch: Launch
) -> None:
    async with launch(small_disk / "rejoinder.db", {"shop": shop_bot}) as server:
        started = await server.start()
        conversation_id = started["conversation_id"]
        headers = server.bearer(started["session"])
        assert (await server.client.get("/readyz")).status_code == 200
        filler = fill_disk(small_disk)

        refused = None
        for n in range(200):  # the WAL may have room for a few more turns before a write needs a new page
            answer = await server.client.post(
                f"/v1/conversations/{conversation_id}/messages",
                json={"client_message_id": f"m-{n}", "text": f"message {n} " + "x" * 3000},
                headers=headers,
            )
            if answer.status_code != 200:
                refused = answer
                break
        assert refused is not None, "no write failed on a full disk"
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"] == "storage_full"
        assert refused.headers["retry-after"]
        assert refused.headers["content-type"] == "application/problem+json"
        stored = n  # messages m-0 … m-(n-1) were answered

        ready = await server.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["type"] == "storage_full"
        # Nothing answered was lost, and the refused message was not half saved.
        history = (
            await server.client.get(f"/v1/conversations/{conversation_id}/messages", headers=headers)
        ).json()
        customer = [m["text"] for m in history["messages"] if m["sender"] == "customer"]
        assert [text.split(" ")[1] for text in customer] == [str(k) for k in range(stored)]

        filler.unlink()
        again = await server.client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"client_message_id": f"m-{stored}", "text": "once there is room"},
            headers=headers,
        )
        assert again.status_code == 200, again.text
        assert (await server.client.get("/readyz")).status_code == 200
