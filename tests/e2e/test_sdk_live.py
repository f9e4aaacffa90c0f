"""Live updates: the WebSocket stream, reconnecting after a drop, and polling when WebSockets cannot connect."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, Route, WebSocketRoute, expect

from tests.e2e.sdk_pages import (
    TRACK_EVENTS,
    banner_text,
    messages_in,
    page_with_sdk,
    resume_elsewhere,
    say,
    widget,
)
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, wait_for

START_ECHO = TRACK_EVENTS + "Alli.event('echo');"


def echo_transcript(*said: str) -> list[tuple[str, str]]:
    """What the echo skill's conversation shows after the customer said ``said``."""
    pairs = [("bot", "Say something.")]
    for text in said:
        pairs += [("customer", text), ("bot", f"You said: {text}")]
    return pairs


def start_echo_in_browser(page: Page, site: Site, server: ServeProcess, path: str) -> str:
    """Open a page that starts the echo skill; returns the conversation id once the stream is live."""
    page.goto(page_with_sdk(site, server, path, START_ECHO))
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    conversation_id: str = page.evaluate("window.seen.conversation[0]")
    return conversation_id


def test_messages_from_another_device_arrive_live(page: Page, site: Site, server: ServeProcess) -> None:
    conversation_id = start_echo_in_browser(page, site, server, "/live.html")
    other = resume_elsewhere(server, conversation_id)
    say(server, conversation_id, other, "from my phone")
    expect(widget(page).locator(".msg")).to_have_count(3)
    assert messages_in(page) == echo_transcript("from my phone")
    assert page.evaluate("window.seen.message") == [1, 2, 3]


def test_reconnects_after_the_server_restarts_and_shows_missed_messages_once(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    conversation_id = start_echo_in_browser(page, site, server, "/restart.html")
    other = resume_elsewhere(server, conversation_id)
    widget(page).locator(".input").fill("before")
    widget(page).locator(".input").press("Enter")
    expect(widget(page).locator(".msg")).to_have_count(3)
    server.stop()  # closes the socket (1012); reconnecting fails until it is back
    wait_for(lambda: page.evaluate("Alli.status") == "offline")
    assert re.fullmatch(r"Offline\. Reconnecting in \d+ s…|Reconnecting…", banner_text(page))
    server.start()
    for text in ("missed one", "missed two", "missed three"):
        say(server, conversation_id, other, text)

    wait_for(lambda: page.evaluate("Alli.status") == "online", timeout=20)
    expect(widget(page).locator(".msg")).to_have_count(9)
    assert messages_in(page) == echo_transcript("before", "missed one", "missed two", "missed three")
    assert page.evaluate("window.seen.message") == list(range(1, 10))
    assert banner_text(page) == ""
    # And the conversation goes on from the page.
    widget(page).locator(".input").fill("after")
    widget(page).locator(".input").press("Enter")
    expect(widget(page).locator(".msg").last).to_have_text("You said: after")
    assert page_errors.exceptions == []


def test_polls_when_the_page_has_no_websocket(page: Page, site: Site, server: ServeProcess) -> None:
    page.add_init_script("window.WebSocket = undefined")
    conversation_id = start_echo_in_browser(page, site, server, "/no-websocket.html")
    other = resume_elsewhere(server, conversation_id)
    say(server, conversation_id, other, "polled")
    expect(widget(page).locator(".msg")).to_have_count(3)
    widget(page).locator(".input").fill("typed")
    widget(page).locator(".input").press("Enter")
    expect(widget(page).locator(".msg")).to_have_count(5)
    assert messages_in(page) == echo_transcript("polled", "typed")
    assert page.evaluate("window.seen.message") == [1, 2, 3, 4, 5]


def test_polls_when_the_websocket_upgrade_is_blocked(page: Page, site: Site, server: ServeProcess) -> None:
    attempts: list[str] = []

    def refuse(socket: WebSocketRoute) -> None:
        attempts.append(socket.url)
        socket.close(code=1011)

    page.route_web_socket(re.compile(r"/stream"), refuse)
    conversation_id = start_echo_in_browser(page, site, server, "/blocked.html")
    other = resume_elsewhere(server, conversation_id)
    say(server, conversation_id, other, "through polling")
    expect(widget(page).locator(".msg")).to_have_count(3)
    assert messages_in(page) == echo_transcript("through polling")
    assert len(attempts) == 2  # two failed upgrades, then polling only
    assert all("session=" not in url for url in attempts)  # the session travels in a frame, not the URL


def test_a_send_whose_answer_is_lost_is_retried_with_the_same_id(
    page: Page, site: Site, server: ServeProcess
) -> None:
    start_echo_in_browser(page, site, server, "/flaky.html")
    sent: list[str] = []

    def lose_first_answer(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        sent.append(json.loads(route.request.post_data or "{}")["client_message_id"])
        if len(sent) == 1:
            route.fetch()  # the server runs the turn…
            route.abort("connectionreset")  # …but its answer never reaches the page
        else:
            route.continue_()

    page.route(re.compile(r"/messages$"), lose_first_answer)
    widget(page).locator(".input").fill("only once")
    widget(page).locator(".input").press("Enter")
    for _ in range(100):  # Playwright runs route handlers only inside its own calls: wait through the page
        if len(sent) == 2:
            break
        page.wait_for_timeout(100)
    assert len(sent) == 2  # sent again after a short back-off…
    assert sent[0] == sent[1]  # …with the same client_message_id: the server answers it from the first time
    expect(widget(page).locator(".msg.sending")).to_have_count(0)
    assert messages_in(page) == echo_transcript("only once")
