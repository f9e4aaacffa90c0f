"""`make chat`: the shop's stand-in backend runs beside the chat, and a taken port never sends the bot elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers.processes import COMMAND_TIMEOUT
from tests.helpers.shop_backend import ROOT, SHOP_DIR

BIN = Path(sys.executable).parent


@pytest.fixture
def stranger() -> Iterator[tuple[int, list[str]]]:
    """Another program on a port: answers every request 503 and remembers its paths."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_make_chat_moves_the_backend_off_a_taken_port_and_says_where(
    tmp_path: Path, stranger: tuple[int, list[str]]
) -> None:
    taken, seen = stranger
    state = tmp_path / "shop.json"
    env = {**os.environ, "REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}", "COLUMNS": "200"}
    env.pop("MAKEFLAGS", None)
    result = subprocess.run(
        # BIN: this test's environment; -o: never set it up again from here.
        [
            "make",
            "-s",
            "-o",
            f"{BIN}/rejoinder",
            "chat",
            f"BIN={BIN}",
            f"SHOP_PORT={taken}",
            f"SHOP_STATE={state}",
        ],
        cwd=ROOT,
        input="1\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    moved = re.search(
        rf"port {taken} is taken, so it listens on http://127\.0\.0\.1:(\d+) instead", result.stdout
    )
    assert moved, result.stdout
    port = int(moved.group(1))
    assert port != taken
    # The bot's Integrate call went to the shop backend on its new port, never to the program on the old one.
    assert f"Please log in here: http://127.0.0.1:{port}/login?conversation=" in result.stdout
    assert seen == []
    assert json.loads(state.read_text())["tokens"]
    assert "Traceback" not in result.stdout + result.stderr


def test_the_backend_runs_a_command_beside_it_and_passes_its_status(tmp_path: Path) -> None:
    probe = "import os, urllib.request; urllib.request.urlopen(os.environ['SHOP_BACKEND'] + '/nowhere')"
    result = subprocess.run(
        [sys.executable, str(SHOP_DIR / "backend.py"), "--port", "0", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    # The command reached the backend (its 404 fails the probe), and its exit status is the backend's.
    assert result.returncode == 1
    assert "HTTP Error 404" in result.stderr
    assert re.match(r"shop backend on http://127\.0\.0\.1:\d+\n", result.stdout)


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_it_cannot_listen_on_is_one_clear_line(port: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SHOP_DIR / "backend.py"), "--port", port],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"shop backend: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.stderr
