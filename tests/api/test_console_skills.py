"""The console's Skills pages on the app in process: the list and its conversations per bot version, a skill's
versions, graph, source and differences, and uploads (refused at their lines, saved, audited, editors only)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rejoinder.skills import Bot
from rejoinder.store.tables import audit_events, skill_versions
from tests.helpers.app import Server, running
from tests.helpers.console import FAST_HASHER, SignedInClient, create_user, sign_in

WELCOME = Path(__file__).resolve().parents[2] / "examples" / "shop" / "skills" / "welcome.yaml"
WELCOME_TEXT = WELCOME.read_text()
# The welcome skill with its closing message changed: a new version, and one line of difference.
WELCOME_CHANGED = WELCOME_TEXT.replace(
    "We're open every day from 9:00 to 18:00.", "We're open from 8:00 to 20:00."
)
# Line 18 (`next: menu` of not_understood) names a node the skill does not have.
WELCOME_BROKEN = WELCOME_TEXT.replace("    next: menu\n", "    next: menuu\n", 1)
BROKEN_LINE = WELCOME_BROKEN.splitlines().index("    next: menuu") + 1


@pytest.fixture
async def console(tmp_path: Path, shop_bot: Bot) -> AsyncIterator[Server]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot}) as server:
        server.app.state.accounts.hasher = FAST_HASHER
        for role in ("viewer", "editor"):
            await create_user(server.store, f"{role}@example.com", role)
        yield server


def client_of(server: Server) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False, client=("127.0.0.1", 50002))
    return httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test")


@asynccontextmanager
async def signed_in(server: Server, role: str) -> AsyncIterator[SignedInClient]:
    async with client_of(server) as client:
        yield await sign_in(client, server.store, f"{role}@example.com")


async def upload(
    editor: SignedInClient, text: str, *, skill: str | None = None, filename: str | None = None
) -> httpx.Response:
    data = {"csrf_token": editor.csrf_token, "bot": "shop", **({"skill": skill} if skill else {})}
    if filename is not None:
        return await editor.client.post(
            "/dashboard/skills/upload",
            data=data,
            files={"file": (filename, text.encode(), "application/yaml")},
        )
    return await editor.client.post("/dashboard/skills/upload", data={**data, "text": text})


async def rows(server: Server, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    return await server.store.database.read(lambda conn, query: list(conn.execute(query)), statement)


async def stored_versions(server: Server) -> list[tuple[str, int]]:
    found = await rows(server, sa.select(skill_versions.c.skill_id, skill_versions.c.version))
    return sorted((skill_id, version) for skill_id, version in found)


def version_counts(html: str) -> dict[str, tuple[int, int]]:
    """The table of conversations per bot version: {version: (conversations, still open)}."""
    table = html.split('class="version-counts"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td><code>([0-9a-f]+)</code>.*?</td><td>(\d+)</td><td>(\d+)</td></tr>", table)
    return {version: (int(total), int(active)) for version, total, active in rows}


def text_of(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def test_a_viewer_sees_the_skills_their_graph_and_source_but_no_upload_form(console: Server) -> None:
    async with signed_in(console, "viewer") as viewer:
        listed = await viewer.client.get("/dashboard/skills")
        page = await viewer.client.get("/dashboard/skills/welcome?bot=shop")
        source = await viewer.client.get("/dashboard/skills/welcome/source?bot=shop")
    assert listed.status_code == 200 and page.status_code == 200 and source.status_code == 200
    assert 'href="/dashboard/skills/welcome?bot=shop"' in listed.text
    assert 'href="/dashboard/skills/orders?bot=shop"' in listed.text
    assert console.service.bot("shop").version in listed.text
    for html in (listed.text, page.text):
        assert 'action="/dashboard/skills/upload"' not in html
    # The graph is an inline SVG with no style attribute (the CSP allows none), each node a link to its line.
    svg = page.text.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "style=" not in svg
    links = dict(re.findall(r'<a class="graph-node" href="([^"]+)" aria-label="[a-z]+ node ([a-z_]+)', svg))
    assert set(links.values()) == set(console.service.bot("shop").skills["welcome"].nodes)
    menu = next(url for url, node in links.items() if node == "menu")
    line = int(menu.rsplit("#L", 1)[1])
    assert menu.startswith("/dashboard/skills/welcome/source?bot=shop#L")
    # The link's line is the node's in the source view.
    row = re.search(rf'<tr id="L{line}">.*?<td class="code-line">(.*?)</td>', source.text)
    assert row is not None and row.group(1).strip() == "menu:"


async def test_the_source_view_numbers_every_line_with_an_anchor(console: Server) -> None:
    async with signed_in(console, "editor") as editor:
        saved = await upload(editor, WELCOME_TEXT, filename="welcome.yaml")
        assert saved.status_code == 303, saved.text
        source = await editor.client.get("/dashboard/skills/welcome/source?bot=shop&version=1")
    lines = WELCOME_TEXT.splitlines()
    anchors = re.findall(r'<tr id="L(\d+)"><td class="line-no"><a href="#L(\d+)">', source.text)
    assert [int(number) for number, _ in anchors] == list(range(1, len(lines) + 1))
    assert all(number == target for number, target in anchors)
    texts = [unescape(text) for text in re.findall(r'<td class="code-line">(.*?)</td>', source.text)]
    assert texts == lines


async def test_an_upload_with_an_error_shows_it_at_its_line_and_saves_nothing(console: Server) -> None:
    bot_version = console.service.bot("shop").version
    async with signed_in(console, "editor") as editor:
        refused = await upload(editor, WELCOME_BROKEN, skill="welcome")
    assert refused.status_code == 422
    assert "Nothing was saved: the skill has 1 error." in text_of(refused.text)
    marked = re.findall(r'<tr id="L(\d+)" class="has-problem">', refused.text)
    assert marked == [str(BROKEN_LINE)]
    problem = refused.text.split(f'<tr id="L{BROKEN_LINE}" class="has-problem">', 1)[1].split("</tr>", 2)[1]
    assert "no node &#39;menuu&#39;" in problem and f"Line {BROKEN_LINE}, error:" in problem
    # The text sent is back in the form, to be fixed.
    assert "next: menuu" in refused.text.split("<textarea", 1)[1]
    assert await stored_versions(console) == []
    assert console.service.bot("shop").version == bot_version


async def test_a_valid_upload_makes_a_new_version_audited_with_who_made_it(console: Server) -> None:
    before = console.service.bot("shop").version
    async with signed_in(console, "editor") as editor:
        saved = await upload(editor, WELCOME_CHANGED, filename="welcome.yaml")
        assert saved.status_code == 303
        assert saved.headers["location"] == "/dashboard/skills/welcome?bot=shop&notice=uploaded"
        page = await editor.client.get(saved.headers["location"])
        listed = await editor.client.get("/dashboard/skills")
    after = console.service.bot("shop").version
    assert after != before
    assert await stored_versions(console) == [("welcome", 1)]
    assert "The new version is saved" in page.text
    history = page.text.split('id="history-heading"', 1)[1].split("</table>", 1)[0]
    assert "<td>1</td>" in history and "console:editor@example.com" in history and after in history
    row = listed.text.split('href="/dashboard/skills/welcome?bot=shop"', 1)[1].split("</tr>", 1)[0]
    assert "<td>1</td>" in row and "console:editor@example.com" in row
    events = await rows(console, sa.select(audit_events).where(audit_events.c.kind == "skill_uploaded"))
    assert len(events) == 1
    assert events[0].detail == {
        "key_id": "console:editor@example.com",
        "skill_id": "welcome",
        "version": 1,
        "bot_version": after,
    }
    assert events[0].ip == "127.0.0.1"


async def test_conversations_are_counted_on_the_bot_version_they_began_on(console: Server) -> None:
    first = console.service.bot("shop").version
    for _ in range(2):
        await console.start()
    async with signed_in(console, "editor") as editor:
        assert (await upload(editor, WELCOME_CHANGED, skill="welcome")).status_code == 303
        second = console.service.bot("shop").version
        await console.start()
        listed = await editor.client.get("/dashboard/skills")
    assert version_counts(listed.text) == {first: (2, 2), second: (1, 1)}
    newest = listed.text.split(f"<code>{second}</code>", 2)[2].split("</tr>", 1)[0]
    assert "newest" in newest


async def test_a_viewer_cannot_upload_even_with_a_valid_form(console: Server) -> None:
    async with signed_in(console, "viewer") as viewer:
        refused = await upload(viewer, WELCOME_CHANGED, skill="welcome")
    assert refused.status_code == 403
    assert "This needs the editor role" in refused.text
    assert await stored_versions(console) == []


async def test_an_upload_without_the_csrf_token_is_refused(console: Server) -> None:
    async with signed_in(console, "editor") as editor:
        refused = await editor.client.post(
            "/dashboard/skills/upload", data={"bot": "shop", "text": WELCOME_CHANGED}
        )
    assert refused.status_code == 403
    assert await stored_versions(console) == []


async def test_the_difference_of_two_versions_marks_the_changed_line(console: Server) -> None:
    async with signed_in(console, "editor") as editor:
        for text in (WELCOME_TEXT, WELCOME_CHANGED):
            assert (await upload(editor, text, skill="welcome")).status_code == 303
        page = await editor.client.get("/dashboard/skills/welcome?bot=shop&old=1&new=2")
        same = await editor.client.get("/dashboard/skills/welcome?bot=shop&old=2&new=2")
        missing = await editor.client.get("/dashboard/skills/welcome?bot=shop&old=1&new=9")
    line = WELCOME_TEXT.splitlines().index('    text: "We\'re open every day from 9:00 to 18:00."') + 1
    diff = page.text.split('<table class="diff">', 1)[1].split("</table>", 1)[0]
    removed = re.findall(
        r'<tr class="diff-removed">\s*<td class="line-no">(\d+)</td>.*?<td class="code-line">(.*?)</td>',
        diff,
        re.S,
    )
    added = re.findall(
        r'<tr class="diff-added">\s*<td class="line-no"></td><td class="line-no">(\d+)</td>.*?<td class="code-line">(.*?)</td>',
        diff,
        re.S,
    )
    assert [(int(n), unescape(t)) for n, t in removed] == [
        (line, '    text: "We\'re open every day from 9:00 to 18:00."')
    ]
    assert [(int(n), unescape(t)) for n, t in added] == [
        (line, '    text: "We\'re open from 8:00 to 20:00."')
    ]
    assert "The two versions have the same text." in same.text
    assert missing.status_code == 404


async def test_a_new_skill_can_be_uploaded_from_the_list_page(console: Server) -> None:
    faq = (
        "id: faq\ntriggers: {events: [faq]}\nstart: answer\nnodes:\n  answer: {type: end, text: Ask away.}\n"
    )
    async with signed_in(console, "editor") as editor:
        saved = await upload(editor, faq)
        assert saved.status_code == 303
        assert saved.headers["location"].startswith("/dashboard/skills/faq?")
        mismatch = await upload(editor, faq, skill="welcome")
    assert "faq" in console.service.bot("shop").skills
    assert mismatch.status_code == 422
    assert "the URL names &#39;welcome&#39;" in mismatch.text
    assert await stored_versions(console) == [("faq", 1)]


async def test_the_admin_api_upload_is_audited_with_its_key(console: Server) -> None:
    answer = await console.client.put(
        "/v1/skills/welcome",
        content=WELCOME_CHANGED,
        headers={
            "Authorization": f"Bearer {console.keys['shop'].secret_key}",
            "Content-Type": "application/yaml",
        },
    )
    assert answer.status_code == 200, answer.text
    [event] = await rows(console, sa.select(audit_events).where(audit_events.c.kind == "skill_uploaded"))
    [(by,)] = await rows(console, sa.select(skill_versions.c.changed_by))
    assert event.detail["key_id"] == by and by.startswith("key_")
    detail = await console.client.get(
        "/v1/skills/welcome", headers={"Authorization": f"Bearer {console.keys['shop'].secret_key}"}
    )
    assert [version["changed_by"] for version in detail.json()["versions"]] == [by]


async def test_an_oversized_or_unreadable_upload_is_refused_and_saves_nothing(console: Server) -> None:
    async with signed_in(console, "editor") as editor:
        too_large = await upload(editor, "# padding\n" * 30_000, filename="big.yaml")
        not_text = await editor.client.post(
            "/dashboard/skills/upload",
            data={"csrf_token": editor.csrf_token, "bot": "shop"},
            files={"file": ("welcome.yaml", b"id: welcome\n\xff\xfe", "application/yaml")},
        )
        empty = await upload(editor, "   \n")
    assert too_large.status_code == 413
    assert not_text.status_code == 400 and "The file is not UTF-8 text (byte 12)." in not_text.text
    assert empty.status_code == 400 and "Choose a skill file or paste the skill" in empty.text
    assert await stored_versions(console) == []


async def test_only_the_upload_form_takes_a_file(console: Server) -> None:
    async with signed_in(console, "editor") as editor:
        two_files = await editor.client.post(
            "/dashboard/skills/upload",
            data={"csrf_token": editor.csrf_token, "bot": "shop"},
            files=[("file", ("a.yaml", b"id: a\n")), ("text", ("b.yaml", b"id: b\n"))],
        )
    assert two_files.status_code == 400 and "The form could not be read" in two_files.text
    assert await stored_versions(console) == []
