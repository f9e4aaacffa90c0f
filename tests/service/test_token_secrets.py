"""However a skill holds a token, its secret reaches the Integrate backend only: never a table, a message or a log.

A real service on each database, with a real (local) backend that keeps what it was sent.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from rejoinder.service import ConversationService, TokenRefused
from rejoinder.skills import load_bot
from rejoinder.store import Store
from rejoinder.store.migrate import schema
from rejoinder.tokens import TokenOutcome

SECRET = re.compile(r"rjt_[A-Za-z0-9_-]{43}")

BOT = """\
id: vault
tokens: {ttl: 24h, max_uses: null}
integrate: {allow_hosts: ["127.0.0.1"], timeout: 10}
env: [BACKEND]
"""

SKILL = """\
id: leak
start: make
triggers: {events: [leak]}
nodes:
  make:
    type: assign
    set:
      as_dict: "{'t': generate_token()}"
      as_list: "[generate_token()]"
      replaced: "generate_token()|replace('rjt_','RJT:')"
      mangled: "generate_token()|upper"
      plain: generate_token()
      joined: "generate_token()|list|join"
      encoded: "generate_token()|tojson"
    next: link
  link:
    type: assign
    set:
      link: "env.BACKEND ~ '/record?plain=' ~ plain ~ '&dict=' ~ as_dict.t"
    next: send
  send:
    type: integrate
    method: POST
    url: "{{ link }}&list={{ as_list[0] | urlencode }}"
    headers: {Authorization: "Bearer {{ plain }}"}
    body: {plain: "{{ plain }}", dict: "{{ as_dict.t }}", list: "{{ as_list[0] }}", replaced: "{{ replaced }}",
           mangled: "{{ mangled }}"}
    save: {echo: echo}
    next: tell
  tell:
    type: message
    messages:
      - "Your link: {{ link }}"
      - "{{ as_dict }} {{ as_list }} {{ replaced }} {{ joined }} {{ encoded }} {{ echo }}"
    next: wait
  wait:
    type: question
    text: "Come back with {{ plain }}"
    save_to: answer
    next: again
  again:
    type: integrate
    method: POST
    url: "{{ env.BACKEND }}/record?late={{ plain }}"
    next: done
  done:
    type: end
    text: "Bye"
"""


class Backend:
    """A local HTTP backend that keeps every request and echoes it back under ``echo``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                seen = {
                    "query": parse_qs(urlsplit(self.path).query),
                    "authorization": self.headers.get("Authorization"),
                    "body": body,
                }
                backend.requests.append(seen)
                data = json.dumps({"echo": seen}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def backend() -> Iterator[Backend]:
    running = Backend()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()
        running.thread.join(10)


@pytest.fixture
async def service(tmp_path: Path, store: Store, backend: Backend) -> AsyncIterator[ConversationService]:
    (tmp_path / "bot" / "skills").mkdir(parents=True)
    (tmp_path / "bot" / "rejoinder.yaml").write_text(BOT)
    (tmp_path / "bot" / "skills" / "leak.yaml").write_text(textwrap.dedent(SKILL))
    bot = load_bot(tmp_path / "bot")
    service = ConversationService(store, {bot.id: bot}, environ={"BACKEND": backend.url})
    yield service
    await service.aclose()


async def everything_stored(store: Store) -> str:
    """Every row of every table, as text."""

    def dump(conn: sa.Connection) -> str:
        rows: list[str] = []
        for table in schema().sorted_tables:
            rows += [repr(tuple(row)) for row in conn.execute(sa.select(table)).all()]
        return "\n".join(rows)

    return await store.database.read(dump)


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


async def test_the_backend_gets_real_tokens_and_nothing_else_keeps_one(
    service: ConversationService, store: Store, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    started = await service.start("vault", event="leak")
    assert not started.errors and started.pending == {"node": "wait", "input": "text"}

    [sent] = backend.requests
    body = json.loads(sent["body"])
    tokens = {
        "plain": sent["query"]["plain"][0],
        "dict": sent["query"]["dict"][0],
        "list": sent["query"]["list"][0],
    }
    assert tokens == {"plain": body["plain"], "dict": body["dict"], "list": body["list"]}
    assert sent["authorization"] == f"Bearer {tokens['plain']}"
    assert len(set(tokens.values())) == len(tokens) and all(SECRET.fullmatch(t) for t in tokens.values())
    # Replacing text a reference does not have leaves the reference; changing the reference breaks it.
    assert SECRET.fullmatch(body["replaced"]) and body["mangled"].startswith("TOKREF-TOK_")
    tokens["replaced"] = body["replaced"]

    stored = await everything_stored(store)
    assert "tokref-tok_" in stored  # the skill's variables and messages hold references
    assert not SECRET.search(stored), "a token secret was stored"
    assert not SECRET.search(caplog.text), "a token secret was logged"
    shown = json.dumps([m.payload for m in await service.history(started.conversation_id)])
    assert not SECRET.search(shown) and "Your link: " + backend.url in shown

    # What the backend received resumes the conversation; nothing read back from the state does.
    for token in tokens.values():
        resumed = await service.resume("vault", token)
        assert resumed.conversation_id == started.conversation_id
    conversation = await store.conversations.get(started.conversation_id)
    assert conversation is not None
    read_back = strings_in(conversation.state["variables"])
    assert read_back
    for value in read_back:
        for attempt in (value, value.replace("tokref-", "").replace("RJT:", "rjt_")):
            with pytest.raises(TokenRefused) as refused:
                await service.resume("vault", attempt)
            assert refused.value.outcome in (TokenOutcome.MALFORMED, TokenOutcome.NOT_FOUND)

    # A later turn no longer knows the secrets: it sends the reference, and says why.
    later = await service.send(started.conversation_id, text="hi")
    assert backend.requests[-1]["query"]["late"][0].startswith("tokref-tok_")
    assert any("which this turn did not make" in error for error in later.errors)
    stored = await everything_stored(store)
    assert not SECRET.search(stored) and not SECRET.search(caplog.text)
