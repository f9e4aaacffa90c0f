"""The console's record pages in a browser: an editor watches a conversation live (its event stream) while the
customer writes through the client API, revokes its token, issues one, erases the conversation behind its
confirmation page; a browser without EventSource polls instead; a viewer's pages have no change buttons; every
page fits a 390 px phone. Screenshots go to docs/images/ for docs/console.md."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, ViewportSize, expect

from rejoinder.store import Store
from tests.helpers.console import create_user, in_store, sign_in_page
from tests.helpers.processes import ServeProcess

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PHONE: ViewportSize = {"width": 390, "height": 844}
EDITOR = "editor-pages@example.com"
VIEWER = "viewer-pages@example.com"


@pytest.fixture(scope="module")
def accounts(server: ServeProcess) -> None:
    """An editor and a viewer in the server's database (as ``rejoinder users create`` makes them)."""

    async def create(store: Store) -> None:
        for email, role in ((EDITOR, "editor"), (VIEWER, "viewer")):
            if await store.users.by_email(email) is None:
                await create_user(store, email, role)

    in_store(server.env["REJOINDER_DATABASE_URL"], create)


class Customer:
    """A customer of the shop talking through the client API, as the widget does."""

    def __init__(self, server: ServeProcess) -> None:
        self.http = httpx.Client(base_url=server.base, timeout=30)
        self.server = server
        started = self.http.post(
            "/v1/conversations",
            json={"event": "welcome"},
            headers={"Authorization": f"Bearer {server.sdk_key}"},
        )
        assert started.status_code == 201, started.text
        self.conversation_id: str = started.json()["conversation_id"]
        self.session: str = started.json()["session"]

    def say(self, text: str) -> None:
        said = self.http.post(
            f"/v1/conversations/{self.conversation_id}/messages",
            json={"text": text, "client_message_id": uuid.uuid4().hex},
            headers={"Authorization": f"Bearer {self.session}"},
        )
        assert said.status_code == 200, said.text

    def issue_token(self) -> tuple[str, str]:
        """A token issued through the admin API: its secret and id."""
        issued = self.http.post(
            f"/v1/conversations/{self.conversation_id}/tokens",
            json={"ttl": "7d"},
            headers={"Authorization": f"Bearer {self.server.secret_key}"},
        )
        assert issued.status_code == 201, issued.text
        return issued.json()["token"], issued.json()["id"]

    def resume(self, secret: str) -> httpx.Response:
        return self.http.post(
            "/v1/conversations/resume",
            json={"token": secret},
            headers={"Authorization": f"Bearer {self.server.sdk_key}"},
        )


@pytest.fixture
def customer(server: ServeProcess) -> Iterator[Customer]:
    talking = Customer(server)
    try:
        yield talking
    finally:
        talking.http.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


def accept_confirmations(page: Page) -> None:
    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", accept)


def sideways_overflow(page: Page) -> Any:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def wider_than_their_cards(page: Page) -> Any:
    """The values on a phone's record cards that reach past their card's edge (cut off by its scroll box)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.records td > *')]
            .filter(value => value.getBoundingClientRect().right > value.closest('tr').getBoundingClientRect().right + 1)
            .map(value => value.textContent)"""
    )


