"""The widget cannot be broken by the host page, and nothing in a message can run or leak into the page."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.sdk_pages import TRACK_EVENTS, messages_in, page_with_sdk, widget
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, wait_for

SCRIPT_PAYLOAD = "<script>window.__pwned = 'script'</script>"
IMG_PAYLOAD = "<img src=x onerror=\"window.__pwned = 'img'\">"
LINK_PAYLOAD = '<a href="javascript:window.__pwned=1">click</a> & &amp; "quotes"'

AGGRESSIVE_CSS = """<style>
  * { font-size: 40px !important; color: red !important; display: block !important;
      line-height: 3 !important; margin: 7px !important; padding: 9px !important; letter-spacing: 4px !important;
      box-sizing: content-box !important; font-family: "Comic Sans MS", cursive !important; }
  html, body { background: black !important; }
  div, section, header, form { border: 5px dashed lime !important; width: 100px !important; position: static !important; }
  button { background: yellow !important; border-radius: 0 !important; width: 300px !important; height: 9px !important; }
  input { visibility: hidden !important; }
  #rejoinder-widget { display: none !important; opacity: 0 !important; transform: scale(.2) !important; }
  div#rejoinder-widget { all: unset !important; }
</style>"""

# Styles and boxes of the widget's parts, read inside its shadow root.
MEASURE = """() => {
  const root = document.querySelector('#rejoinder-widget').shadowRoot;
  const read = (selector) => {
    const node = root.querySelector(selector);
    const style = getComputedStyle(node);
    const box = node.getBoundingClientRect();
    return {
      box: [box.x, box.y, box.width, box.height].map(Math.round),
      style: ['font-size', 'font-family', 'color', 'background-color', 'display', 'line-height', 'padding-top',
              'margin-top', 'border-top-width', 'visibility', 'letter-spacing', 'border-radius'].map(
                name => style.getPropertyValue(name)),
    };
  };
  const host = document.querySelector('#rejoinder-widget');
  return {
    host: [getComputedStyle(host).display, getComputedStyle(host).opacity, getComputedStyle(host).transform],
    parts: Object.fromEntries(['.window', '.header', '.title', '.close', '.log', '.msg.bot .bubble',
      '.msg.customer .bubble', '.choice', '.input', '.send'].map(s => [s, read(s)])),
  };
}"""


def open_welcome(page: Page, site: Site, server: ServeProcess, path: str, head: str = "") -> dict[str, Any]:
    """A page that starts the welcome skill and answers its menu by text; returns the widget's measurements."""
    script = "Alli.event('welcome').then(function () { return Alli.sendChat('Hi'); });"
    page.goto(page_with_sdk(site, server, path, script, head=head))
    expect(widget(page).locator(".msg")).to_have_count(4)
    expect(widget(page).locator(".choice").first).to_be_visible()
    wait_for(lambda: page.evaluate("Alli.status") == "online")  # no "Connecting…" banner to shift the layout
    measured: dict[str, Any] = page.evaluate(MEASURE)
    return measured


def test_aggressive_page_css_does_not_change_the_widget(page: Page, site: Site, server: ServeProcess) -> None:
    plain = open_welcome(page, site, server, "/plain.html")
    styled = open_welcome(page, site, server, "/aggressive.html", head=AGGRESSIVE_CSS)
    assert (
        page.evaluate("getComputedStyle(document.querySelector('h1')).fontSize") == "40px"
    )  # the CSS applies
    assert styled == plain
    assert plain["parts"][".msg.bot .bubble"]["style"][0] == "15px"
    assert plain["host"] == ["block", "1", "none"]


def test_widget_css_does_not_leak_into_the_page(page: Page, site: Site, server: ServeProcess) -> None:
    look_alikes = (
        '<div class="bubble" id="b">page bubble</div><button class="send" id="s">page button</button>'
    )
    page.goto(page_with_sdk(site, server, "/leak.html", "Alli.event('welcome')", body=look_alikes))
    expect(widget(page).locator(".msg")).to_have_count(1)
    styles = page.evaluate(
        """() => ['#b', '#s'].map(s => {
             const style = getComputedStyle(document.querySelector(s));
             return [style.backgroundColor, style.borderRadius, style.paddingTop];
           })"""
    )
    assert styles[0] == ["rgba(0, 0, 0, 0)", "0px", "0px"]
    assert styles[1][1] == "0px"  # the widget's round send button stays inside the widget


def test_markup_in_messages_is_shown_as_text_and_never_runs(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    page.goto(page_with_sdk(site, server, "/xss.html", TRACK_EVENTS + "Alli.event('echo');"))
    expect(widget(page).locator(".msg")).to_have_count(1)
    for payload in (SCRIPT_PAYLOAD, IMG_PAYLOAD, LINK_PAYLOAD):
        widget(page).locator(".input").fill(payload)
        widget(page).locator(".input").press("Enter")
        expect(widget(page).locator(".msg.bot").last).to_have_text(f"You said: {payload}")
    page.wait_for_timeout(300)  # an injected image would have failed to load by now
    assert page.evaluate("window.__pwned") is None
    assert messages_in(page)[1:] == [
        ("customer", SCRIPT_PAYLOAD),
        ("bot", f"You said: {SCRIPT_PAYLOAD}"),
        ("customer", IMG_PAYLOAD),
        ("bot", f"You said: {IMG_PAYLOAD}"),
        ("customer", LINK_PAYLOAD),
        ("bot", f"You said: {LINK_PAYLOAD}"),
    ]
    created = page.evaluate(
        """() => [...document.querySelector('#rejoinder-widget').shadowRoot.querySelectorAll('.bubble *')]
                   .map(node => node.tagName)"""
    )
    assert created == []  # no element came out of any message
    assert page_errors.exceptions == []


def test_links_in_text_and_link_buttons_open_safely(page: Page, site: Site, server: ServeProcess) -> None:
    page.goto(page_with_sdk(site, server, "/links.html", "Alli.event('links')"))
    expect(widget(page).locator(".msg")).to_have_count(1)
    links = page.evaluate(
        """() => [...document.querySelector('#rejoinder-widget').shadowRoot.querySelectorAll('.msg a')]
                   .map(a => [a.textContent, a.href, a.target, a.rel])"""
    )
    safe = ["_blank", "noopener noreferrer"]
    assert links == [
        [
            "https://example.com/guide",
            "https://example.com/guide",
            *safe,
        ],  # the trailing "." is not part of it
        ["Open the guide", "https://example.com/guide", *safe],
        ["Track a parcel", "https://example.com/track?id=1&x=2", *safe],
    ]
    assert messages_in(page) == [("bot", "Read the guide at https://example.com/guide. Anything else?")]


def test_works_under_a_strict_content_security_policy(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    ws = server.base.replace("http", "ws")
    csp = (
        f"default-src 'none'; script-src {server.base} 'nonce-abc123'; connect-src {server.base} {ws}; "
        "style-src 'self'; img-src 'self'; require-trusted-types-for 'script'"
    )
    head = f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
    page.goto(page_with_sdk(site, server, "/csp.html", "Alli.event('links')", head=head, nonce="abc123"))
    expect(widget(page).locator(".msg")).to_have_count(1)
    radius = widget(page).locator(".window").evaluate("node => getComputedStyle(node).borderTopLeftRadius")
    assert radius == "16px"  # the widget's own styles applied
    wait_for(lambda: page.evaluate("Alli.status") == "online")  # the stream connected too
    assert page_errors.console == [] and page_errors.exceptions == []
