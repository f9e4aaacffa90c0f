"""The console's record pages on the app in process: Conversations, a conversation, Tokens and Audit render for a
viewer; a viewer's forged changes and a change without its CSRF token are refused with nothing changed; an
editor's issue, revoke and erase are done through the service and audited with the console user's name."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rejoinder.server.console import conversations as console_conversations
from rejoinder.skills import Bot
from rejoinder.tokens import hash_token
from tests.helpers.app import Server, running
from tests.helpers.clients import say, start
from tests.helpers.console import FAST_HASHER, SignedInClient, create_user, sign_in


def listed_ids(html: str) -> list[str]:
    return re.findall(r'href="/dashboard/conversations/(cnv_[0-9a-f]+)"', html)


def link(html: str, rel: str) -> str:
    found = re.search(f'rel="{rel}" href="([^"]+)"', html)
    assert found is not None, f"no {rel} link"
    return found.group(1).replace("&amp;", "&")


@dataclass
class Console:
    server: Server
    viewer: SignedInClient
    editor: SignedInClient
    conversation_id: str
    session: str
    token_id: str


def client_for(server: Server, port: int) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False, client=("127.0.0.1", port))
    return httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test")


@pytest.fixture
async def console(tmp_path: Path, shop_bot: Bot) -> AsyncIterator[Console]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot}) as server:
        server.app.state.accounts.hasher = FAST_HASHER
        await create_user(server.store, "viewer@example.com", "viewer")
        await create_user(server.store, "editor@example.com", "editor")
        started = (await start(server.client, server.keys["shop"].sdk_key, event="welcome")).json()
        said = await say(
            server.client, started["conversation_id"], started["session"], "where is my parcel", "m1"
        )
        assert said.status_code == 200, said.text
        _, token = await server.service.issue_token(started["conversation_id"], bot_id="shop")
        async with client_for(server, 50001) as viewer_http, client_for(server, 50002) as editor_http:
            yield Console(
                server=server,
                viewer=await sign_in(viewer_http, server.store, "viewer@example.com"),
                editor=await sign_in(editor_http, server.store, "editor@example.com"),
                conversation_id=started["conversation_id"],
                session=started["session"],
                token_id=token.id,
            )


async def test_each_page_renders_for_a_viewer_without_change_buttons(console: Console) -> None:
    http = console.viewer.client
    cid = console.conversation_id
    listed = await http.get("/dashboard/conversations")
    assert listed.status_code == 200
    assert f'href="/dashboard/conversations/{cid}"' in listed.text
    assert 'class="badge badge-active"' in listed.text

    page = await http.get(f"/dashboard/conversations/{cid}")
    assert page.status_code == 200
    assert "where is my parcel" in page.text and 'class="message message-customer"' in page.text
    assert 'class="message message-bot"' in page.text
    assert console.token_id in page.text
    assert "<dt>Started</dt><dd><time datetime=" in page.text
    # Its tokens are this conversation's: no column says so.
    assert 'data-label="Conversation"' not in page.text
    assert f'data-live="/dashboard/conversations/{cid}/messages"' in page.text
    assert f'data-stream="/dashboard/conversations/{cid}/live"' in page.text
    for change in ("/revoke", "/erase", f'{cid}/tokens"', "Issue a token"):
        assert change not in page.text, change
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # only script files of the console's own origin

    tokens = await http.get("/dashboard/tokens")
    assert tokens.status_code == 200 and console.token_id in tokens.text and "Revoke" not in tokens.text
    assert f'<td data-label="Conversation"><a href="/dashboard/conversations/{cid}">' in tokens.text
    audit = await http.get("/dashboard/audit")
    assert audit.status_code == 200 and "Download CSV" in audit.text
    for path in ("/dashboard/static/records.css", "/dashboard/static/conversation.js"):
        assert (await http.get(path)).status_code == 200, path


async def test_filters_search_and_pages(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    http = console.viewer.client
    cid = console.conversation_id
    assert cid in (await http.get("/dashboard/conversations", params={"q": "PARCEL"})).text
    assert cid not in (await http.get("/dashboard/conversations", params={"q": "umbrella"})).text
    assert cid in (await http.get("/dashboard/conversations", params={"q": console.token_id})).text
    assert cid not in (await http.get("/dashboard/conversations", params={"status": "closed"})).text
    for _ in range(3):
        await start(console.server.client, console.server.keys["shop"].sdk_key, event="welcome")
    monkeypatch.setattr(console_conversations, "PAGE_SIZE", 3)
    first = await http.get("/dashboard/conversations")
    ids_first = listed_ids(first.text)
    assert len(ids_first) == 3 and 'rel="prev"' not in first.text
    second = await http.get(link(first.text, "next"))
    ids_second = listed_ids(second.text)
    assert len(ids_second) == 1 and 'rel="next"' not in second.text
    assert len(set(ids_first + ids_second)) == 4
    back = await http.get(link(second.text, "prev"))
    assert listed_ids(back.text) == ids_first

    bad = await http.get("/dashboard/conversations", params={"cursor": "garbage"})
    assert bad.status_code == 400 and "not valid any more" in bad.text
    assert (await http.get("/dashboard/conversations", params={"status": "sleeping"})).status_code == 400
    assert (await http.get("/dashboard/conversations", params={"since": "last week"})).status_code == 400
    assert (await http.get("/dashboard/conversations", params={"q": "x" * 201})).status_code == 400
    assert (await http.get("/dashboard/conversations", params={"bot": "nope"})).status_code == 404
    assert (await http.get("/dashboard/conversations/cnv_missing")).status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "title"),
    [
        ("/dashboard/tokens", {"status": "sleeping"}, "Unknown filter"),
        ("/dashboard/tokens", {"conversation": "x" * 201}, "Filter too long"),
        ("/dashboard/tokens", {"bot": "nope"}, "No such bot"),
        ("/dashboard/audit", {"since": "last week"}, "Unreadable time"),
        ("/dashboard/audit", {"actor": "x" * 201}, "Filter too long"),
        ("/dashboard/audit.csv", {"until": "tomorrow"}, "Unreadable time"),
        ("/dashboard/audit.csv", {"kind": "x" * 201}, "Filter too long"),
        ("/dashboard/audit.csv", {"bot": "nope"}, "No such bot"),
    ],
)
async def test_every_list_and_the_audit_export_refuse_bad_filters_with_a_page(
    console: Console, path: str, params: dict[str, str], title: str
) -> None:
    refused = await console.viewer.client.get(path, params=params)
    assert refused.status_code == (404 if title == "No such bot" else 400)
    assert refused.headers["content-type"].startswith("text/html") and title in refused.text


async def test_a_viewers_forged_changes_are_refused_and_change_nothing(console: Console) -> None:
    viewer = console.viewer
    cid = console.conversation_id
    forged = {"csrf_token": viewer.csrf_token, "bot": "shop", "ttl": "1h"}
    for path in (
        f"/dashboard/tokens/{console.token_id}/revoke",
        f"/dashboard/conversations/{cid}/erase",
        f"/dashboard/conversations/{cid}/tokens",
    ):
        answer = await viewer.client.post(path, data=forged)
        assert answer.status_code == 403, path
        assert "needs the editor role" in answer.text
    assert (await viewer.client.get(f"/dashboard/conversations/{cid}/erase")).status_code == 403
    [token] = await console.server.store.credentials.list_tokens(cid)
    assert token.revoked_at is None
    assert await console.server.store.conversations.get(cid) is not None


async def test_a_change_without_its_csrf_token_is_refused(console: Console) -> None:
    editor = console.editor
    cid = console.conversation_id
    missing = await editor.client.post(f"/dashboard/conversations/{cid}/erase", data={})
    wrong = await editor.client.post(
        f"/dashboard/tokens/{console.token_id}/revoke", data={"csrf_token": "0" * 64, "bot": "shop"}
    )
    assert missing.status_code == 403 and wrong.status_code == 403
    assert await console.server.store.conversations.get(cid) is not None
    [token] = await console.server.store.credentials.list_tokens(cid)
    assert token.revoked_at is None


async def test_an_editor_issues_and_revokes_a_token_audited_by_name(console: Console) -> None:
    editor = console.editor
    cid = console.conversation_id
    issued = await editor.client.post(
        f"/dashboard/conversations/{cid}/tokens",
        data={"csrf_token": editor.csrf_token, "ttl": "2h", "uses": "3"},
    )
    assert issued.status_code == 201
    secret = re.search(r'id="issued-secret"[^>]*value="(rjt_[A-Za-z0-9_-]+)"', issued.text)
    assert secret is not None
    record = await console.server.store.credentials.find_token_by_hash(hash_token(secret.group(1)))
    assert record is not None and record.max_uses == 3
    # The page that answers the form (at …/tokens) keeps the conversation's transcript live all the same.
    assert f'data-live="/dashboard/conversations/{cid}/messages"' in issued.text
    assert f'data-stream="/dashboard/conversations/{cid}/live"' in issued.text
    assert f'action="/dashboard/conversations/{cid}/tokens"' in issued.text
    assert f'href="/dashboard/conversations/{cid}/erase"' in issued.text
    # Shown once: the conversation's page lists the token, never its secret.
    again = await editor.client.get(f"/dashboard/conversations/{cid}")
    assert record.id in again.text and secret.group(1) not in again.text

    revoked = await editor.client.post(
        f"/dashboard/tokens/{record.id}/revoke",
        data={"csrf_token": editor.csrf_token, "bot": "shop", "next": f"/dashboard/conversations/{cid}"},
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == f"/dashboard/conversations/{cid}?notice=revoked"
    resumed = await console.server.client.post(
        "/v1/conversations/resume",
        json={"token": secret.group(1)},
        headers=console.server.sdk(),
    )
    assert resumed.status_code == 410 and resumed.json()["type"] == "token_revoked"
    elsewhere = await editor.client.post(
        f"/dashboard/tokens/{record.id}/revoke",
        data={"csrf_token": editor.csrf_token, "bot": "shop", "next": "https://evil.example/"},
    )
    assert elsewhere.headers["location"].startswith("/dashboard")

    trail = await editor.client.get("/dashboard/audit", params={"actor": "console:editor@example.com"})
    assert "token issued" in trail.text and "token revoked" in trail.text
    exported = await editor.client.get("/dashboard/audit.csv", params={"conversation": cid})
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    kinds = {(row["kind"], row["actor"]) for row in rows}
    assert ("token_revoked", "console:editor@example.com") in kinds
    assert secret.group(1) not in exported.text


async def test_an_editors_erase_removes_the_conversation_and_its_tokens_stop_resuming(
    console: Console,
) -> None:
    editor = console.editor
    cid = console.conversation_id
    secret, _ = await console.server.service.issue_token(cid, bot_id="shop")
    confirm = await editor.client.get(f"/dashboard/conversations/{cid}/erase")
    assert confirm.status_code == 200 and "Erase for good" in confirm.text
    erased = await editor.client.post(
        f"/dashboard/conversations/{cid}/erase", data={"csrf_token": editor.csrf_token}
    )
    assert erased.status_code == 303 and erased.headers["location"].endswith("notice=erased")
    listed = await editor.client.get(erased.headers["location"])
    assert "was erased" in listed.text and cid not in listed.text

    gone = await editor.client.get(f"/dashboard/conversations/{cid}")
    assert gone.status_code == 404 and "Conversation not found" in gone.text
    live = await editor.client.get(f"/dashboard/conversations/{cid}/messages", params={"after": 0})
    assert live.status_code == 404 and live.headers["content-type"].startswith("application/json")
    resumed = await console.server.client.post(
        "/v1/conversations/resume", json={"token": secret}, headers=console.server.sdk()
    )
    assert resumed.status_code == 404 and resumed.json()["type"] == "token_not_found"
    audit = await editor.client.get("/dashboard/audit", params={"kind": "conversation_erased"})
    assert "console:editor@example.com" in audit.text


async def test_the_live_transcript_gets_new_messages(console: Console) -> None:
    http = console.viewer.client
    cid = console.conversation_id
    first = await http.get(f"/dashboard/conversations/{cid}/messages", params={"after": 0})
    assert first.status_code == 200
    known = first.json()["messages"]
    last = known[-1]["seq"]
    said = await say(console.server.client, cid, console.session, "and my refund?", "m2")
    assert said.status_code == 200
    fresh = (await http.get(f"/dashboard/conversations/{cid}/messages", params={"after": last})).json()
    assert fresh["messages"][0]["text"] == "and my refund?" and fresh["messages"][0]["sender"] == "customer"
    assert all(m["seq"] > last for m in fresh["messages"])
    bad = await http.get(f"/dashboard/conversations/{cid}/messages", params={"after": "-1"})
    assert bad.status_code == 400
    signed_out = await console.server.client.get(f"/dashboard/conversations/{cid}/messages")
    assert signed_out.status_code == 303  # no session: to the sign-in form
