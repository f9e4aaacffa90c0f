"""Through PgBouncer in transaction pooling mode, as most PostgreSQL deployments run: turns and resumes work.

Debian's ``pgbouncer`` is started on a free port in front of the shared PostgreSQL with a small server pool, so
that concurrent conversations share server connections and each transaction may get another one. The URL
says so with ``?prepared_statement_cache_size=0`` (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from rejoinder.skills import load_bot
from tests.helpers.app import running
from tests.helpers.bots import EXAMPLE_BOT
from tests.helpers.processes import free_port
from tests.helpers.services import POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, unavailable

pytestmark = pytest.mark.timeout(90)

SERVER_CONNECTIONS = 2  # fewer than the conversations talking at once: transactions move between them
CONVERSATIONS = 6
TURNS = 4
READY_WITHIN = 30.0


class PgBouncer:
    """A ``pgbouncer`` of the test's own in transaction pooling mode, in front of the shared PostgreSQL."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
        if binary is None:
            unavailable("pgbouncer is not installed (apt-get install pgbouncer)")
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PgBouncer:
        users = self.directory / "users.txt"
        users.write_text(f'"{POSTGRES_USER}" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={POSTGRES_HOST} port={POSTGRES_PORT}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\n"
            "max_client_conn = 100\n"
        )
        for path in (self.directory, users, config):
            path.chmod(0o755 if path.is_dir() else 0o644)
        command = [self.binary, str(config)]
        if os.geteuid() == 0:  # pgbouncer will not run as root
            command[1:1] = ["-u", "nobody"]
        with self.log_path.open("wb") as log:  # opened here: the user pgbouncer runs as need not write there
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        self._wait_until_listening()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"pgbouncer exited with {self.process.returncode}: {self.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        pytest.fail(f"pgbouncer did not listen within {READY_WITHIN:.0f} s: {self.log()}")

    @property
    def log_path(self) -> Path:
        return self.directory / "pgbouncer.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    # Not under pytest's tmp_path, whose parents only root may enter: pgbouncer reads its files as another user.
    with (
        tempfile.TemporaryDirectory(prefix="rejoinder-pgbouncer-") as directory,
        PgBouncer(Path(directory)) as running,
    ):
        yield running


@pytest.fixture
async def client(
    migrated_postgres_url: str, pgbouncer: PgBouncer
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    direct = sa.make_url(migrated_postgres_url)
    url = direct.set(port=pgbouncer.port, query={"prepared_statement_cache_size": "0"}).render_as_string(
        hide_password=False
    )
    async with running(url, {"shop": load_bot(EXAMPLE_BOT)}) as server:
        yield server.client, server.sdk()


async def _talk(http: httpx.AsyncClient, sdk: dict[str, str], number: int) -> str:
    """One conversation: started, ``TURNS`` turns, its transcript read back; its id."""
    started = await http.post("/v1/conversations", json={"event": "welcome"}, headers=sdk)
    assert started.status_code == 201, started.text
    conversation_id, session = started.json()["conversation_id"], started.json()["session"]
    path = f"/v1/conversations/{conversation_id}/messages"
    bearer = {"Authorization": f"Bearer {session}"}
    for turn in range(TURNS):
        said = {"text": f"customer {number} turn {turn}", "client_message_id": f"m-{turn}"}
        answer = await http.post(path, json=said, headers=bearer)
        assert answer.status_code == 200, answer.text
        assert [m["sender"] for m in answer.json()["messages"]] == ["customer", "bot", "bot"]
    again = await http.post(
        path, json=said, headers=bearer
    )  # the last message again: answered from the store
    assert again.status_code == 200 and again.json()["messages"] == answer.json()["messages"]
    transcript = await http.get(path, headers=bearer)
    assert transcript.status_code == 200, transcript.text
    assert [m["seq"] for m in transcript.json()["messages"]] == list(range(1, 2 + 3 * TURNS))
    return str(conversation_id)


async def test_turns_and_resumes_work_through_pgbouncer_in_transaction_pooling_mode(
    client: tuple[httpx.AsyncClient, dict[str, str]], pgbouncer: PgBouncer
) -> None:
    http, sdk = client
    conversations = await asyncio.wait_for(
        asyncio.gather(*(_talk(http, sdk, number) for number in range(CONVERSATIONS))), 60
    )
    service = http._transport.app.state.service  # type: ignore[attr-defined]
    for conversation_id in conversations[:3]:
        token, _record = await service.issue_token(conversation_id, uses=1)
        resumed = await http.post("/v1/conversations/resume", json={"token": token}, headers=sdk)
        assert resumed.status_code == 200, resumed.text
        assert len(resumed.json()["messages"]) == 1 + 3 * TURNS
        spent = await http.post("/v1/conversations/resume", json={"token": token}, headers=sdk)
        assert spent.status_code != 200 and spent.json()["type"] == "token_used_up", spent.text
    assert "prepared statement" not in pgbouncer.log()
