"""The console's Overview in chromium: the charts render under the strict Content-Security-Policy, on a desktop and
on a 390 px phone. Screenshots go to docs/images/console-overview*.png."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from rejoinder.store import Store
from rejoinder.store.records import LATENCY_BUCKET_COLUMNS, NewAudit, TurnStats
from tests.helpers.bots import ROOT
from tests.helpers.console import in_store, sign_in_page
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, run_console_server
from tests.store.factories import turn

IMAGES = ROOT / "docs" / "images"
OUTCOMES = ["ok"] * 6 + ["token_expired", "token_revoked", "token_not_found", "token_used_up"]


async def seed(store: Store) -> None:
    """Two weeks of a busy shop: conversations and resumes every few hours, turn statistics for each hour."""
    now = datetime.now(UTC)
    draw = random.Random(7)
    stats = []
    for back in range(14 * 24):
        hour = (now - timedelta(hours=back)).replace(minute=0, second=0, microsecond=0)
        busy = 1 + (hour.hour in range(9, 18))
        for index in range(draw.randint(0, busy)):
            moment = min(hour + timedelta(minutes=draw.randint(0, 59)), now)
            await store.conversations.commit_turn(turn(f"cnv_{back}_{index}", bot_id="shop", now=moment))
            if draw.random() < 0.6:
                await store.audit.add(NewAudit("resume", "shop", draw.choice(OUTCOMES), moment))
        turns = busy * draw.randint(2, 6)
        latency = [0] * len(LATENCY_BUCKET_COLUMNS)
        for _ in range(turns):
            latency[min(int(draw.expovariate(0.6)), len(latency) - 1)] += 1
        stats.append(
            TurnStats(
                "shop",
                hour,
                turns,
                draw.randint(0, 2) * (draw.random() < 0.3),
                draw.randint(0, 1),
                tuple(latency),
            )
        )
    await store.turn_stats.add(stats)


@pytest.fixture(scope="module")
def overview_server(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    directory = tmp_path_factory.mktemp("overview")
    with run_console_server(directory, [site.origin], {"owner@example.com": "owner"}) as running:
        in_store(running.env["REJOINDER_DATABASE_URL"], seed)
        yield running


def open_overview(page: Page, server: ServeProcess) -> None:
    sign_in_page(page, server.base, "owner@example.com")
    page.goto(f"{server.base}/dashboard?bot=shop")
    expect(page.get_by_role("heading", name="Last 24 hours, by hour (UTC)")).to_be_visible()


def test_the_overview_draws_its_charts_on_a_desktop(
    page: Page, overview_server: ServeProcess, page_errors: PageErrors
) -> None:
    open_overview(page, overview_server)

    charts = page.locator("figure.chart svg.chart-svg")
    expect(charts).to_have_count(8)
    # Drawn, not empty: bars with a size, a latency line, and the fills from the stylesheet (no inline style).
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert page.locator("#days-conversations rect.series-started").count() >= 10
    assert page.locator("#hours-latency polyline.series-p95").count() >= 1
    fill = page.locator("#days-conversations rect.series-started").first.evaluate(
        "node => getComputedStyle(node).fill"
    )
    assert fill == "rgb(35, 84, 196)"
    # Each chart's numbers are one click away, and named for a screen reader.
    page.locator("#days-resumes summary").click()
    expect(page.locator("#days-resumes table")).to_be_visible()
    expect(page.get_by_role("img", name="Resumes by outcome").first).to_be_visible()
    # A CSP refusal (an inline style or script) would be a console error.
    assert not [message for message in page_errors.console if "Content Security Policy" in message]
    assert page_errors.exceptions == []
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.locator("#days-resumes summary").click()
    page.screenshot(path=str(IMAGES / "console-overview.png"), full_page=True)


def test_the_overview_fits_a_phone(browser: Browser, overview_server: ServeProcess, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    try:
        page = context.new_page()
        open_overview(page, overview_server)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width} px)"
        box = page.locator("#hours-conversations svg.chart-svg").bounding_box()
        assert box is not None and 300 < box["width"] <= 390
        page.screenshot(path=str(IMAGES / "console-overview-phone.png"), full_page=False)
    finally:
        context.close()
