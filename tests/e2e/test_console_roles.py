"""Each console page for each role, in a browser: what a role may do shows as a control, what it may not is
neither shown nor accepted when forged from the signed-in page itself."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.helpers.console import create_user_in, sign_in_page
from tests.helpers.processes import ServeProcess

# The first test also waits for the shared server to start: on a loaded machine, more than the default two minutes.
pytestmark = pytest.mark.timeout(300)

ROLES = ("viewer", "editor", "owner")
EVERYONE = ("Overview", "Conversations", "Tokens", "Audit", "Skills")
OWNERS_ONLY = ("Keys", "Users")


@pytest.fixture(scope="module")
def accounts(server: ServeProcess) -> dict[str, str]:
    made = {role: f"{role}-matrix@example.com" for role in ROLES}
    for role, email in made.items():
        create_user_in(server.env["REJOINDER_DATABASE_URL"], email, role)
    return made


@pytest.fixture(scope="module")
def conversation(server: ServeProcess) -> tuple[str, str]:
    """A conversation with a token issued through the admin API: (conversation id, token id)."""
    with httpx.Client(base_url=server.base, timeout=30) as http:
        started = http.post(
            "/v1/conversations",
            json={"event": "welcome"},
            headers={"Authorization": f"Bearer {server.sdk_key}"},
        )
        assert started.status_code == 201, started.text
        conversation_id = started.json()["conversation_id"]
        issued = http.post(
            f"/v1/conversations/{conversation_id}/tokens",
            json={"ttl": "7d"},
            headers={"Authorization": f"Bearer {server.secret_key}"},
        )
        assert issued.status_code == 201, issued.text
        return conversation_id, issued.json()["id"]


def csrf_token(page: Page) -> str:
    """The CSRF token the signed-in page's forms carry (the sign-out form is on every page)."""
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    return token


def forge(page: Page, server: ServeProcess, path: str, form: dict[str, str]) -> int:
    """Post ``form`` to ``path`` as the page's own scripts could: its cookie, its CSRF token, its origin."""
    answer = page.request.post(
        f"{server.base}{path}",
        form={**form, "csrf_token": csrf_token(page)},
        headers={"Origin": server.base},
        max_redirects=0,
    )
    return answer.status


@pytest.mark.parametrize("role", ROLES)
def test_each_page_shows_a_role_what_it_may_do_and_refuses_the_rest(
    page: Page,
    server: ServeProcess,
    accounts: dict[str, str],
    conversation: tuple[str, str],
    role: str,
) -> None:
    conversation_id, token_id = conversation
    may_edit = role in ("editor", "owner")
    sign_in_page(page, server.base, accounts[role])

    nav = page.get_by_role("navigation", name="Console")
    for label in EVERYONE:
        expect(nav.get_by_role("link", name=label, exact=True)).to_be_visible()
    for label in OWNERS_ONLY:
        expect(nav.get_by_role("link", name=label, exact=True)).to_have_count(1 if role == "owner" else 0)

    for label, heading in (
        ("Conversations", "Conversations"),
        ("Tokens", "Tokens"),
        ("Audit", "Audit trail"),
    ):
        page.goto(f"{server.base}/dashboard/{label.lower()}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()

    page.goto(f"{server.base}/dashboard/tokens")
    revoke = page.get_by_role("button", name="Revoke")
    if may_edit:
        expect(revoke.first).to_be_visible()
    else:
        expect(revoke).to_have_count(0)

    page.goto(f"{server.base}/dashboard/conversations/{conversation_id}")
    expect(page.get_by_role("heading", name="Transcript")).to_be_visible()
    expect(page.get_by_role("button", name="Issue a token")).to_have_count(1 if may_edit else 0)
    expect(page.get_by_role("link", name="Erase this conversation…")).to_have_count(1 if may_edit else 0)

    page.goto(f"{server.base}/dashboard/skills")
    expect(page.get_by_role("heading", name="Skills", level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Upload a skill")).to_have_count(1 if may_edit else 0)

    for label in OWNERS_ONLY:
        answer = page.goto(f"{server.base}/dashboard/{label.lower()}")
        assert answer is not None
        if role == "owner":
            assert answer.status == 200
            expect(page.get_by_role("heading", name=label, level=1)).to_be_visible()
        else:
            assert answer.status == 403
            expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

    # Forged from the signed-in page: what the role may not do is refused and changes nothing.
    page.goto(f"{server.base}/dashboard")
    if role != "owner":
        assert forge(page, server, "/dashboard/keys", {"bot": "shop"}) == 403
        email = f"forged-{uuid.uuid4().hex[:8]}@example.com"
        form = {"email": email, "role": "owner", "password": "a long enough password"}
        assert forge(page, server, "/dashboard/users", form) == 403
    if not may_edit:
        assert forge(page, server, f"/dashboard/tokens/{token_id}/revoke", {}) == 403
        assert forge(page, server, f"/dashboard/conversations/{conversation_id}/erase", {}) == 403
        with httpx.Client(base_url=server.base, timeout=30) as http:
            tokens = http.get(
                f"/v1/conversations/{conversation_id}/tokens",
                headers={"Authorization": f"Bearer {server.secret_key}"},
            )
        assert tokens.status_code == 200, tokens.text  # not erased
        [token] = [item for item in tokens.json()["items"] if item["id"] == token_id]
        assert token["revoked_at"] is None
