"""For the browser tests: a business's web site, a rejoinder server that allows it, and what went wrong in a page."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Page

from tests.helpers.bots import IDENTITY_SECRET, ROOT, copy_shop
from tests.helpers.console import create_user_in
from tests.helpers.processes import ServeProcess, serve_environment

ARTIFACTS = ROOT / "artifacts" / "e2e"  # a screenshot of every browser test's page
BROWSER_SKILLS = ROOT / "tests" / "e2e" / "skills"  # added to the shop for the browser tests


@dataclass
class PageErrors:
    """What went wrong inside a page: uncaught exceptions and console errors."""

    exceptions: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)


@contextlib.contextmanager
def open_page(browser: Browser, name: str, errors: PageErrors, **options: Any) -> Iterator[Page]:
    """A page in a fresh browser context made with ``options`` (viewport, device_scale_factor, has_touch…).

    The page's uncaught exceptions and console errors go to ``errors``. When the block ends a screenshot of the
    page is saved in ``ARTIFACTS`` under ``name`` (a test's name) and the context is closed.
    """
    context = browser.new_context(**options)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.exceptions.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console.append(message.text)

    opened.on("console", on_console)
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        file_name = name.replace("/", "_").replace("[", "-").replace("]", "")
        # A crashed page still lets the test report its own failure.
        with contextlib.suppress(Exception):
            opened.screenshot(path=str(ARTIFACTS / f"{file_name}.png"))
        context.close()


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


def make_bot(directory: Path, origins: list[str], settings: dict[str, Any] | None = None) -> Path:
    """The example shop plus the browser tests' skills, allowing ``origins``, with ``settings`` added."""
    return copy_shop(directory, origins, settings, extra_skills=BROWSER_SKILLS)


def site_server_environment(database: Path, **extra: str) -> dict[str, str]:
    """A server's environment for the browser tests: the shop signs identities with ``IDENTITY_SECRET``."""
    return serve_environment(database, SHOP_IDENTITY_SECRET=IDENTITY_SECRET, **extra)


def run_server(
    directory: Path, origins: list[str], settings: dict[str, Any] | None = None, **env: str
) -> ServeProcess:
    """Write a bot allowing ``origins`` (and ``settings`` in its rejoinder.yaml) under ``directory``, create its
    keys and start serving it; the caller stops it."""
    server = ServeProcess(
        bot_dir=make_bot(directory / "bot", origins, settings),
        env=site_server_environment(directory / "rejoinder.db", **env),
        log_path=directory / "server.log",
    )
    server.create_keys()
    server.start()
    return server


@contextlib.contextmanager
def run_console_server(
    directory: Path, origins: list[str], accounts: Mapping[str, str]
) -> Iterator[ServeProcess]:
    """``run_server`` with console accounts (email: role) made in its database; the server is ended on leaving,
    whatever happens."""
    with run_server(directory, origins) as running:
        for email, role in accounts.items():
            create_user_in(running.env["REJOINDER_DATABASE_URL"], email, role)
        yield running


def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
