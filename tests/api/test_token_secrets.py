"""Through the real app and the shop's real backend: the token the backend got resumes; nothing the API shows does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rejoinder.skills import Bot
from tests.helpers import app
from tests.helpers.app import Launch
from tests.helpers.shop_backend import running_backend

SECRET = re.compile(r"rjt_[A-Za-z0-9_-]{43}")


async def test_transcript_variables_and_audit_show_a_reference_and_the_backend_token_resumes(
    tmp_path: Path, shop_bot: Bot, launch: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_backend() as (base_url, shop):
        monkeypatch.setitem(app.ENVIRON, "SHOP_BACKEND", base_url)
        async with launch(tmp_path / "rejoinder.db", {"shop": shop_bot}) as server:
            started = await server.start(event="orders")
            conversation = started["conversation_id"]
            [(sent_for, token)] = shop.tokens.items()
            assert sent_for == conversation and SECRET.fullmatch(token)

            admin = {"Authorization": f"Bearer {server.keys['shop'].secret_key}"}
            resumed = await server.client.post(
                "/v1/conversations/resume", json={"token": token}, headers=server.sdk()
            )
            assert resumed.status_code == 200, resumed.text
            transcript = (await server.client.get(f"/v1/conversations/{conversation}", headers=admin)).json()
            audit = (
                await server.client.get(f"/v1/audit?conversation_id={conversation}", headers=admin)
            ).json()
            shown = json.dumps([started, resumed.json(), transcript, audit])
            assert not SECRET.search(shown)

            reference = transcript["variables"]["RESUME_TOKEN"]
            assert reference.startswith("tokref-tok_")
            [issued] = [event for event in audit["items"] if event["kind"] == "resume"]
            assert reference == "tokref-" + issued["token_id"]  # the public id the audit trail shows
            for attempt in (reference, reference.removeprefix("tokref-")):
                refused = await server.client.post(
                    "/v1/conversations/resume", json={"token": attempt}, headers=server.sdk()
                )
                assert (refused.status_code, refused.json()["type"]) == (400, "token_malformed")
