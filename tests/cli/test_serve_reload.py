"""``rejoinder serve --reload``: an edited skill reaches new conversations; a broken edit is refused with its line."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import ServeProcess, serve_environment

pytestmark = pytest.mark.timeout(300)
CHANGE_SEEN_WITHIN = 60.0  # seconds: the file watcher's debounce, a reload, on a slow and busy machine
OLD_PROMPT = "Hi! I'm the assistant here. What's your name?"
NEW_PROMPT = "Hello, I'm the desk's assistant. Who are you?"


class Served:
    def __init__(self, bot: Path, log: Path, port: int, sdk_key: str) -> None:
        self.bot, self.log, self.base, self.sdk_key = bot, log, f"http://127.0.0.1:{port}", sdk_key

    def start(self) -> dict[str, Any]:
        """A new conversation, opened by a first message."""
        answer = httpx.post(
            f"{self.base}/v1/conversations",
            json={"text": "hi"},
            headers={"Authorization": f"Bearer {self.sdk_key}"},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        started: dict[str, Any] = answer.json()
        return started

    def first_words(self) -> str:
        """What the bot says to a new conversation's first message."""
        text: str = self.start()["messages"][-1]["text"]
        return text

    def reply(self, conversation: dict[str, Any], text: str) -> str:
        """What the bot says to ``text`` in ``conversation``."""
        answer = httpx.post(
            f"{self.base}/v1/conversations/{conversation['conversation_id']}/messages",
            json={"text": text, "client_message_id": f"m-{time.monotonic_ns()}"},
            headers={"Authorization": f"Bearer {conversation['session']}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        said: str = answer.json()["messages"][-1]["text"]
        return said

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(what: str, check: Callable[[], bool], within: float = CHANGE_SEEN_WITHIN) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {within:.0f} s: {what}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    bot = tmp_path / "desk"
    assert CliRunner().invoke(app, ["init", str(bot)]).exit_code == 0
    log = tmp_path / "serve.log"
    with ServeProcess(bot, serve_environment(tmp_path / "reload.db"), log, options=("--reload",)) as server:
        server.create_keys()
        server.start()
        yield Served(bot, log, server.port, server.sdk_key)
        assert server.stop(grace=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log.read_text()


def test_an_edited_skill_reaches_new_conversations_and_a_broken_edit_keeps_it(served: Served) -> None:
    skill = served.bot / "skills" / "welcome.yaml"
    under_way = served.start()
    assert under_way["messages"][-1]["text"] == OLD_PROMPT

    edited = skill.read_text().replace(OLD_PROMPT, NEW_PROMPT).replace("Nice to meet you", "Glad to meet you")
    skill.write_text(edited)
    wait_for("the edited text in a new conversation", lambda: served.first_words() == NEW_PROMPT)
    assert "desk: reloaded, bot 'desk' now runs version" in served.stderr()
    # A conversation begun before the edit finishes on the version it began on; a new one runs the edit.
    assert served.reply(under_way, "ada") == "Nice to meet you, Ada! How can I help?"
    assert served.reply(served.start(), "ada") == "Glad to meet you, Ada! How can I help?"

    broken = skill.read_text().replace("type: assign", "type: asign")
    line = 1 + next(i for i, text in enumerate(broken.splitlines()) if text.startswith("    type: asign"))
    skill.write_text(broken.replace(NEW_PROMPT, "This text must never be served"))
    wait_for("the broken edit reported", lambda: "not reloaded" in served.stderr())
    report = served.stderr()
    assert (
        f"{skill}:{line}: error: skill 'welcome', node 'remember_name': unknown node type 'asign'" in report
    )
    assert "Traceback" not in report
    assert served.first_words() == NEW_PROMPT


def test_reload_takes_one_worker() -> None:
    refused = CliRunner().invoke(app, ["serve", str(EXAMPLE_BOT), "--reload", "--workers", "2"])
    assert refused.exit_code == 1
    assert refused.stderr == "rejoinder serve: --reload serves with one worker; leave out --workers\n"
