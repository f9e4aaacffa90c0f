"""Browser tests: Debian's chromium driven by Playwright, against real `rejoinder serve` processes.

A test gets a business site (``site``: a plain web server on its own port serving the pages the test writes) and a
rejoinder server (``server``) whose bot allows that site's origin. Every test leaves a screenshot of its page in
``artifacts/e2e/`` (look at them). Without chromium the tests skip; with ``REJOINDER_REQUIRE_SERVICES=1`` they fail.
``REJOINDER_CHROMIUM`` points them at another chromium executable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers.processes import ServeProcess
from tests.helpers.services import unreachable
from tests.helpers.site import PageErrors, Site, open_page, run_server

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


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        unreachable(
            "chromium",
            FileNotFoundError(
                f"{CHROMIUM} (apt-get install -y chromium, or set REJOINDER_CHROMIUM to its path)"
            ),
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        yield launched
        launched.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, page_errors: PageErrors) -> Iterator[Page]:
    """A fresh browser context and page; a screenshot of it is saved when the test ends."""
    with open_page(
        browser, request.node.name, page_errors, viewport={"width": 1280, "height": 800}
    ) as opened:
        yield opened


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    served = Site()
    yield served
    served.close()


@pytest.fixture(scope="session")
def server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One server for the browser tests (each start costs seconds), on a fresh SQLite file, allowing ``site``.

    A test that needs other settings starts its own with ``run_server``.
    """
    with run_server(tmp_path_factory.mktemp("server"), [site.origin]) as running:
        yield running
