"""The console's Overview: charts of a bot's activity with their numbers, after real conversations and resumes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rejoinder.service import Actor, TokenRefused
from rejoinder.skills import Bot
from rejoinder.tokens import mint
from tests.helpers.app import Server, running
from tests.helpers.console import FAST_HASHER, create_user, sign_in

CLI = Actor("cli")


@pytest.fixture
async def console(tmp_path: Path, shop_bot: Bot, other_bot: Bot) -> AsyncIterator[Server]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot, "other": other_bot}) as server:
        server.app.state.accounts.hasher = FAST_HASHER
        await create_user(server.store, "viewer@example.com", "viewer")
        yield server


async def seed(server: Server) -> None:
    """On shop: three conversations; two resumes ok, used up, revoked, not found; two rate-limited; one Integrate
    failure. On other: one conversation."""
    service = server.service
    started = [await service.start("shop", event="welcome") for _ in range(3)]
    await service.start("other", event="welcome")
    once, _ = await service.issue_token(started[0].conversation_id, uses=1)
    twice, _ = await service.issue_token(started[1].conversation_id, uses=2)
    _, revoked = await service.issue_token(started[2].conversation_id)
    revoked_secret, revoked = await service.issue_token(started[2].conversation_id)
    await service.revoke_token("shop", revoked.id, CLI)
    await service.resume("shop", once)
    await service.resume("shop", twice)
    for refused in (once, revoked_secret, mint().secret):
        with pytest.raises(TokenRefused):
            await service.resume("shop", refused)
    service.meter.resume_rate_limited("shop")
    service.meter.resume_rate_limited("shop")
    service.meter.integrate_failed("shop")
    await service.meter.flush(server.store)


def figure(html: str, chart_id: str) -> str:
    found = re.search(rf'<figure class="chart" id="{chart_id}">(.*?)</figure>', html, re.S)
    assert found is not None, f"no chart {chart_id}"
    return found.group(1)


def summary(html: str, chart_id: str) -> str:
    found = re.search(r'class="chart-summary" id="[^"]+">([^<]*)<', figure(html, chart_id))
    assert found is not None
    return found.group(1)


def last_row(html: str, chart_id: str) -> list[str]:
    rows = re.findall(r"<tr><th scope=\"row\">([^<]*)</th>(.*?)</tr>", figure(html, chart_id), re.S)
    assert rows
    return [rows[-1][0], *re.findall(r"<td>([^<]*)</td>", rows[-1][1])]


async def test_the_overview_charts_a_bots_conversations_resumes_and_failures(console: Server) -> None:
    await seed(console)
    viewer = await sign_in(console.client, console.store, "viewer@example.com")

    page = await viewer.client.get("/dashboard?bot=shop")

    assert page.status_code == 200
    html = page.text
    for window in ("hours", "days"):
        assert summary(html, f"{window}-conversations").endswith("3 conversations started, 2 resumed.")
        assert (
            "7 resume attempts: 2 ok, 0 expired, 1 revoked, 1 not found, 1 used up, 2 rate limited, 0 malformed"
            in (summary(html, f"{window}-resumes"))
        )
        assert "1 Integrate calls failed, in 3 turns" in summary(html, f"{window}-integrate")
        assert "over 3 turns" in summary(html, f"{window}-latency")
        # The table gives the current period's figures in the order of the legend.
        assert last_row(html, f"{window}-conversations")[1:] == ["3", "2"]
        assert last_row(html, f"{window}-resumes")[1:] == ["2", "0", "1", "1", "1", "2", "0"]
        assert last_row(html, f"{window}-integrate")[1:] == ["1"]
    # One bar per non-zero value: started and resumed in the current hour, nothing before.
    conversations = figure(html, "hours-conversations")
    assert conversations.count('<rect class="series-started" x=') == 1
    assert conversations.count('<rect class="series-resumed" x=') == 1
    assert re.search(r"<title>\d\d:00: 3 started</title>", conversations)
    # Five outcomes of seven happened: five stacked pieces in the current hour.
    assert len(re.findall(r'<rect class="outcome-[a-z-]+" x=', figure(html, "hours-resumes"))) == 5
    # The latency line has a point for the hour with turns and none for the 23 without.
    assert figure(html, "hours-latency").count('<circle class="series-p50"') == 1
    assert 'aria-describedby="hours-conversations-summary"' in html and 'role="img"' in html


async def test_the_bot_selector_shows_each_bots_own_figures(console: Server) -> None:
    await seed(console)
    viewer = await sign_in(console.client, console.store, "viewer@example.com")

    first = await viewer.client.get("/dashboard")
    other = await viewer.client.get("/dashboard?bot=other")
    missing = await viewer.client.get("/dashboard?bot=nope")

    assert '<option value="other"' in first.text and '<option value="shop" selected' not in first.text
    assert summary(first.text, "hours-conversations").endswith("1 conversations started, 0 resumed.")
    assert summary(other.text, "hours-conversations").endswith("1 conversations started, 0 resumed.")
    assert summary(other.text, "days-resumes").startswith("In the last 14 days: 0 resume attempts")
    assert "median turn" in summary(other.text, "days-latency")
    assert missing.status_code == 404 and "No such bot" in missing.text


async def test_the_overview_needs_a_signed_in_user(console: Server) -> None:
    answer = await console.client.get("/dashboard?bot=shop")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/sign-in")
