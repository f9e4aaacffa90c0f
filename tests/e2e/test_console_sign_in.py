"""The console in a browser: signing in and out, the nav and the role, a phone, the keyboard alone, and the 404
page. Screenshots of the sign-in and Users pages go to docs/images/."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.helpers.console import PASSWORD, create_user_in, sign_in_page
from tests.helpers.processes import ServeProcess
from tests.helpers.site import ARTIFACTS, PageErrors

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PHONE: ViewportSize = {"width": 390, "height": 844}
# The first test also waits for the shared server to start: on a loaded machine, more than the default two minutes.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def accounts(server: ServeProcess) -> dict[str, str]:
    """A console user of each role on the browser tests' server, by role."""
    made = {role: f"{role}-e2e@example.com" for role in ("owner", "editor", "viewer")}
    for role, email in made.items():
        create_user_in(server.env["REJOINDER_DATABASE_URL"], email, role)
    return made


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()


def test_sign_in_see_the_nav_and_role_then_sign_out(
    page: Page, server: ServeProcess, accounts: dict[str, str], page_errors: PageErrors
) -> None:
    page.goto(f"{server.base}/dashboard/users")
    expect(page).to_have_url(f"{server.base}/dashboard/sign-in?next=/dashboard/users")
    page.get_by_label("Email").fill(accounts["editor"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The email or password is not right")

    sign_in_page(page, server.base, accounts["editor"])
    nav = page.get_by_role("navigation", name="Console")
    # Keys and Users are the owners' pages: an editor's nav does not offer them.
    expect(nav.get_by_role("link")).to_have_text(["Overview", "Conversations", "Tokens", "Audit", "Skills"])
    expect(nav.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    expect(page.locator(".who")).to_contain_text(accounts["editor"])
    expect(page.locator(".who .role")).to_have_text("editor")
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    expect(page.get_by_text("Demo shop", exact=False).first).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server.base}/dashboard/sign-in")
    page.goto(f"{server.base}/dashboard")
    expect(page).to_have_url(f"{server.base}/dashboard/sign-in?next=/dashboard")
    assert page_errors.exceptions == []
    # The one error a console may show: the refused sign-in above, answered 401.
    assert [message for message in page_errors.console if "401" not in message] == []


def test_the_users_page_fits_a_phone(phone: Page, server: ServeProcess, accounts: dict[str, str]) -> None:
    sign_in_page(phone, server.base, accounts["owner"])
    phone.goto(f"{server.base}/dashboard/users")
    expect(phone.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    expect(phone.get_by_text(accounts["viewer"]).first).to_be_visible()
    # The nav is folded behind its Menu button, which opens it.
    nav = phone.get_by_role("navigation", name="Console")
    expect(nav).to_be_hidden()
    menu = phone.get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav.get_by_role("link", name="Users")).to_be_visible()
    overflow = phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow == 0, f"the page scrolls sideways by {overflow} px"
    for selector in ("input", "button", "select"):
        widest = phone.evaluate(
            f"Math.max(...[...document.querySelectorAll('{selector}')].map(e => e.getBoundingClientRect().right))"
        )
        assert widest <= PHONE["width"], f"a {selector} reaches {widest} px"


def test_keyboard_only_sign_in(page: Page, server: ServeProcess, accounts: dict[str, str]) -> None:
    page.goto(f"{server.base}/dashboard/sign-in")
    # The form starts in the email field; Tab goes on to the password, Enter sends it.
    expect(page.get_by_label("Email")).to_be_focused()
    page.keyboard.type(accounts["viewer"])
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.base}/dashboard")
    expect(page.locator(".who .role")).to_have_text("viewer")
    # On a page, the first Tab reaches the skip link, shown and outlined while focused; Enter skips to the content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") not in ("", "none")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()


def test_an_address_with_no_page_is_the_consoles_own_404_page(
    page: Page, server: ServeProcess, accounts: dict[str, str], page_errors: PageErrors
) -> None:
    sign_in_page(page, server.base, accounts["viewer"])
    answer = page.goto(f"{server.base}/dashboard/conversationz")
    assert answer is not None and answer.status == 404
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    assert page.evaluate("getComputedStyle(document.body).margin") == "0px"  # the console's own stylesheet
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-404.png"))
    page.get_by_role("link", name="Back to the console").click()
    expect(page).to_have_url(f"{server.base}/dashboard")
    assert page_errors.exceptions == []
    assert [message for message in page_errors.console if "404" not in message] == []


def test_the_sign_in_and_users_pages_for_the_docs(
    page: Page, server: ServeProcess, accounts: dict[str, str], page_errors: PageErrors
) -> None:
    page.goto(f"{server.base}/dashboard/sign-in")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "console-sign-in.png"))
    sign_in_page(page, server.base, accounts["owner"])
    page.goto(f"{server.base}/dashboard/users")
    for email in accounts.values():
        expect(page.locator(".user-card", has_text=email)).to_be_visible()
    expect(page.get_by_role("button", name="Create user")).to_be_visible()
    page.screenshot(path=str(IMAGES / "console-users.png"), full_page=True)
    assert page_errors.exceptions == []
