"""The launcher on a phone (390 by 844 px, touch) next to a page's own bar fixed at the bottom of the screen."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, FloatRect, Page, expect

from tests.e2e.sdk_pages import page_with_sdk, widget
from tests.helpers.processes import ServeProcess
from tests.helpers.site import ARTIFACTS, PageErrors, Site, open_page, wait_for

PHONE = {"width": 390, "height": 844}
# A page made for phones says so; without it a mobile browser lays the page out 980 px wide.
MOBILE_HEAD = '<meta name="viewport" content="width=device-width, initial-scale=1">'
BAR_HEIGHT = 64
# A shop's product page: long content and a sticky "Add to cart" bar, 64 px, fixed at the bottom.
CART_BAR = f"""
<div style="height: 2400px; font: 16px/1.5 system-ui">
  <div style="height: 300px; border-radius: 12px; background: #cbd5e1"></div>
  <h2>Trail runner 2</h2><p>Light, grippy and made to last. Free returns within 30 days.</p>
  <p style="margin-top: 60px">Sizes 36 to 47. Machine washable at 30 °C.</p>
</div>
<div id="cart-bar" style="position: fixed; left: 0; right: 0; bottom: 0; height: {BAR_HEIGHT}px; display: flex;
  align-items: center; justify-content: space-between; padding: 0 16px; box-sizing: border-box;
  background: #111827; color: #fff; font: 600 16px system-ui">
  <span>€ 49.00</span><button id="add" style="height: 44px; padding: 0 18px">Add to cart</button>
</div>
"""


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest, page_errors: PageErrors) -> Iterator[Page]:
    """A page in a phone-like context; a screenshot of it is saved when the test ends."""
    options = {"viewport": PHONE, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
    with open_page(browser, request.node.name, page_errors, **options) as opened:
        yield opened


def phone_page(site: Site, server: ServeProcess, path: str, *, options: str = "", body: str = "") -> str:
    """A business page made for phones that loads the SDK; returns its URL."""
    return page_with_sdk(site, server, path, options=options, head=MOBILE_HEAD, body=body)


def box_of(page: Page, selector: str) -> FloatRect:
    found = page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


def overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def launcher_box(page: Page) -> FloatRect:
    return box_of(page, "#rejoinder-widget .launcher")


def on_screen(box: FloatRect) -> bool:
    return (
        box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= PHONE["width"]
        and box["y"] + box["height"] <= PHONE["height"]
    )


def settled_launcher(page: Page) -> FloatRect:
    """The launcher's box once it has stopped moving (it is placed a frame after the page changes)."""
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return launcher_box(page)


def clear_of(page: Page, bar: FloatRect) -> FloatRect | None:
    """The launcher's settled box if it does not overlap ``bar``, else None."""
    launcher = settled_launcher(page)
    return None if overlap(launcher, bar) else launcher


