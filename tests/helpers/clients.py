"""A customer's calls over HTTP: start a conversation with the SDK key, say something with the session."""

from __future__ import annotations

from typing import Any

import httpx


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def start(http: httpx.AsyncClient, sdk_key: str, **body: Any) -> httpx.Response:
    """POST /v1/conversations with ``body`` (an event, a skill, a user)."""
    return await http.post("/v1/conversations", json=body, headers=bearer(sdk_key))


async def say(
    http: httpx.AsyncClient, conversation_id: str, session: str, text: str, message_id: str
) -> httpx.Response:
    """POST …/messages: ``text`` as the customer, ``message_id`` as its client_message_id (retries reuse it)."""
    return await http.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": text, "client_message_id": message_id},
        headers=bearer(session),
    )
