"""The console's Keys page in a browser, against a real server: an owner rotates the SDK key with the keyboard,
copies the new key from the page that shows it once, and the web page still using the old key starts a
conversation during the overlap. The page fits a phone's width."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.sdk_pages import messages_in, page_with_sdk, widget
from tests.helpers.bots import ROOT
from tests.helpers.console import sign_in_page
from tests.helpers.processes import ServeProcess
from tests.helpers.site import ARTIFACTS, PageErrors, Site, run_console_server

SCREENSHOT = ROOT / "docs" / "images" / "console-keys.png"
WELCOME = "Hi! I'm the Demo Shop assistant. What can I do for you?"


@pytest.fixture
def keys_server(site: Site, tmp_path: Path) -> Iterator[ServeProcess]:
    """A server of its own (its keys change), with an owner account."""
    with run_console_server(tmp_path, [site.origin], {"owner@example.com": "owner"}) as running:
        yield running


def sdk_key_id(server: ServeProcess) -> str:
    with server.admin() as admin:
        items = admin.get("/v1/keys").json()["items"]
    (key,) = [item for item in items if item["kind"] == "sdk"]
    return str(key["id"])


def test_an_owner_rotates_a_key_and_the_old_one_works_during_the_overlap(
    page: Page, page_errors: PageErrors, site: Site, keys_server: ServeProcess
) -> None:
    old_id = sdk_key_id(keys_server)
    sign_in_page(page, keys_server.base, "owner@example.com")
    page.get_by_role("link", name="Keys").click()
    page.wait_for_url(f"{keys_server.base}/dashboard/keys")
    expect(page.get_by_role("heading", name="Keys", exact=True)).to_be_visible()

    # With the keyboard: pick the overlap, then the Rotate button beside it.
    overlap = page.get_by_label("Old key keeps working for").and_(page.locator(f"#overlap-{old_id}"))
    overlap.focus()
    overlap.select_option(label="1 hour")
    page.keyboard.press("Tab")
    rotate = page.get_by_role("button", name=f"Rotate {old_id}")
    expect(rotate).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Key rotated")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("only time")
    new_key = page.get_by_label("New SDK key").input_value()
    assert new_key.startswith("pk_") and new_key != keys_server.sdk_key
    expect(page.locator("body")).to_contain_text(f"The old key {old_id} goes on working until")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-keys-new-secret.png"))

    # The business's page still carries the old SDK key: during the overlap it starts conversations.
    shop = page.context.new_page()
    shop.goto(page_with_sdk(site, keys_server, "/old-key.html", "Alli.event('welcome')"))
    expect(widget(shop).locator(".msg")).to_have_count(1)
    assert messages_in(shop) == [("bot", WELCOME)]
    shop.close()
    # And the new key works too.
    with keys_server.client() as client:
        started = client.post(
            "/v1/conversations", json={"event": "welcome"}, headers={"Authorization": f"Bearer {new_key}"}
        )
    assert started.status_code == 201, started.text

    page.get_by_role("link", name="Done: back to Keys").click()
    card = page.locator(f"#{old_id}")
    expect(card).to_contain_text("retires")
    expect(card.get_by_role("button", name=f"Rotate {old_id}")).to_have_count(0)
    assert new_key not in page.content()  # shown once, never again
    # Every key's Revoke is in the same place, at the end of its card, whether the key can be rotated or not.
    gaps = page.evaluate(
        """() => [...document.querySelectorAll('.key-card')].map(card => {
            const revoke = card.querySelector('a.button-danger');
            const style = getComputedStyle(card);
            const end = card.getBoundingClientRect().right - parseFloat(style.borderRightWidth)
                - parseFloat(style.paddingRight);
            return revoke && Math.round(end - revoke.getBoundingClientRect().right);
        }).filter(gap => gap !== null)"""
    )
    assert len(gaps) >= 3 and set(gaps) == {0}, gaps
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page_errors.exceptions == []
