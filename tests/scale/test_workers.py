"""Several stateless ``rejoinder serve`` workers on one PostgreSQL database and one Redis, as real processes.

Whatever worker a request reaches, the conversation is the same: nothing a worker keeps in memory may matter.
The example shop's welcome skill answers any text it does not understand with "Sorry…" and its menu again, so a
conversation can take as many turns as a test likes, each of exactly three messages.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.scale.workers import START_TIMEOUT, Deployment, Worker, create_deployment, running

# Two worker starts (each up to START_TIMEOUT on a busy machine), then the test's own load.
pytestmark = pytest.mark.timeout(300)

SORRY = "Sorry, I can help with your orders or our opening hours."
MENU = "Hi! I'm the Demo Shop assistant. What can I do for you?"
HOURS = "We're open every day from 9:00 to 18:00."


@pytest.fixture(scope="module")
def deployment(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return create_deployment(postgres_url, redis_url, tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="module")
def pair(deployment: Deployment) -> Iterator[tuple[Worker, Worker]]:
    """Two workers, each a process of its own with its own port, started once for the module."""
    with running(deployment, "a", "b") as (a, b):
        yield a, b


# ---------------------------------------------------------------------------------------------- a client


@dataclass
class Conversation:
    id: str
    session: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session}"}


class Client:
    """The client API over HTTP, against whichever worker each call names."""

    def __init__(self, http: httpx.AsyncClient, deployment: Deployment) -> None:
        self.http = http
        self.deployment = deployment

    async def start(self, worker: Worker) -> Conversation:
        answer = await self.http.post(
            f"{worker.base}/v1/conversations",
            json={"event": "welcome"},
            headers={"Authorization": f"Bearer {self.deployment.sdk_key}"},
        )
        assert answer.status_code == 201, answer.text
        return Conversation(answer.json()["conversation_id"], answer.json()["session"])

    async def send(
        self, worker: Worker, conversation: Conversation, text: str, message_id: str
    ) -> httpx.Response:
        return await self.http.post(
            f"{worker.base}/v1/conversations/{conversation.id}/messages",
            json={"text": text, "client_message_id": message_id},
            headers=conversation.auth,
        )

    async def say(self, worker: Worker, conversation: Conversation, text: str) -> list[dict[str, Any]]:
        answer = await self.send(worker, conversation, text, f"id-{text}")
        assert answer.status_code == 200, answer.text
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages

    async def history(self, worker: Worker, conversation: Conversation) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            page = await self.http.get(
                f"{worker.base}/v1/conversations/{conversation.id}/messages",
                params={"after": messages[-1]["seq"] if messages else 0, "limit": 500},
                headers=conversation.auth,
            )
            assert page.status_code == 200, page.text
            messages += page.json()["messages"]
            if len(page.json()["messages"]) < 500:
                return messages


def turns_of(history: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The history cut before every customer message (the first part is what the start said)."""
    turns: list[list[dict[str, Any]]] = [[]]
    for message in history:
        if message["sender"] == "customer":
            turns.append([])
        turns[-1].append(message)
    return turns


def assert_transcript(
    history: list[dict[str, Any]], texts: list[str], answers: dict[str, list[dict[str, Any]]]
) -> None:
    """``history`` is the start's menu, then one whole turn per text, in this order, each exactly once, and each
    turn is stored exactly as it was answered."""
    assert [message["seq"] for message in history] == list(range(1, len(history) + 1))
    opening, *turns = turns_of(history)
    assert [message["text"] for message in opening] == [MENU]
    assert [turn[0]["text"] for turn in turns] == texts
    for turn in turns:
        assert [(m["sender"], m["text"]) for m in turn] == [
            ("customer", turn[0]["text"]),
            ("bot", SORRY),
            ("bot", MENU),
        ]
        assert answers[turn[0]["text"]] == turn, "a turn answered 200 is not stored as it was answered"


# ---------------------------------------------------------------------------------------------- tests


