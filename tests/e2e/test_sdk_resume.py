"""The seed guide's resume snippet, verbatim, on a business's own page."""

from __future__ import annotations

import time

from playwright.sync_api import Page, expect

from tests.e2e.sdk_pages import banner_text, messages_in, page_with_sdk, saved_conversation, widget
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, wait_for

SEED_SNIPPET = """
if (window.Alli) {
  window.Alli.__startConversation('CONVERSATION_TOKEN', {launcher: false, popupMode: true})
    .then(function(){ window.Alli.__sendChat('RESUME_MESSAGE') });
}
"""


def test_seed_snippet_resumes_with_history_and_resume_message(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    started = server.start_conversation(event="echo")
    with server.client() as client:
        session = {"Authorization": f"Bearer {started['session']}"}
        for n, text in enumerate(["first question", "second question"]):
            answer = client.post(
                f"/v1/conversations/{started['conversation_id']}/messages",
                json={"text": text, "client_message_id": f"m{n}"},
                headers=session,
            )
            assert answer.status_code == 200, answer.text
    token = server.issue_token(started["conversation_id"])["token"]
    snippet = SEED_SNIPPET.replace("CONVERSATION_TOKEN", token).replace("RESUME_MESSAGE", "I am back")
    page.goto(page_with_sdk(site, server, "/seed.html", snippet))

    expect(widget(page).locator(".msg").last).to_have_text("You said: I am back")
    assert messages_in(page) == [
        ("bot", "Say something."),
        ("customer", "first question"),
        ("bot", "You said: first question"),
        ("customer", "second question"),
        ("bot", "You said: second question"),
        ("customer", "I am back"),
        ("bot", "You said: I am back"),
    ]
    box = widget(page).locator(".window").bounding_box()
    assert box == {"x": 0, "y": 0, "width": 1280, "height": 800}  # the full window, at once
    expect(widget(page).locator(".launcher")).to_be_hidden()
    assert page.evaluate("Alli.status") == "online"
    assert page_errors.exceptions == [] and page_errors.console == []


RESUME_AND_RECORD = """
window.outcome = window.Alli.__startConversation('TOKEN', {launcher: false, popupMode: true})
  .then(function () { return 'resumed'; }, function (err) { return {code: err.code, message: err.message}; });
"""


def resume_refused(page: Page, site: Site, server: ServeProcess, path: str, token: str) -> dict[str, str]:
    """Load a page that resumes with ``token``; returns how the Promise was rejected."""
    page.goto(page_with_sdk(site, server, path, RESUME_AND_RECORD.replace("TOKEN", token)))
    outcome: dict[str, str] = page.evaluate("window.outcome")
    assert isinstance(outcome, dict), outcome
    return outcome


def assert_refused_on_screen(page: Page, detail: str) -> None:
    assert banner_text(page) == detail
    expect(widget(page).locator(".input")).to_be_disabled()
    expect(widget(page).locator(".banner-action")).to_have_text("Start a new conversation")
    assert page.evaluate("Alli.status") == "expired"
    assert widget(page).locator(".window").is_visible()


def test_expired_token_shows_the_servers_detail_and_rejects_with_its_code(
    page: Page, site: Site, server: ServeProcess
) -> None:
    started = server.start_conversation(event="echo")
    token = server.issue_token(started["conversation_id"], ttl="1s")["token"]
    time.sleep(1.2)
    outcome = resume_refused(page, site, server, "/expired.html", token)
    assert outcome == {
        "code": "token_expired",
        "message": "This conversation token has expired. Start a new conversation.",
    }
    assert_refused_on_screen(page, outcome["message"])
    assert messages_in(page) == []


def test_revoked_token_and_a_token_revoked_while_open(page: Page, site: Site, server: ServeProcess) -> None:
    started = server.start_conversation(event="echo")
    revoked = server.issue_token(started["conversation_id"])
    with server.admin() as admin:
        assert admin.delete(f"/v1/tokens/{revoked['id']}").status_code in (200, 204)
    outcome = resume_refused(page, site, server, "/revoked.html", revoked["token"])
    assert outcome["code"] == "token_revoked"
    assert_refused_on_screen(page, outcome["message"])

    # A token revoked while its conversation is open ends the session: the stream closes and the widget says so.
    live = server.issue_token(started["conversation_id"])
    page.goto(page_with_sdk(site, server, "/live.html", RESUME_AND_RECORD.replace("TOKEN", live["token"])))
    assert page.evaluate("window.outcome") == "resumed"
    wait_for(lambda: page.evaluate("Alli.status") == "online")
    with server.admin() as admin:
        assert admin.delete(f"/v1/tokens/{live['id']}").status_code in (200, 204)
    wait_for(lambda: page.evaluate("Alli.status") == "expired")
    assert "this session has ended" in banner_text(page)
    assert messages_in(page) == [("bot", "Say something.")]  # the history stays readable
    assert saved_conversation(page) is None  # a dead session is not kept


def test_malformed_token_is_refused_without_a_conversation(
    page: Page, site: Site, server: ServeProcess
) -> None:
    outcome = resume_refused(page, site, server, "/malformed.html", "not-a-token")
    assert outcome["code"] == "token_malformed"
    assert_refused_on_screen(page, outcome["message"])


def test_reloading_a_resume_page_does_not_resume_twice(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    started = server.start_conversation(event="echo")
    token = server.issue_token(started["conversation_id"])["token"]
    snippet = SEED_SNIPPET.replace("CONVERSATION_TOKEN", token).replace("RESUME_MESSAGE", "I am back")
    page.goto(page_with_sdk(site, server, "/seed-reload.html", snippet))
    expect(widget(page).locator(".msg").last).to_have_text("You said: I am back")
    once = messages_in(page)

    for _ in range(2):
        page.reload()
        expect(widget(page).locator(".msg").last).to_have_text("You said: I am back")
        wait_for(lambda: page.evaluate("Alli.status") == "online")
        time.sleep(0.5)  # a second resume message would be on its way by now
        assert messages_in(page) == once
    with server.client() as client:
        history = client.get(
            f"/v1/conversations/{started['conversation_id']}/messages",
            headers={"Authorization": f"Bearer {started['session']}"},
        ).json()["messages"]
    assert [m["text"] for m in history if m["sender"] == "customer"] == ["I am back"]
    assert widget(page).locator(".window").bounding_box() == {"x": 0, "y": 0, "width": 1280, "height": 800}
    assert page_errors.exceptions == [] and page_errors.console == []

    # Another token for the same conversation is another resume: its message is sent.
    again = server.issue_token(started["conversation_id"])["token"]
    page.goto(page_with_sdk(site, server, "/seed-other.html", snippet.replace(token, again)))
    expect(widget(page).locator(".msg")).to_have_count(len(once) + 2)
    assert messages_in(page) == [*once, ("customer", "I am back"), ("bot", "You said: I am back")]
