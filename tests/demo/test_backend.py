"""The demo shop's stand-in backend: signed calls from the bot, the visitor's claim, login, and the token handover."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from rejoinder.demo import backend
from rejoinder.demo.backend import ShopBackend
from rejoinder.integrations.signing import signature_headers
from tests.helpers.demo_app import BASE, Demo

API = "/demo/shop-api"


def signed(demo: Demo, body: bytes = b"") -> dict[str, str]:
    """The headers the server's own Integrate client would add."""
    assert demo.shop.signing_secret is not None
    return signature_headers(demo.shop.signing_secret, body)


async def send_token(demo: Demo, token: str, conversation: str) -> httpx.Response:
    body = json.dumps({"RESUME_TOKEN": token, "conversation_ref": conversation}).encode()
    return await demo.client.post(
        f"{API}/chat/resume-token",
        content=body,
        headers={"Content-Type": "application/json", **signed(demo, body)},
    )


async def orders(demo: Demo, conversation: str) -> httpx.Response:
    return await demo.client.get(
        f"{API}/chat/orders", params={"conversation": conversation}, headers=signed(demo)
    )


async def claim(client: httpx.AsyncClient, conversation: str) -> httpx.Response:
    return await client.post(f"{API}/visitor/conversation", json={"conversation_id": conversation})


async def test_the_token_is_remembered_and_the_answer_is_the_login_page(demo: Demo) -> None:
    answer = await send_token(demo, "rjt_" + "a" * 40, "cnv_1")

    assert answer.status_code == 200
    assert answer.json() == {"login_url": f"{BASE}/demo/login"}
    assert demo.shop.tokens == {"cnv_1": "rjt_" + "a" * 40}


async def test_calls_without_this_servers_signature_are_refused(demo: Demo) -> None:
    body = json.dumps({"RESUME_TOKEN": "rjt_forged", "conversation_ref": "cnv_1"}).encode()
    forged = await demo.client.post(
        f"{API}/chat/resume-token",
        content=body,
        headers={"Content-Type": "application/json", **signature_headers(b"another secret", body)},
    )
    unsigned = await demo.client.get(f"{API}/chat/orders", params={"conversation": "cnv_1"})

    assert forged.status_code == 401 and unsigned.status_code == 401
    assert demo.shop.tokens == {}


async def test_a_token_call_without_its_fields_is_a_client_error(demo: Demo) -> None:
    body = b'{"RESUME_TOKEN": 5}'
    answer = await demo.client.post(
        f"{API}/chat/resume-token",
        content=body,
        headers={"Content-Type": "application/json", **signed(demo, body)},
    )

    assert answer.status_code == 400


async def test_orders_are_refused_until_the_chats_visitor_logs_in(demo: Demo) -> None:
    await demo.client.get("/demo/")  # the visitor's cookie
    await send_token(demo, "rjt_" + "b" * 40, "cnv_2")
    before_claim = await orders(demo, "cnv_2")
    assert (await claim(demo.client, "cnv_2")).status_code == 204
    before_login = await orders(demo, "cnv_2")

    await demo.client.post("/demo/login", data={"name": "Ann"})
    after = await orders(demo, "cnv_2")

    assert before_claim.status_code == 401 and before_login.status_code == 401
    assert before_login.json() == {"error": "not logged in"}
    assert after.status_code == 200
    assert after.json() == {
        "customer": {"name": "Ann"},
        "orders": [{"id": "A-1001", "status": "shipped"}, {"id": "A-1002", "status": "being packed"}],
    }


async def test_the_first_visitor_to_claim_a_chat_owns_it(demo: Demo) -> None:
    await demo.client.get("/demo/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=demo.app), base_url=BASE) as other:
        await other.get("/demo/")
        first = await claim(demo.client, "cnv_3")
        again = await claim(demo.client, "cnv_3")
        second = await claim(other, "cnv_3")
        await other.post("/demo/login", data={"name": "Mallory"})

    assert (first.status_code, again.status_code, second.status_code) == (204, 204, 409)
    assert (await orders(demo, "cnv_3")).status_code == 401  # Mallory's login does not open Ann's chat


async def test_a_claim_needs_the_visitor_cookie_and_json(demo: Demo) -> None:
    without_cookie = await claim(demo.client, "cnv_4")
    await demo.client.get("/demo/")
    as_form = await demo.client.post(f"{API}/visitor/conversation", data={"conversation_id": "cnv_4"})
    empty = await demo.client.post(f"{API}/visitor/conversation", json={})

    assert (without_cookie.status_code, as_form.status_code, empty.status_code) == (401, 415, 400)
    assert demo.shop.owners == {}


async def test_the_account_page_hands_the_token_over_once_in_the_guides_snippet(demo: Demo) -> None:
    token = "rjt_" + "c" * 40
    await demo.client.get("/demo/")
    await send_token(demo, token, "cnv_5")
    await claim(demo.client, "cnv_5")
    not_yet = await demo.client.get("/demo/account")
    await demo.client.post("/demo/login", data={"name": "Ann"})

    account = await demo.client.get("/demo/account")
    reload = await demo.client.get("/demo/account")

    assert "log in</a> to continue it here" in not_yet.text and token not in not_yet.text
    assert (
        "if (window.Alli) {\n"
        f'      window.Alli.__startConversation("{token}", {{launcher: false, popupMode: true}})\n'
        '        .then(function(){ window.Alli.__sendChat("RESUME") });\n'
        "    }"
    ) in account.text
    assert token not in reload.text
    assert "resumed already" in reload.text
    assert demo.shop.tokens == {}


async def test_a_token_is_escaped_for_the_script_it_goes_into(demo: Demo) -> None:
    hostile = "</script><script>alert(1)</script>'\""
    await demo.client.get("/demo/")
    await send_token(demo, hostile, "cnv_6")
    await claim(demo.client, "cnv_6")
    await demo.client.post("/demo/login", data={"name": "Ann"})

    account = await demo.client.get("/demo/account")

    assert "<script>alert(1)" not in account.text
    literal = re.search(r"__startConversation\((\"[^\n]*?\"), \{", account.text)
    assert literal is not None
    assert json.loads(literal.group(1)) == hostile


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 5
    monkeypatch.setattr(backend, "MAX_ENTRIES", limit)
    shop = ShopBackend(login_url="http://127.0.0.1:8000/demo/login")

    for number in range(limit + 3):
        shop.remember_token(f"cnv_{number}", "rjt_x")
        shop.claim(f"visitor{number}", f"cnv_{number}")

    assert len(shop.tokens) == limit and len(shop.owners) == limit and len(shop.visitors) == limit
    assert "cnv_0" not in shop.tokens and f"cnv_{limit + 2}" in shop.tokens