def test_an_editor_watches_revokes_issues_and_erases(
    page: Page, server: ServeProcess, accounts: None, customer: Customer
) -> None:
    customer.say("Where is my order?")
    secret, token_id = customer.issue_token()
    accept_confirmations(page)
    sign_in_page(page, server.base, EDITOR)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Conversations").click()
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    page.get_by_label("Search").fill("where is my order")
    page.get_by_role("button", name="Show").click()
    row_link = page.get_by_role("link", name=customer.conversation_id)
    expect(row_link).to_be_visible()
    shoot(page, "conversations")

    row_link.click()
    conversation_path = f"/dashboard/conversations/{customer.conversation_id}"
    transcript = page.locator("#transcript")
    expect(transcript.locator(".message-customer")).to_contain_text(["Where is my order?"])
    expect(transcript.locator(".message-bot").first).to_be_visible()

    # The customer writes while the page is open: the message appears without a reload, through the page's event
    # stream (the page says when it listens to one, and the server is never polled for messages).
    expect(transcript).to_have_attribute("data-via", "events", timeout=30_000)
    customer.say("Do you ship to Norway?")
    expect(transcript.locator(".message-customer .bubble").last).to_have_text(
        "Do you ship to Norway?", timeout=30_000
    )
    expect(page.locator("#live-note")).to_be_visible()
    expect(transcript).to_have_attribute("data-via", "events")
    shoot(page, "conversation")

    # Revoke the token (the button asks first); the customer's token no longer resumes.
    page.get_by_role("button", name=f"Revoke token {token_id}").click()
    expect(page.get_by_role("status").filter(has_text="The token was revoked")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=token_id).locator(".badge")).to_have_text("revoked")
    assert customer.resume(secret).status_code == 410

    # Issue a token: its secret is shown once.
    page.get_by_label("Lifetime").fill("2h")
    page.get_by_role("button", name="Issue a token").click()
    shown = page.locator("#issued-secret")
    expect(shown).to_be_visible()
    fresh = shown.input_value()
    assert fresh.startswith("rjt_")
    shoot(page, "token-issued")
    page.goto(f"{server.base}/dashboard/conversations/{customer.conversation_id}")
    assert fresh not in page.content()

    page.get_by_role("link", name="Tokens", exact=True).click()
    expect(page.get_by_role("heading", name="Tokens", exact=True)).to_be_visible()
    page.get_by_label("Status").select_option("revoked")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_text(token_id)).to_be_visible()
    shoot(page, "tokens")

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Audit").click()
    page.get_by_label("Actor").fill(f"console:{EDITOR}")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("cell", name="token revoked").first).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    exported = Path(download.value.path()).read_text()
    assert exported.startswith("id,at,kind,outcome,actor") and f"console:{EDITOR}" in exported
    shoot(page, "audit")

    # Erase, behind its confirmation page: then the conversation is gone and its tokens resume nothing.
    page.goto(f"{server.base}/dashboard/conversations/{customer.conversation_id}")
    page.get_by_role("link", name="Erase this conversation…").click()
    expect(
        page.get_by_role("heading", name=f"Erase conversation {customer.conversation_id}?")
    ).to_be_visible()
    shoot(page, "erase")
    page.get_by_role("button", name="Erase for good").click()
    expect(page.get_by_role("status").filter(has_text="was erased")).to_be_visible()
    expect(page.get_by_role("link", name=customer.conversation_id)).to_have_count(0)
    gone = page.goto(f"{server.base}/dashboard/conversations/{customer.conversation_id}")
    assert gone is not None and gone.status == 404
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    assert customer.resume(fresh).status_code == 404
    requested = [
        json.loads(line).get("path") for line in server.log_text().splitlines() if line.startswith("{")
    ]
    transcript_paths = {path for path in requested if path and path.startswith(conversation_path + "/")}
    assert conversation_path + "/live" in transcript_paths
    assert conversation_path + "/messages" not in transcript_paths


def test_a_browser_without_event_source_polls_for_new_messages(
    page: Page, server: ServeProcess, accounts: None, customer: Customer
) -> None:
    page.add_init_script("delete window.EventSource;")
    sign_in_page(page, server.base, VIEWER)
    page.goto(f"{server.base}/dashboard/conversations/{customer.conversation_id}")
    transcript = page.locator("#transcript")
    expect(transcript).to_have_attribute("data-via", "polling")
    customer.say("Is it polling?")
    expect(transcript.locator(".message-customer .bubble").last).to_have_text(
        "Is it polling?", timeout=30_000
    )
    page.goto(f"{server.base}/dashboard")  # the poll that brought it is logged once it is answered
    conversation_path = f"/dashboard/conversations/{customer.conversation_id}"
    requested = [
        json.loads(line).get("path") for line in server.log_text().splitlines() if line.startswith("{")
    ]
    assert conversation_path + "/messages" in requested
    assert conversation_path + "/live" not in requested


def test_a_viewer_sees_no_change_buttons(
    page: Page, server: ServeProcess, accounts: None, customer: Customer
) -> None:
    customer.issue_token()
    sign_in_page(page, server.base, VIEWER)
    page.goto(f"{server.base}/dashboard/conversations/{customer.conversation_id}")
    expect(page.get_by_role("heading", name="Tokens")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)
    expect(page.get_by_role("button", name="Issue a token")).to_have_count(0)
    expect(page.get_by_role("link", name="Erase this conversation…")).to_have_count(0)
    page.goto(f"{server.base}/dashboard/tokens")
    expect(page.get_by_role("button", name="Revoke")).to_have_count(0)


def test_the_pages_fit_a_phone_and_search_takes_the_keyboard(
    phone: Page, server: ServeProcess, accounts: None, customer: Customer
) -> None:
    customer.say("Where is my order?")
    customer.issue_token()
    sign_in_page(phone, server.base, EDITOR)
    pages = {
        "conversations-phone": "/dashboard/conversations",
        "conversation-phone": f"/dashboard/conversations/{customer.conversation_id}",
        "tokens-phone": "/dashboard/tokens",
        "audit-phone": "/dashboard/audit",
    }
    for name, path in pages.items():
        phone.goto(server.base + path)
        expect(phone.locator("h1")).to_be_visible()
        assert sideways_overflow(phone) == 0, f"{path} scrolls sideways by {sideways_overflow(phone)} px"
        assert wider_than_their_cards(phone) == [], path
        shoot(phone, name)

    # The keyboard alone: in the search box, Enter searches.
    phone.goto(server.base + "/dashboard/conversations")
    search = phone.get_by_label("Search")
    search.focus()
    search.fill(customer.conversation_id)
    search.press("Enter")
    expect(phone.get_by_role("link", name=customer.conversation_id)).to_be_visible()
