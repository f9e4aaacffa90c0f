"""Starting conversations from a page: by event, by the customer's first message, with a verified identity; using
the widget with the keyboard only; quick replies; the end of a conversation."""

from __future__ import annotations

import hashlib
import hmac

from playwright.sync_api import Page, expect

from tests.e2e.sdk_pages import TRACK_EVENTS, banner_text, messages_in, page_with_sdk, widget
from tests.helpers.bots import IDENTITY_SECRET
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, wait_for

WELCOME = "Hi! I'm the Demo Shop assistant. What can I do for you?"


def focused(page: Page) -> str:
    """What has the keyboard focus: the widget part's class, or the page element's tag."""
    name: str = page.evaluate(
        """() => {
          const active = document.activeElement;
          if (active && active.id === 'rejoinder-widget') {
            const inner = active.shadowRoot.activeElement;
            return inner ? inner.className : 'widget';
          }
          return active ? active.tagName.toLowerCase() : 'none';
        }"""
    )
    return name


def test_keyboard_only(page: Page, page_errors: PageErrors, site: Site, server: ServeProcess) -> None:
    page.goto(page_with_sdk(site, server, "/keyboard.html", TRACK_EVENTS, body='<a href="#top">Top</a>'))
    page.keyboard.press("Tab")
    assert focused(page) == "a"
    page.keyboard.press("Tab")
    assert focused(page) == "launcher"
    page.keyboard.press("Enter")
    expect(widget(page).locator(".window")).to_be_visible()
    assert focused(page) == "input"  # focus moves into the window
    page.keyboard.type("hello")
    page.keyboard.press("Enter")  # no conversation yet: the first message starts one (the default skill)
    expect(widget(page).locator(".msg")).to_have_count(2)
    assert messages_in(page) == [("customer", "hello"), ("bot", WELCOME)]
    announced = widget(page).locator("[aria-live=polite]")
    expect(announced).to_have_text(WELCOME)  # read out to screen readers
    assert widget(page).locator("[role=log]").count() == 1

    page.keyboard.press("Shift+Tab")  # back from the input: the quick replies
    assert focused(page) == "choice"
    page.keyboard.press("Enter")  # the focused reply is "Opening hours" (the last one)
    expect(widget(page).locator(".msg")).to_have_count(4)
    assert messages_in(page)[2:] == [
        ("customer", "Opening hours"),
        ("bot", "We're open every day from 9:00 to 18:00."),
    ]

    page.keyboard.press("Escape")
    expect(widget(page).locator(".window")).to_be_hidden()
    assert focused(page) == "launcher"  # and back to the launcher
    assert page.evaluate("[window.seen.open, window.seen.close]") == [1, 1]
    outline = widget(page).locator(".launcher").evaluate("node => getComputedStyle(node).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    assert page_errors.exceptions == []


def test_event_starts_its_skill_and_choices_are_quick_replies(
    page: Page, site: Site, server: ServeProcess
) -> None:
    page.goto(page_with_sdk(site, server, "/event.html", TRACK_EVENTS + "Alli.event('welcome')"))
    expect(widget(page).locator(".window")).to_be_visible()  # event() opens the window
    choices = widget(page).locator(".choice")
    expect(choices).to_have_text(["My orders", "Opening hours"])
    assert messages_in(page) == [("bot", WELCOME)]
    choices.filter(has_text="Opening hours").click()
    expect(widget(page).locator(".msg")).to_have_count(3)
    assert messages_in(page)[1:] == [
        ("customer", "Opening hours"),
        ("bot", "We're open every day from 9:00 to 18:00."),
    ]
    expect(choices).to_have_count(0)
    assert len(page.evaluate("window.seen.conversation")) == 1


def test_a_closed_conversation_says_so_and_a_new_one_can_start(
    page: Page, site: Site, server: ServeProcess
) -> None:
    page.goto(page_with_sdk(site, server, "/end.html", TRACK_EVENTS + "Alli.event('echo')"))
    expect(widget(page).locator(".msg")).to_have_count(1)
    widget(page).locator(".input").fill("bye")
    widget(page).locator(".input").press("Enter")
    expect(widget(page).locator(".msg").last).to_have_text("Goodbye!")
    wait_for(lambda: page.evaluate("Alli.status") == "ended")
    assert banner_text(page) == "This conversation has ended."
    expect(widget(page).locator(".input")).to_be_disabled()
    refused = page.evaluate("Alli.sendChat('more').then(() => 'sent', e => e.code)")
    assert refused == "conversation_closed"

    widget(page).locator(".banner-action").click()
    expect(widget(page).locator(".input")).to_be_enabled()
    assert messages_in(page) == [] and page.evaluate("Alli.status") == "idle"
    page.evaluate("Alli.event('echo')")
    expect(widget(page).locator(".msg")).to_have_count(1)
    conversations = page.evaluate("window.seen.conversation")
    assert len(conversations) == 2 and conversations[0] != conversations[1]


def test_verified_identity_reaches_the_skill(page: Page, site: Site, server: ServeProcess) -> None:
    digest = hmac.new(IDENTITY_SECRET.encode(), b"u-42", hashlib.sha256).hexdigest()
    user = f', user: {{id: "u-42", name: "Ada", hash: "{digest}"}}'
    page.goto(page_with_sdk(site, server, "/verified.html", "Alli.event('whoami')", options=user))
    expect(widget(page).locator(".msg")).to_have_text(["Hello Ada, you are verified as u-42."])

    forged = ', user: {id: "u-1", name: "Eve", hash: "00"}'
    page.goto(page_with_sdk(site, server, "/forged.html", "Alli.event('whoami')", options=forged))
    expect(widget(page).locator(".msg")).to_have_text(["Hello Eve, you are not verified."])


def test_calls_before_initialize_and_a_second_initialize_are_refused(
    page: Page, site: Site, server: ServeProcess
) -> None:
    page.goto(site.add("/bare.html", "<!doctype html><link rel=icon href='data:,'><p>no widget yet</p>"))
    page.add_script_tag(url=server.sdk_url)
    outcomes = page.evaluate(
        """async ([key, base]) => {
             const code = (promise) => promise.then(() => 'ok', e => e.code);
             return [
               await Alli.event('welcome').then(() => 'ok', e => e.code + ': ' + e.message),
               await code(Alli.__sendChat('hi')),
               Alli.status,
               await code(Alli.initialize({server: base})),
               await code(Alli.initialize({sdkKey: key, server: base})),
               await code(Alli.initialize({sdkKey: key, server: base})),
             ];
           }""",
        [server.sdk_key, server.base],
    )
    assert outcomes == [
        'not_initialized: Call Alli.initialize({sdkKey: "pk_…"}) before using the chat.',
        "not_initialized",
        "idle",
        "invalid_options",
        "ok",
        "already_initialized",
    ]
    assert page.locator("#rejoinder-widget").count() == 1
