"""``rejoinder demo`` in the browser: the seed guide's login-and-resume story, as a newcomer plays it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.e2e.sdk_pages import messages_in, widget
from tests.helpers.demo import DemoProcess, start_demo
from tests.helpers.site import ARTIFACTS, PageErrors


@pytest.fixture(scope="module")
def demo(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    running = start_demo(tmp_path_factory.mktemp("demo"), log_level="info")
    yield running
    running.stop()


def watch(page: Page, errors: PageErrors) -> None:
    """Record a page's uncaught exceptions and console errors (the fixture watches only the first page)."""
    page.on("pageerror", lambda error: errors.exceptions.append(f"{page.url}: {error}"))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console.append(f"{page.url}: {message.text}")

    page.on("console", on_console)


def snapshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_ask_log_in_and_come_back_to_the_same_chat(
    page: Page, page_errors: PageErrors, demo: DemoProcess
) -> None:
    login_link = f"{demo.base}/demo/login"
    asked = [
        ("bot", "Hi there! To see your orders you need to log in first."),
        ("bot", f"Please log in here: {login_link}. I'll be waiting."),
    ]
    urls: list[str] = []
    page.context.on("request", lambda request: urls.append(request.url))
    page.context.on("page", lambda opened: watch(opened, page_errors))
    page.on("websocket", lambda socket: urls.append(socket.url))

    # The shop: the customer asks about their orders.
    page.goto(f"{demo.base}/demo/")
    expect(page.get_by_role("heading", name="Small things for slow mornings")).to_be_visible()
    page.get_by_role("button", name="Ask about my orders").click()
    chat = widget(page)
    expect(chat.locator(".msg").last).to_have_text(asked[-1][1])
    assert messages_in(page) == asked
    snapshot(page, "demo-1-shop")

    # The login link opens the shop's login page, which has no chat.
    with page.context.expect_page() as opened:
        chat.get_by_role("link", name=login_link).click()
    login = opened.value
    login.wait_for_load_state()
    assert login.url == login_link
    expect(login.get_by_text("there is no password")).to_be_visible()
    assert login.locator("#rejoinder-widget").count() == 0
    login.get_by_label("Your name").fill("Ann")
    snapshot(login, "demo-2-login")

    # Logged in: the account page resumes the chat by its token, in the full window, and says RESUME.
    login.get_by_role("button", name="Log in").click()
    login.wait_for_url(f"{demo.base}/demo/account")
    resumed = widget(login)
    expect(resumed.locator(".msg").last).to_have_text("Your orders: A-1001 (shipped), A-1002 (being packed).")
    assert messages_in(login) == [
        *asked,
        ("customer", "RESUME"),
        ("bot", "Welcome back, Ann! You're logged in."),
        ("bot", "Your orders: A-1001 (shipped), A-1002 (being packed)."),
    ]
    assert resumed.locator(".window").bounding_box() == {"x": 0, "y": 0, "width": 1280, "height": 800}
    expect(resumed.locator(".launcher")).to_be_hidden()
    snapshot(login, "demo-3-account")

    # The shop's tab was in the same conversation all along: the replies reach it live.
    expect(chat.locator(".msg").last).to_have_text("Your orders: A-1001 (shipped), A-1002 (being packed).")

    # A reload of the account page shows the chat as it is: no second RESUME, no empty chat.
    resumed_once = messages_in(login)
    login.reload()
    expect(login.locator("#chat-state")).to_have_text("Your chat goes on in the chat window.")
    expect(widget(login).locator(".window")).to_be_visible()
    expect(widget(login).locator(".msg")).to_have_count(len(resumed_once))
    login.wait_for_timeout(500)  # a second RESUME and its answer would be on their way by now
    assert messages_in(login) == resumed_once
    expect(widget(login).locator(".title")).to_have_text("Demo Shop")
    snapshot(login, "demo-4-account-reloaded")

    assert page_errors.exceptions == [] and page_errors.console == []
    tokens = [line for line in demo.log.read_text().splitlines() if "rjt_" in line]
    assert tokens == [], tokens
    assert not [url for url in urls if "rjt_" in url], urls
    login.close()


def test_the_account_page_without_a_chat_sends_the_visitor_back(
    page: Page, page_errors: PageErrors, demo: DemoProcess
) -> None:
    page.goto(f"{demo.base}/demo/account")

    expect(page.get_by_text("There is no chat waiting for you here")).to_be_visible()
    page.get_by_role("link", name="Back to the shop").click()
    page.wait_for_url(f"{demo.base}/demo/")
    expect(page.get_by_role("button", name="Ask about my orders")).to_be_visible()
    assert page_errors.exceptions == [] and page_errors.console == []


def test_the_chat_button_opens_the_welcome_menu_and_a_reload_keeps_the_chat(
    page: Page, page_errors: PageErrors, demo: DemoProcess
) -> None:
    page.goto(f"{demo.base}/demo/")
    chat = widget(page)

    chat.locator(".launcher").click()
    expect(chat.get_by_role("button", name="Opening hours")).to_be_visible()
    chat.get_by_role("button", name="Opening hours").click()
    expect(chat.locator(".msg").last).to_have_text("We're open every day from 9:00 to 18:00.")
    shown = messages_in(page)
    page.reload()
    expect(widget(page).locator(".launcher")).to_be_visible()
    widget(page).locator(".launcher").click()
    expect(widget(page).locator(".msg").last).to_have_text("We're open every day from 9:00 to 18:00.")

    assert shown[0] == ("bot", "Hi! I'm the Demo Shop assistant. What can I do for you?")
    assert shown[-2:] == [("customer", "Opening hours"), ("bot", "We're open every day from 9:00 to 18:00.")]
    assert messages_in(page) == shown  # the same chat, not a second menu
    assert page_errors.exceptions == [] and page_errors.console == []