async def test_a_conversation_moves_between_workers_and_streams_across_them(
    pair: tuple[Worker, Worker], deployment: Deployment
) -> None:
    a, b = pair
    async with httpx.AsyncClient(timeout=10) as http:
        client = Client(http, deployment)
        conversation = await client.start(a)
        url = f"{a.ws_base}/v1/conversations/{conversation.id}/stream?session={conversation.session}"
        async with connect(url) as stream:
            replayed = await frames_until(stream, lambda frame: frame["type"] == "status")
            assert [frame["message"]["text"] for frame in replayed if frame["type"] == "message"] == [MENU]

            answers = {text: await client.say(b, conversation, text) for text in ("on b 1", "on b 2")}

            # A token issued by one worker resumes the conversation on the other, with its whole history.
            issued = await http.post(
                f"{b.base}/v1/conversations/{conversation.id}/tokens",
                json={},
                headers={"Authorization": f"Bearer {deployment.secret_key}"},
            )
            assert issued.status_code == 201, issued.text
            resumed = await http.post(
                f"{a.base}/v1/conversations/resume",
                json={"token": issued.json()["token"]},
                headers={"Authorization": f"Bearer {deployment.sdk_key}"},
            )
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["conversation_id"] == conversation.id
            assert resumed.json()["messages"][1:] == answers["on b 1"] + answers["on b 2"]
            assert resumed.json()["pending"]["choices"][1] == {"label": "Opening hours", "value": "hours"}

            # The session the resume opened on a works on b.
            again = Conversation(conversation.id, resumed.json()["session"])
            answers["on b 3"] = await client.say(b, again, "on b 3")
            closing = await http.post(
                f"{b.base}/v1/conversations/{conversation.id}/messages",
                json={"choice": "hours", "client_message_id": "hours"},
                headers=again.auth,
            )
            assert closing.status_code == 200, closing.text
            last_seq = closing.json()["messages"][-1]["seq"]

            # Every turn ran on b; the stream on a saw each of their messages live, once, in order.
            live = await frames_until(
                stream, lambda frame: frame["type"] == "status" and frame["last_seq"] == last_seq
            )

        history = await client.history(a, conversation)
    streamed = [frame["message"] for frame in live if frame["type"] == "message"]
    assert streamed == history[1:]
    assert [m["text"] for m in history[-2:]] == ["Opening hours", HOURS]
    assert_transcript(history[:-2], ["on b 1", "on b 2", "on b 3"], answers)
    # The typing indicator is never stored: it can only have come from b through Redis.
    assert any(frame["type"] == "typing" for frame in live)
    assert live[-1]["pending"] is None  # the welcome skill ended after the hours


async def test_messages_sent_to_both_workers_at_once_take_one_turn_each(
    pair: tuple[Worker, Worker], deployment: Deployment
) -> None:
    races_before = sum(worker.log().count("lost a version race") for worker in pair)
    per_worker = 12
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=100)) as http:
        client = Client(http, deployment)
        conversations = [await client.start(worker) for worker in pair]

        async def send(worker: Worker, conversation: Conversation, text: str) -> tuple[str, httpx.Response]:
            return text, await client.send(worker, conversation, text, f"id-{text}")

        fired = [
            send(worker, conversation, f"{index}-{worker.name}-{number}")
            for index, conversation in enumerate(conversations)
            for worker in pair
            for number in range(per_worker)
        ]
        random.shuffle(fired)
        answered = await asyncio.gather(*fired)

        assert Counter(response.status_code for _, response in answered) == {200: len(fired)}
        answers = {text: response.json()["messages"] for text, response in answered}
        for index, conversation in enumerate(conversations):
            history = await client.history(pair[1], conversation)
            stored = [turn[0]["text"] for turn in turns_of(history)[1:]]
            assert sorted(stored) == sorted(text for text in answers if text.startswith(f"{index}-"))
            assert_transcript(history, stored, answers)
    # The workers really did race for the same conversations, and the losers ran their turns again.
    races = sum(worker.log().count("lost a version race") for worker in pair) - races_before
    assert races > 0


@dataclass
class Load:
    """Clients that send turns one after the other until told to stop and, when an attempt fails, send the same
    message (same client_message_id) again, to the next worker."""

    client: Client
    workers: list[Worker]
    pause: float = 0.02  # between one conversation's turns
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    acknowledged: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    answered_by: Counter[tuple[str, int]] = field(default_factory=Counter)  # (worker, its start number)
    failed_attempts: Counter[str] = field(default_factory=Counter)

    async def converse(self, index: int, conversation: Conversation, deadline: float) -> list[str]:
        """The texts sent (each acknowledged), in order."""
        sent: list[str] = []
        target = index
        while not self.stop.is_set():
            text = f"c{index}-m{len(sent)}"
            while True:
                assert time.monotonic() < deadline, f"{text} was never answered: {self.failed_attempts}"
                worker = self.workers[target % len(self.workers)]
                target += 1  # the next attempt, and the next message, go to the next worker
                try:
                    answer = await self.client.send(worker, conversation, text, f"id-{text}")
                except httpx.TransportError as error:
                    self.failed_attempts[type(error).__name__] += 1
                    continue
                if answer.status_code == 200:
                    break
                assert answer.status_code in (409, 503), answer.text
                self.failed_attempts[str(answer.status_code)] += 1
            self.acknowledged[text] = answer.json()["messages"]
            self.answered_by[worker.name, worker.starts] += 1
            sent.append(text)
            await asyncio.sleep(self.pause)
        return sent

    async def until(
        self, condition: Callable[[], bool], talks: asyncio.Future[Any], within: float = 30
    ) -> None:
        """Wait for ``condition`` while the clients talk (raising a client's error if one fails)."""
        async with asyncio.timeout(within):
            while not condition():
                if talks.done():
                    talks.result()
                    raise AssertionError("the clients stopped early")
                await asyncio.sleep(0.01)


