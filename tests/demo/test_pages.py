"""The demo shop's pages: security headers, the visitor cookie, the login form and the account page's states."""

from __future__ import annotations

import html
import json
import re

import httpx
import pytest

from rejoinder.demo.site import content_security_policy
from tests.helpers.demo_app import BASE, Demo

PAGES = ["/demo/", "/demo/login", "/demo/account"]


def csp(answer: httpx.Response) -> dict[str, str]:
    directives = [part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";")]
    return {name: value for name, value in directives}


def inline_scripts(page: str) -> list[tuple[str, str]]:
    """(nonce attribute, body) of every inline script of ``page``."""
    return re.findall(r'<script(?: nonce="([^"]*)")?>(.*?)</script>', page, flags=re.S)


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_has_a_strict_policy_and_its_inline_scripts_carry_its_nonce(
    demo: Demo, path: str
) -> None:
    await demo.client.post("/demo/login", data={"name": "Ann"})  # the account page then has content

    answer = await demo.client.get(path)

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    policy = csp(answer)
    nonce = re.fullmatch(r"'self' 'nonce-([A-Za-z0-9_-]{20,})'", policy["script-src"])
    assert nonce is not None, policy["script-src"]
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["connect-src"] == "'self' ws://127.0.0.1:8000"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert answer.headers["cache-control"] == "no-store"
    for script_nonce, body in inline_scripts(answer.text):
        if body.strip():
            assert script_nonce == nonce.group(1)
    assert "https://" not in answer.text and "http://" not in answer.text.replace(
        BASE, ""
    )  # nothing from outside


async def test_each_answer_has_a_new_nonce(demo: Demo) -> None:
    first, second = await demo.client.get("/demo/"), await demo.client.get("/demo/")

    assert csp(first)["script-src"] != csp(second)["script-src"]


def test_a_forged_host_header_does_not_reach_the_policy() -> None:
    policy = content_security_policy("n", "evil.test; script-src *")

    assert policy.count("script-src") == 1
    assert "evil" not in policy


async def test_the_shop_page_loads_the_sdk_with_the_key_and_asks_for_orders_by_event(demo: Demo) -> None:
    answer = await demo.client.get("/demo/")

    assert '<script src="/sdk/alli.js"></script>' in answer.text
    script = "".join(body for _, body in inline_scripts(answer.text))
    assert f"Alli.initialize({{sdkKey: {json.dumps(demo.keys.sdk_key)}}})" in script
    assert 'start("orders")' in script and "Alli.event(event)" in script
    assert "Ask about my orders" in answer.text


async def test_the_shop_page_gives_a_new_visitor_a_random_http_only_cookie(demo: Demo) -> None:
    answer = await demo.client.get("/demo/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=demo.app), base_url=BASE) as browser:
        other = await browser.get("/demo/")

    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("demo_visitor=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/demo" in cookie
    assert answer.cookies["demo_visitor"] != other.cookies["demo_visitor"]
    again = await demo.client.get("/demo/")
    assert "set-cookie" not in again.headers  # the visitor keeps their cookie


async def test_the_login_page_has_no_chat_and_says_that_any_name_logs_in(demo: Demo) -> None:
    answer = await demo.client.get("/demo/login")

    assert "alli.js" not in answer.text
    assert "no password" in answer.text
    assert '<form method="post" action="/demo/login">' in answer.text


async def test_logging_in_leads_to_the_account_page_with_the_name(demo: Demo) -> None:
    await demo.client.get("/demo/")

    answer = await demo.client.post("/demo/login", data={"name": "  Ann   Lee "})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/demo/account"
    account = await demo.client.get("/demo/account")
    assert "Hello, Ann Lee" in account.text
    assert "A-1001" in account.text


@pytest.mark.parametrize("name", ["", "   ", "x" * 41])
async def test_a_login_without_a_usable_name_is_refused_with_a_reason(demo: Demo, name: str) -> None:
    answer = await demo.client.post("/demo/login", data={"name": name})

    assert answer.status_code == 400
    assert "Type a name of 1 to 40 characters." in answer.text


async def test_a_name_is_shown_as_text_never_as_markup(demo: Demo) -> None:
    await demo.client.post("/demo/login", data={"name": "<img src=x onerror=alert(1)>"})

    answer = await demo.client.get("/demo/account")

    assert "<img src=x" not in answer.text
    assert html.escape("<img src=x onerror=alert(1)>") in answer.text


async def test_a_login_posted_from_another_site_is_refused(demo: Demo) -> None:
    answer = await demo.client.post(
        "/demo/login", data={"name": "Mallory"}, headers={"Origin": "https://evil.example"}
    )

    assert answer.status_code == 403
    assert demo.shop.visitors == {}


async def test_a_visitor_who_comes_straight_to_the_account_page_is_told_and_sent_back(demo: Demo) -> None:
    answer = await demo.client.get("/demo/account")

    assert answer.status_code == 200
    assert "There is no chat waiting for you here" in answer.text
    assert 'href="/demo/"' in answer.text
    assert "alli.js" not in answer.text and "__startConversation" not in answer.text


async def test_a_logged_in_visitor_without_a_chat_is_told_so(demo: Demo) -> None:
    await demo.client.post("/demo/login", data={"name": "Ann"})

    answer = await demo.client.get("/demo/account")

    assert "No chat is waiting to be resumed" in answer.text
    assert "__startConversation" not in answer.text


async def test_another_loopback_name_is_sent_to_the_announced_address(demo: Demo) -> None:
    answer = await demo.client.get("http://localhost:8000/demo/account?x=1")

    assert answer.status_code == 307
    assert answer.headers["location"] == f"{BASE}/demo/account?x=1"


async def test_the_root_leads_to_the_shop(demo: Demo) -> None:
    answer = await demo.client.get("/")

    assert answer.status_code == 307
    assert answer.headers["location"] == "/demo/"


async def test_static_files_are_served_and_nothing_else(demo: Demo) -> None:
    css = await demo.client.get("/demo/static/shop.css")
    missing = await demo.client.get("/demo/static/..%2Fbase.html")

    assert css.status_code == 200
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert "url(http" not in css.text and "@import" not in css.text
    assert missing.status_code == 404


async def test_the_demo_pages_are_not_in_the_api_description(demo: Demo) -> None:
    paths = (await demo.client.get("/openapi.json")).json()["paths"]

    assert not [path for path in paths if path.startswith("/demo")]
