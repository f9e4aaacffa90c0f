"""Browser tests: Debian's chromium driven by Playwright, against real `rejoinder serve` processes.

A test gets a business site (``site``: a plain web server on its own port serving the pages the test writes) and a
rejoinder server (``server``) whose bot allows that site's origin. Every test leaves a screenshot of its page in
``artifacts/e2e/`` (look at them). Without chromium the tests skip; with ``REJOINDER_REQUIRE_SERVICES=1`` they fail.
``REJOINDER_CHROMIUM`` points them at another chromium executable.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.api.test_serve_process import free_port, wait_until_up
from tests.conftest import NO_QUOTAS, _unreachable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BOT = ROOT / "examples" / "shop"
E2E_SKILLS = Path(__file__).resolve().parent / "skills"
ARTIFACTS = ROOT / "artifacts" / "e2e"
REJOINDER = str(Path(sys.executable).with_name("rejoinder"))
# REJOINDER_CHROMIUM names another chromium build (e.g. /usr/bin/chromium-browser); else chromium on the PATH.
CHROMIUM = os.environ.get("REJOINDER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IDENTITY_SECRET = "identity-secret-for-browser-tests"


# ------------------------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        _unreachable(
            "chromium",
            FileNotFoundError(
                f"{CHROMIUM} (apt-get install -y chromium, or set REJOINDER_CHROMIUM to its path)"
            ),
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield launched
        launched.close()


@dataclass
class PageErrors:
    """What went wrong inside a page: uncaught exceptions and console errors."""

    exceptions: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, page_errors: PageErrors) -> Iterator[Page]:
    """A fresh browser context and page; a screenshot of it is saved when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    opened = context.new_page()
    opened.on("pageerror", lambda error: page_errors.exceptions.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            page_errors.console.append(message.text)

    opened.on("console", on_console)
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        # A crashed page still lets the test report its own failure.
        with contextlib.suppress(Exception):
            opened.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        context.close()


# ------------------------------------------------------------------------------------------------ a business site


class Site:
    """A plain web server for the pages a test writes: the business's site, on an origin of its own."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                body = pages.get(path)
                data = (body if body is not None else "not found").encode()
                self.send_response(200 if body is not None else 404)
                kind = "image/svg+xml" if path.endswith(".svg") else "text/html; charset=utf-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, html: str) -> str:
        """Serve ``html`` at ``path``; returns the page's URL."""
        self.pages[path] = html
        return self.origin + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


# ------------------------------------------------------------------------------------------------ the rejoinder server


def make_bot(directory: Path, origins: list[str], settings: dict[str, Any] | None = None) -> Path:
    """The example shop bot plus the skills of tests/e2e/skills/, allowing ``origins``, with ``settings`` added
    to its rejoinder.yaml."""
    shutil.copytree(EXAMPLE_BOT, directory, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.py"))
    config_path = directory / "rejoinder.yaml"
    config = {**yaml.safe_load(config_path.read_text()), **(settings or {})}
    config["allowed_origins"] = sorted({*config.get("allowed_origins", []), *origins})
    config_path.write_text(yaml.safe_dump(config))
    if E2E_SKILLS.is_dir():
        for skill in E2E_SKILLS.glob("*.yaml"):
            shutil.copy(skill, directory / "skills" / skill.name)
    return directory


@dataclass
class Server:
    """A real `rejoinder serve` process on 127.0.0.1, with its keys; it can be stopped and started again."""

    bot_dir: Path
    database: Path
    port: int
    env: dict[str, str]
    sdk_key: str = ""
    secret_key: str = ""
    process: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sdk_url(self) -> str:
        return f"{self.base}/sdk/alli.js"

    def create_keys(self) -> None:
        created = subprocess.run(
            [REJOINDER, "keys", "create", str(self.bot_dir), "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        keys = json.loads(created.stdout)
        self.sdk_key, self.secret_key = keys["sdk_key"], keys["secret_key"]

    def start(self) -> None:
        # The log goes to a file: a pipe nobody reads would fill up and stall the server.
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [REJOINDER, "serve", str(self.bot_dir), "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=log,
                text=True,
            )
        wait_until_up(self.base, self.process)

    @property
    def log_path(self) -> Path:
        return self.database.with_name("server.log")

    def log_text(self) -> str:
        """What the server has logged so far (JSON lines)."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def admin(self) -> httpx.Client:
        """An admin API client (secret key, no browser Origin)."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.secret_key}"}, timeout=10
        )

    def client(self) -> httpx.Client:
        """A client API client with the SDK key, as a server or mobile app would call it (no Origin)."""
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.sdk_key}"}, timeout=10
        )

    def start_conversation(self, **body: Any) -> dict[str, Any]:
        """Start a conversation elsewhere than in the browser; the answer of POST /v1/conversations."""
        with self.client() as client:
            answer = client.post("/v1/conversations", json=body)
        assert answer.status_code == 201, answer.text
        started: dict[str, Any] = answer.json()
        return started

    def issue_token(self, conversation_id: str, **body: Any) -> dict[str, Any]:
        """A conversation token from the admin API: ``{"id", "token", …}``."""
        with self.admin() as admin:
            answer = admin.post(f"/v1/conversations/{conversation_id}/tokens", json=body)
        assert answer.status_code == 201, answer.text
        issued: dict[str, Any] = answer.json()
        return issued


def server_environment(database: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("REJOINDER_")}
    return {
        **env,
        **NO_QUOTAS,
        "REJOINDER_DATABASE_URL": f"sqlite:///{database}",
        "SHOP_BACKEND": "http://127.0.0.1:9",  # closed: the shop's Integrate calls fail fast
        "SHOP_IDENTITY_SECRET": IDENTITY_SECRET,
        **extra,
    }


def run_server(
    directory: Path, origins: list[str], settings: dict[str, Any] | None = None, **env: str
) -> Server:
    """Write a bot allowing ``origins`` (and ``settings`` in its rejoinder.yaml) under ``directory``, create its
    keys and start serving it."""
    database = directory / "rejoinder.db"
    server = Server(
        bot_dir=make_bot(directory / "bot", origins, settings),
        database=database,
        port=free_port(),
        env=server_environment(database, **env),
    )
    server.create_keys()
    server.start()
    return server


@pytest.fixture(scope="session")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the browser tests (each start costs seconds), on a fresh SQLite file, allowing ``site``.

    A test that needs other settings starts its own with ``run_server``.
    """
    running = run_server(tmp_path_factory.mktemp("server"), [site.origin])
    yield running
    running.stop()


def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
