"""Pages, probes and API helpers shared by the SDK's browser tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

from playwright.sync_api import Locator, Page

from tests.helpers.processes import ServeProcess
from tests.helpers.site import Site

_ids = itertools.count()


def page_with_sdk(
    site: Site,
    server: ServeProcess,
    path: str,
    script: str = "",
    *,
    options: str = "",
    head: str = "",
    body: str = "",
    nonce: str | None = None,
) -> str:
    """Serve a plain business page that loads the SDK, initializes it and runs ``script``; returns its URL.

    ``options`` is JavaScript appended inside ``initialize({...})`` (start it with a comma).
    """
    nonce_attr = f' nonce="{nonce}"' if nonce else ""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Shop</title>{head}</head>
<body>
<h1>Acme shop</h1>
<p>A page of the business's own site.</p>
{body}
<script src="{server.sdk_url}"></script>
<script{nonce_attr}>
  Alli.initialize({{sdkKey: "{server.sdk_key}", server: "{server.base}"{options}}});
  {script}
</script>
</body></html>"""
    return site.add(path, html)


def widget(page: Page) -> Locator:
    """The widget's host; Playwright's CSS locators pierce its open shadow root."""
    return page.locator("#rejoinder-widget")


def messages_in(page: Page) -> list[tuple[str, str]]:
    """The transcript on screen, as (sender, text) pairs in order."""
    pairs: list[list[str]] = page.evaluate(
        """() => {
          const host = document.querySelector('#rejoinder-widget');
          if (!host) return [];
          return [...host.shadowRoot.querySelectorAll('.msg')].map(node => [
            ['customer', 'bot', 'system'].find(s => node.classList.contains(s)),
            node.querySelector('.bubble').textContent]);
        }"""
    )
    return [(sender, text) for sender, text in pairs]


def banner_text(page: Page) -> str:
    """What the state banner says, or "" when it is hidden."""
    text: str = page.evaluate(
        """() => {
          const banner = document.querySelector('#rejoinder-widget').shadowRoot.querySelector('.banner');
          return banner.hidden ? '' : banner.querySelector('.banner-text').textContent;
        }"""
    )
    return text


def stored(page: Page) -> dict[str, str]:
    """Everything the page keeps in sessionStorage and localStorage (key → raw value)."""
    items: dict[str, str] = page.evaluate(
        """() => {
          const all = {};
          for (const store of [sessionStorage, localStorage])
            for (let i = 0; i < store.length; i++) all[store.key(i)] = store.getItem(store.key(i));
          return all;
        }"""
    )
    return items


def say(server: ServeProcess, conversation_id: str, session: str, text: str) -> dict[str, Any]:
    """Send ``text`` as the customer from outside the browser; the answer of POST …/messages."""
    with server.client() as client:
        answer = client.post(
            f"/v1/conversations/{conversation_id}/messages",
            json={"text": text, "client_message_id": f"py-{next(_ids)}"},
            headers={"Authorization": f"Bearer {session}"},
        )
    assert answer.status_code == 200, answer.text
    turn: dict[str, Any] = answer.json()
    return turn


def resume_elsewhere(server: ServeProcess, conversation_id: str) -> str:
    """Open a second session on the conversation, as another device holding a token would; returns it."""
    token = server.issue_token(conversation_id)["token"]
    with server.client() as client:
        answer = client.post("/v1/conversations/resume", json={"token": token})
    assert answer.status_code == 200, answer.text
    session: str = answer.json()["session"]
    return session


def saved_conversation(page: Page) -> dict[str, Any] | None:
    """What the SDK persisted for its conversation, or None."""
    for key, value in stored(page).items():
        if key.startswith("rejoinder:"):
            record: dict[str, Any] = json.loads(value)
            return record
    return None


# Page script: record the SDK's events in window globals for the test to read.
TRACK_EVENTS = """
  window.seen = {conversation: [], status: [], message: [], open: 0, close: 0, error: []};
  Alli.on('conversation', function (id) { window.seen.conversation.push(id); });
  Alli.on('status', function (status) { window.seen.status.push(status); });
  Alli.on('message', function (m) { window.seen.message.push(m.seq); });
  Alli.on('open', function () { window.seen.open += 1; });
  Alli.on('close', function () { window.seen.close += 1; });
  Alli.on('error', function (e) { window.seen.error.push(e.code); });
"""
