"""Reloads and navigation continue the conversation (per `persist`); destroy() forgets it; sessions refresh
themselves before they expire. Tokens are never stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from tests.e2e.sdk_pages import (
    TRACK_EVENTS,
    messages_in,
    page_with_sdk,
    resume_elsewhere,
    saved_conversation,
    say,
    stored,
    widget,
)
from tests.helpers.processes import ServeProcess
from tests.helpers.site import Site, make_bot, site_server_environment, wait_for

SEED_RESUME = """
if (window.Alli) {
  window.Alli.__startConversation('TOKEN', {launcher: false, popupMode: true})
    .then(function(){ window.Alli.__sendChat('RESUME') });
}
"""


def send(page: Page, text: str) -> None:
    count = widget(page).locator(".msg").count()
    widget(page).locator(".input").fill(text)
    widget(page).locator(".input").press("Enter")
    expect(widget(page).locator(".msg")).to_have_count(count + 2)


def test_reload_and_navigation_continue_the_conversation(
    page: Page, site: Site, server: ServeProcess
) -> None:
    started = server.start_conversation(event="echo")
    token = server.issue_token(started["conversation_id"])["token"]
    page.goto(page_with_sdk(site, server, "/login-done.html", SEED_RESUME.replace("TOKEN", token)))
    expect(widget(page).locator(".msg")).to_have_count(3)

    other_page = page_with_sdk(site, server, "/orders.html", TRACK_EVENTS)  # the site's other pages: no token
    page.goto(other_page)
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    assert messages_in(page) == [
        ("bot", "Say something."),
        ("customer", "RESUME"),
        ("bot", "You said: RESUME"),
    ]
    expect(widget(page).locator(".window")).to_be_visible()  # it was open: it stays open
    send(page, "still here")
    page.reload()
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    assert messages_in(page)[-2:] == [("customer", "still here"), ("bot", "You said: still here")]
    assert page.evaluate("window.seen.message") == [1, 2, 3, 4, 5]  # history once, no duplicates

    saved = saved_conversation(page)
    assert saved is not None and saved["conversationId"] == started["conversation_id"]
    assert saved["session"].startswith("ses_") and saved["lastSeq"] == 5
    everything = " ".join([*stored(page).keys(), *stored(page).values(), page.url])
    assert token not in everything and "rjt_" not in everything  # the token is never kept


def test_messages_sent_while_away_appear_after_reload(page: Page, site: Site, server: ServeProcess) -> None:
    page.goto(page_with_sdk(site, server, "/away.html", TRACK_EVENTS + "Alli.event('echo')"))
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    conversation_id = page.evaluate("window.seen.conversation[0]")
    page.goto(
        site.add("/elsewhere.html", "<!doctype html><link rel=icon href='data:,'><p>another site page</p>")
    )
    say(server, conversation_id, resume_elsewhere(server, conversation_id), "while away")
    page.goto(page_with_sdk(site, server, "/back.html", TRACK_EVENTS))
    expect(widget(page).locator(".msg")).to_have_count(3)
    assert messages_in(page)[1:] == [("customer", "while away"), ("bot", "You said: while away")]


def test_an_expired_stored_session_is_dropped(page: Page, site: Site, server: ServeProcess) -> None:
    url = page_with_sdk(site, server, "/stale.html", TRACK_EVENTS)
    page.goto(url)
    page.evaluate("Alli.event('echo')")
    wait_for(lambda: saved_conversation(page) is not None)
    page.evaluate(
        """() => {
          for (const key of Object.keys(sessionStorage)) {
            const saved = JSON.parse(sessionStorage.getItem(key));
            saved.expiresAt = new Date(Date.now() - 1000).toISOString();  // as after a long time away
            sessionStorage.setItem(key, JSON.stringify(saved));
          }
        }"""
    )
    page.reload()
    wait_for(lambda: page.evaluate("Alli.status") == "expired")
    assert saved_conversation(page) is None and messages_in(page) == []
    page.evaluate("Alli.sendChat('hello')")  # a new conversation starts
    expect(widget(page).locator(".msg")).to_have_count(2)


def test_destroy_forgets_the_conversation(page: Page, site: Site, server: ServeProcess) -> None:
    page.goto(page_with_sdk(site, server, "/destroy.html", "Alli.event('echo')"))
    wait_for(lambda: saved_conversation(page) is not None)
    page.evaluate("Alli.destroy()")
    assert page.locator("#rejoinder-widget").count() == 0
    assert saved_conversation(page) is None
    refused = page.evaluate("Alli.sendChat('hi').then(() => 'sent', e => e.code)")
    assert refused == "not_initialized"
    page.reload()  # initializes again: nothing to bring back
    expect(widget(page).locator(".msg")).to_have_count(1)  # only the page's own new event
    assert messages_in(page) == [("bot", "Say something.")]


def test_reset_starts_afresh_on_the_next_message(page: Page, site: Site, server: ServeProcess) -> None:
    page.goto(page_with_sdk(site, server, "/reset.html", TRACK_EVENTS + "Alli.event('echo')"))
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    page.evaluate("Alli.reset()")
    assert messages_in(page) == [] and saved_conversation(page) is None
    page.evaluate("Alli.sendChat('hello again')")
    expect(widget(page).locator(".msg")).to_have_count(2)
    first, second = page.evaluate("window.seen.conversation")
    assert first != second and messages_in(page)[0] == ("customer", "hello again")


def test_persist_none_keeps_nothing_and_local_survives_a_new_tab(
    page: Page, site: Site, server: ServeProcess
) -> None:
    page.goto(page_with_sdk(site, server, "/none.html", "Alli.event('echo')", options=', persist: "none"'))
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    assert stored(page) == {}
    page.reload()
    expect(widget(page).locator(".msg")).to_have_count(1)
    page.evaluate("Alli.destroy()")

    local = page_with_sdk(site, server, "/local.html", "", options=', persist: "local"')
    page.goto(local)
    page.evaluate("Alli.event('echo')")
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    send(page, "in the first tab")
    second_tab = page.context.new_page()
    second_tab.goto(local)
    expect(widget(second_tab).locator(".msg")).to_have_count(3)
    assert messages_in(second_tab) == messages_in(page)
    second_tab.close()


# ------------------------------------------------------------------------------------------------ session refresh


@pytest.fixture(scope="module")
def short_sessions(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A server whose sessions live 4 s: the widget must refresh them by itself to keep talking."""
    directory = tmp_path_factory.mktemp("short-sessions")
    bot_dir = make_bot(directory / "bot", [site.origin])
    config_path = bot_dir / "rejoinder.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["sessions"] = {"ttl": "4s"}
    config_path.write_text(yaml.safe_dump(config))
    database = Path(directory / "rejoinder.db")
    running = ServeProcess(bot_dir, site_server_environment(database), directory / "server.log")
    running.create_keys()
    with running:
        running.start()
        yield running


def test_the_session_refreshes_before_it_expires(
    page: Page, site: Site, short_sessions: ServeProcess
) -> None:
    page.goto(page_with_sdk(site, short_sessions, "/refresh.html", "Alli.event('echo')"))
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    sessions = [saved_conversation(page)]
    for _ in range(2):  # two refreshes: at 3 s, then 3 s later
        wait_for(lambda: saved_conversation(page)["session"] != sessions[-1]["session"], timeout=6)  # type: ignore[index]
        sessions.append(saved_conversation(page))
    assert all(s is not None for s in sessions)
    # Well past the first session's expiry, the conversation goes on, live.
    send(page, "still talking")
    assert messages_in(page)[-1] == ("bot", "You said: still talking")
    assert page.evaluate("Alli.status") == "online"