def test_the_launcher_lifts_itself_above_a_bar_fixed_at_the_bottom(
    phone: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    debug_lines: list[str] = []
    phone.on("console", lambda message: debug_lines.append(message.text))
    phone.goto(phone_page(site, server, "/phone-bar.html", options=", debug: true", body=CART_BAR))
    expect(widget(phone).locator(".launcher")).to_be_visible()

    bar = box_of(phone, "#cart-bar")
    launcher = wait_for(lambda: clear_of(phone, bar))
    assert launcher["y"] + launcher["height"] <= bar["y"]  # above the bar, not beside it
    assert launcher["x"] + launcher["width"] == PHONE["width"] - 12  # still in its corner's column
    assert on_screen(launcher)
    lifted = f"[Alli] launcher lifted {BAR_HEIGHT + 8}px above the page's bar div#cart-bar"
    assert lifted in debug_lines, debug_lines
    phone.screenshot(path=str(ARTIFACTS / "phone-launcher-above-cart-bar.png"))
    # The bar's own button can be tapped: nothing of the widget lies over it.
    phone.locator("#add").tap()

    phone.evaluate("window.scrollBy(0, 900)")  # scrolling keeps it there
    assert not overlap(settled_launcher(phone), bar)
    assert page_errors.exceptions == [] and page_errors.console == []


def test_style_options_bottom_lifts_the_launcher_on_a_phone_too(
    phone: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    options = ", styleOptions: {conversationContainer: {right: 24, bottom: 96}}"
    phone.goto(phone_page(site, server, "/phone-bar-offsets.html", options=options, body=CART_BAR))
    expect(widget(phone).locator(".launcher")).to_be_visible()

    launcher = settled_launcher(phone)
    # The page's offsets, as on a desktop (no home indicator in this browser: a safe-area inset of 0).
    assert launcher["y"] + launcher["height"] == PHONE["height"] - 96
    assert launcher["x"] + launcher["width"] == PHONE["width"] - 24
    assert not overlap(launcher, box_of(phone, "#cart-bar"))
    assert page_errors.exceptions == [] and page_errors.console == []


def test_offsets_too_large_for_a_phone_keep_the_launcher_on_screen(
    phone: Page, site: Site, server: ServeProcess
) -> None:
    options = ', placement: "bottom-left", styleOptions: {conversationContainer: {left: 900, bottom: 1500}}'
    phone.goto(phone_page(site, server, "/phone-far.html", options=options))
    expect(widget(phone).locator(".launcher")).to_be_visible()

    launcher = settled_launcher(phone)
    assert on_screen(launcher)
    # At most 40% of the screen up, and clear of the left edge by 12 px at most from its right one.
    assert launcher["y"] + launcher["height"] == pytest.approx(PHONE["height"] * 0.6, abs=0.5)
    assert launcher["x"] == PHONE["width"] - 60


def test_without_a_bar_the_launcher_keeps_to_its_corner_and_returns_there_when_the_bar_goes(
    phone: Page, site: Site, server: ServeProcess
) -> None:
    header = (
        '<div style="position: fixed; top: 0; left: 0; right: 0; height: 56px; background: #eee">Shop</div>'
    )
    phone.goto(phone_page(site, server, "/phone-plain.html", body=header + CART_BAR))
    expect(widget(phone).locator(".launcher")).to_be_visible()
    wait_for(lambda: not overlap(settled_launcher(phone), box_of(phone, "#cart-bar")))

    phone.evaluate("document.getElementById('cart-bar').remove(); window.dispatchEvent(new Event('resize'))")
    wait_for(lambda: settled_launcher(phone)["y"] + 48 == PHONE["height"] - 12)
    launcher = launcher_box(phone)
    assert launcher["x"] + launcher["width"] == PHONE["width"] - 12  # the fixed header up top changed nothing


def test_a_bar_that_appears_on_scroll_moves_the_launcher_up(
    phone: Page, site: Site, server: ServeProcess
) -> None:
    # The shop shows its bar once the customer has scrolled past the product's own button.
    appearing = CART_BAR.replace("display: flex;", "display: none;") + (
        "<script>addEventListener('scroll', () => "
        "{ document.getElementById('cart-bar').style.display = scrollY < 300 ? 'none' : 'flex'; });</script>"
    )
    phone.goto(phone_page(site, server, "/phone-appearing.html", body=appearing))
    expect(widget(phone).locator(".launcher")).to_be_visible()
    before = settled_launcher(phone)
    assert before["y"] + before["height"] == PHONE["height"] - 12

    phone.evaluate("window.scrollTo(0, 600)")
    bar = box_of(phone, "#cart-bar")
    wait_for(lambda: not overlap(settled_launcher(phone), bar))


def test_the_open_chat_keeps_its_send_button_clear_of_the_launcher(
    phone: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    phone.goto(phone_page(site, server, "/phone-open.html", body=CART_BAR))
    chat = widget(phone)
    wait_for(lambda: not overlap(settled_launcher(phone), box_of(phone, "#cart-bar")))

    chat.locator(".launcher").tap()
    send = chat.locator(".send")
    expect(send).to_be_visible()
    phone.locator("#rejoinder-widget .input").fill("Opening hours?")
    button = box_of(phone, "#rejoinder-widget .send")
    assert on_screen(button)
    launcher = chat.locator(".launcher")
    if launcher.is_visible():
        assert not overlap(launcher_box(phone), button)
    # What a tap at the send button's centre reaches is the send button itself.
    centre = (button["x"] + button["width"] / 2, button["y"] + button["height"] / 2)
    hit = phone.evaluate(
        """([x, y]) => {
            const root = document.getElementById('rejoinder-widget').shadowRoot;
            return root.elementFromPoint(x, y)?.closest('.send') !== null;
        }""",
        list(centre),
    )
    assert hit
    send.tap()
    expect(chat.locator(".msg.customer").last).to_have_text("Opening hours?")
    assert page_errors.exceptions == [] and page_errors.console == []


def test_a_bar_stuck_to_the_bottom_counts_and_a_full_screen_layer_does_not(
    phone: Page, site: Site, server: ServeProcess
) -> None:
    sticky = (
        '<div style="height: 1600px">Reviews…</div>'
        f'<nav id="tabs" style="position: sticky; bottom: 0; height: {BAR_HEIGHT}px; background: #e5e7eb">Tabs</nav>'
        '<div style="height: 400px">Footer</div>'
    )
    phone.goto(phone_page(site, server, "/phone-sticky.html", body=sticky))
    expect(widget(phone).locator(".launcher")).to_be_visible()
    wait_for(lambda: clear_of(phone, box_of(phone, "#tabs")))

    # A layer over the whole screen (a cookie dialog's backdrop) is no bar: the launcher keeps its place.
    layer = (
        "const layer = document.createElement('div'); layer.id = 'backdrop';"
        "layer.style.cssText = 'position: fixed; inset: 0; background: rgba(0, 0, 0, .3)';"
        "document.getElementById('tabs').remove(); document.body.append(layer); dispatchEvent(new Event('resize'))"
    )
    phone.evaluate(layer)
    wait_for(lambda: settled_launcher(phone)["y"] + 48 == PHONE["height"] - 12)