async def test_kill_9_of_a_worker_under_load_loses_and_repeats_nothing(
    pair: tuple[Worker, Worker], deployment: Deployment
) -> None:
    a, b = pair
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=50)) as http:
        client = Client(http, deployment)
        conversations = [await client.start(pair[index % 2]) for index in range(8)]
        load = Load(client, [a, b])
        deadline = time.monotonic() + 60 + START_TIMEOUT  # the load's minute, and worker a's restart
        talks = asyncio.gather(
            *(
                load.converse(index, conversation, deadline)
                for index, conversation in enumerate(conversations)
            )
        )
        try:
            await load.until(lambda: load.answered_by["a", 1] >= 30, talks)
            a.kill()  # in the middle of the load: some of its turns are in flight
            await load.until(lambda: load.failed_attempts.total() >= 8, talks)
            await asyncio.to_thread(a.start)
            await asyncio.to_thread(a.wait_ready)
            await load.until(lambda: load.answered_by["a", 2] >= 30, talks)
        finally:
            load.stop.set()
        sent = await asyncio.wait_for(talks, timeout=max(deadline - time.monotonic(), 1))

        for conversation, texts in zip(conversations, sent, strict=True):
            history = await client.history(a, conversation)
            assert_transcript(history, texts, load.acknowledged)
    assert load.answered_by["b", 1] > 0
    assert "Traceback" not in b.log()


def test_serve_with_two_workers_on_one_port(deployment: Deployment) -> None:
    with running(deployment, "both", processes=2) as (server,):
        workers = server.worker_pids()
        assert len(workers) == 2 and server.process is not None and server.process.pid not in workers
        asyncio.run(_converse_on_both_processes(server, deployment, set(workers)))
    assert server.process is not None and server.process.returncode in (0, -signal.SIGTERM)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


async def _converse_on_both_processes(server: Worker, deployment: Deployment, workers: set[int]) -> None:
    """Clients with one connection each, opened one after the other until both processes hold some (20 at least);
    each starts a conversation and talks; then every client sends one turn to a conversation streamed on one."""
    clients: list[httpx.AsyncClient] = []
    try:
        while len(clients) < 20 or min(server.connections().values()) == 0:
            assert len(clients) < 60, f"one process took every connection: {server.connections()}"
            clients.append(httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1)))
            assert (await clients[-1].get(f"{server.base}/healthz")).status_code == 200
        assert set(server.connections()) == workers

        chats = [Client(http, deployment) for http in clients]
        conversations = await asyncio.gather(*(chat.start(server) for chat in chats))
        answers: dict[str, list[dict[str, Any]]] = {}
        for number in range(2):
            texts = [f"c{index}-{number}" for index in range(len(chats))]
            said = await asyncio.gather(
                *(
                    chat.say(server, conversation, text)
                    for chat, conversation, text in zip(chats, conversations, texts, strict=True)
                )
            )
            answers.update(zip(texts, said, strict=True))
        for index, (chat, conversation) in enumerate(zip(chats, conversations, strict=True)):
            assert_transcript(
                await chat.history(server, conversation), [f"c{index}-0", f"c{index}-1"], answers
            )

        watched = conversations[0]
        url = f"{server.ws_base}/v1/conversations/{watched.id}/stream?session={watched.session}"
        async with connect(url) as stream:
            replayed = await frames_until(stream, lambda frame: frame["type"] == "status")
            after = replayed[-1]["last_seq"]
            # Through every connection, so through both processes, whichever holds the stream.
            for index, chat in enumerate(chats):
                answers[f"w{index}"] = await chat.say(server, watched, f"w{index}")
            last_seq = answers[f"w{len(chats) - 1}"][-1]["seq"]
            live = await frames_until(
                stream, lambda frame: frame["type"] == "status" and frame["last_seq"] == last_seq
            )
        streamed = [frame["message"] for frame in live if frame["type"] == "message"]
        assert [message["seq"] for message in streamed] == list(range(after + 1, last_seq + 1))
        assert streamed == [message for index in range(len(chats)) for message in answers[f"w{index}"]]
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))


# ---------------------------------------------------------------------------------------------- streams


async def frames_until(
    stream: ClientConnection, done: Callable[[dict[str, Any]], bool], within: float = 10.0
) -> list[dict[str, Any]]:
    """The stream's frames up to and including the first for which ``done(frame)`` is true."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            frame = json.loads(await stream.recv())
            frames.append(frame)
            if done(frame):
                return frames
