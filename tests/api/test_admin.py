"""The admin API (secret key), through the real ASGI app: skills, conversations, tokens, audit."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rejoinder.engine import STATE_VERSION_KEY
from rejoinder.server import skill_catalog
from tests.helpers.admin_api import Api, running_admin_api
from tests.helpers.bots import TALK_SKILL

pytestmark = pytest.mark.timeout(30)

FAQ = """\
id: faq
name: Questions
triggers: {events: [faq]}
start: answer
nodes:
  answer:
    type: message
    text: "We ship in 2 days."
    next: done
  done: {type: end}
"""
TALK_V2 = """\
id: talk
triggers: {events: [hello], default: true}
start: greet
nodes:
  greet: {type: message, text: "Hello again!", next: name}
  name: {type: question, text: "Your name?", save_to: name, next: thanks}
  thanks: {type: message, text: "Thanks {{ name }}", next: name}
"""
YAML = {"content-type": "application/yaml"}


def problem_lines(body: dict[str, Any]) -> list[str]:
    return [problem["text"] for problem in body["problems"]]


# ---------------------------------------------------------------------------------------------- access


async def test_the_admin_api_takes_only_the_bots_secret_key_from_servers(api: Api) -> None:
    assert (await api.http.get("/v1/skills")).status_code == 401
    sdk = await api.http.get("/v1/skills", headers={"Authorization": f"Bearer {api.sdk_key}"})
    assert (sdk.status_code, sdk.json()["type"]) == (403, "forbidden")
    browser = await api.http.get("/v1/conversations", headers=api.admin | {"Origin": "http://shop.example"})
    assert browser.status_code == 403
    assert browser.headers["content-type"] == "application/problem+json"


async def test_a_bots_secret_key_sees_nothing_of_another_bot(api: Api) -> None:
    conversation, _ = await api.start()
    other = {"Authorization": f"Bearer {api.other_secret_key}"}
    assert (await api.http.get(f"/v1/conversations/{conversation}", headers=other)).status_code == 404
    assert (await api.http.delete(f"/v1/conversations/{conversation}", headers=other)).status_code == 404
    assert (
        await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=other)
    ).status_code == 404
    assert (await api.http.get("/v1/conversations", headers=other)).json()["items"] == []
    issued = await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    revoked = await api.http.delete(f"/v1/tokens/{issued.json()['id']}", headers=other)
    assert (revoked.status_code, revoked.json()["type"]) == (404, "token_not_found")
    assert (await api.resume(issued.json()["token"])).status_code == 200  # untouched


# ---------------------------------------------------------------------------------------------- skills


async def test_an_uploaded_skill_is_versioned_and_used_by_new_conversations(api: Api) -> None:
    created = await api.put_skill("faq", FAQ)
    assert created.status_code == 201
    assert created.json()["version"] == 1
    conversation, _ = await api.start("faq")
    transcript = await api.http.get(f"/v1/conversations/{conversation}", headers=api.admin)
    assert [m["text"] for m in transcript.json()["messages"]] == ["We ship in 2 days."]

    as_json = json.dumps({**_faq_data(), "nodes": {"answer": {"type": "message", "text": "Next day!"}}})
    replaced = await api.put_skill("faq", as_json, "application/json")
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2
    assert replaced.json()["bot_version"] != created.json()["bot_version"]
    conversation, _ = await api.start("faq")
    transcript = await api.http.get(f"/v1/conversations/{conversation}", headers=api.admin)
    assert [m["text"] for m in transcript.json()["messages"]] == ["Next day!"]

    listed = (await api.http.get("/v1/skills", headers=api.admin)).json()
    assert listed["next_cursor"] is None
    by_id = {item["id"]: item for item in listed["items"]}
    assert sorted(by_id) == ["faq", "handoff", "talk"]
    assert (by_id["faq"]["origin"], by_id["faq"]["version"], by_id["faq"]["name"]) == (
        "upload",
        2,
        "Questions",
    )
    assert (by_id["talk"]["origin"], by_id["talk"]["version"]) == ("directory", None)

    detail = (await api.http.get("/v1/skills/faq", headers=api.admin)).json()
    assert detail["source"] == as_json
    assert detail["media_type"] == "application/json"
    assert [v["version"] for v in detail["versions"]] == [1, 2]
    assert detail["definition"]["nodes"]["answer"]["text"] == "Next day!"


def _faq_data() -> dict[str, Any]:
    return {"id": "faq", "name": "Questions", "triggers": {"events": ["faq"]}, "start": "answer"}


async def test_an_invalid_upload_is_refused_with_every_problem_at_its_line_and_nothing_changes(
    api: Api,
) -> None:
    broken = (
        "id: talk\n"
        "start: ask\n"
        "nodes:\n"
        "  ask:\n"
        "    type: question\n"
        "    colour: red\n"
        "    text: Say something\n"
        "    save_to: said\n"
        "    next: nowhere\n"
    )
    refused = await api.put_skill("talk", broken)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"] == "invalid_skill"
    assert body["detail"].startswith("The skill has")
    located = {(p["file"], p["line"], p["node"]) for p in body["problems"] if p["severity"] == "error"}
    assert ("talk.yaml", 6, "ask") in located  # the unknown field 'colour'
    assert any("colour" in line for line in problem_lines(body))
    # Nothing stored: conversations still run the directory's skill.
    detail = (await api.http.get("/v1/skills/talk", headers=api.admin)).json()
    assert (detail["origin"], detail["versions"]) == ("directory", [])


@pytest.mark.parametrize(
    ("text", "content_type", "status", "kind", "says"),
    [
        ("id: talk\nstart: [oops", "application/yaml", 422, "invalid_skill", "talk.yaml:2"),
        (FAQ, "application/yaml", 422, "invalid_skill", "the skill's id is 'faq' but the URL names 'talk'"),
        ('{"id": "talk", ', "application/json", 422, "invalid_skill", "talk.json"),
        (TALK_SKILL, "text/plain", 415, "unsupported_media_type", "application/yaml"),
    ],
)
async def test_uploads_that_cannot_be_read_are_refused_clearly(
    api: Api, text: str, content_type: str, status: int, kind: str, says: str
) -> None:
    refused = await api.put_skill("talk", text, content_type)
    assert (refused.status_code, refused.json()["type"]) == (status, kind)
    assert says in json.dumps(refused.json())


async def test_an_upload_that_is_not_utf8_is_refused(api: Api) -> None:
    refused = await api.http.put("/v1/skills/talk", content=b"id: t\xff\xfe", headers=api.admin | YAML)
    assert (refused.status_code, refused.json()["type"]) == (400, "malformed_body")


async def test_validating_stores_nothing(api: Api) -> None:
    ok = await api.http.post("/v1/skills:validate", content=FAQ, headers=api.admin | YAML)
    assert ok.json() == {"valid": True, "problems": []}
    bad = await api.http.post(
        "/v1/skills:validate", content=FAQ.replace("next: done", "next: gone"), headers=api.admin | YAML
    )
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert problem_lines(bad.json()) == [
        "skill.yaml:9: skill 'faq', node 'answer': next: no node 'gone' in this skill (did you mean 'done'?)",
        "skill.yaml:10: skill 'faq', node 'done': unreachable: no path leads here from start 'answer'",
    ]
    assert [p["severity"] for p in bad.json()["problems"]] == ["error", "warning"]
    assert (await api.http.get("/v1/skills/faq", headers=api.admin)).status_code == 404


async def test_deleting_a_skill(api: Api) -> None:
    in_use = await api.http.delete("/v1/skills/talk", headers=api.admin)
    assert (in_use.status_code, in_use.json()["type"]) == (409, "skill_in_use")
    assert any("talk" in line for line in problem_lines(in_use.json()))

    assert (await api.http.delete("/v1/skills/handoff", headers=api.admin)).status_code == 204
    missing = await api.http.get("/v1/skills/handoff", headers=api.admin)
    assert (missing.status_code, missing.json()["type"]) == (404, "skill_not_found")
    assert [item["id"] for item in (await api.http.get("/v1/skills", headers=api.admin)).json()["items"]] == [
        "talk"
    ]
    refused = await api.http.post(
        "/v1/conversations", json={"event": "handoff"}, headers={"Authorization": f"Bearer {api.sdk_key}"}
    )
    assert refused.status_code == 400
    assert (await api.http.delete("/v1/skills/handoff", headers=api.admin)).status_code == 404
    assert (await api.http.delete("/v1/skills/Bad-Id", headers=api.admin)).status_code == 422


async def test_a_conversation_inside_an_old_version_finishes_on_it(api: Api) -> None:
    old, session = await api.start()
    stored = await api.store.conversations.get(old)
    assert stored is not None
    assert STATE_VERSION_KEY in stored.state, "a conversation records the bot version it runs on"
    assert (await api.put_skill("talk", TALK_V2)).status_code == 200

    # The old conversation waits at 'ask', a node the new version no longer has: it goes on as it began.
    answered = await api.say(old, session, "hi", "m1")
    assert answered.status_code == 200, answered.text
    assert [m["text"] for m in answered.json()["messages"]] == ["hi", "You said hi", "Say something"]
    position = (await api.http.get(f"/v1/conversations/{old}", headers=api.admin)).json()["position"]
    assert position["pending"] == {"node": "ask", "input": "text"}

    new, _ = await api.start()
    transcript = (await api.http.get(f"/v1/conversations/{new}", headers=api.admin)).json()
    assert [m["text"] for m in transcript["messages"]] == ["Hello again!", "Your name?"]
    assert transcript["bot_version"] != stored.state[STATE_VERSION_KEY]


async def test_uploads_survive_a_restart(bots_root: Path, tmp_path: Path) -> None:
    database = tmp_path / "kept.db"
    async with running_admin_api(bots_root, database) as first:
        assert (await first.put_skill("faq", FAQ)).status_code == 201
        assert (await first.http.delete("/v1/skills/handoff", headers=first.admin)).status_code == 204
    async with running_admin_api(bots_root, database) as second:
        items = (await second.http.get("/v1/skills", headers=second.admin)).json()["items"]
        assert [(item["id"], item["origin"]) for item in items] == [("faq", "upload"), ("talk", "directory")]
        conversation, _ = await second.start("faq")
        assert conversation.startswith("cnv_")


async def test_an_upload_on_one_worker_reaches_the_others(
    bots_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(skill_catalog, "SYNC_INTERVAL", 0.05)
    database = tmp_path / "shared.db"
    async with (
        running_admin_api(bots_root, database) as worker_a,
        running_admin_api(bots_root, database) as worker_b,
    ):
        assert (await worker_a.put_skill("faq", FAQ)).status_code == 201
        for _ in range(100):
            started = await worker_b.http.post(
                "/v1/conversations",
                json={"event": "faq"},
                headers={"Authorization": f"Bearer {worker_b.sdk_key}"},
            )
            if started.status_code == 201:
                break
            await asyncio.sleep(0.02)
        assert started.status_code == 201
        assert started.json()["messages"][0]["text"] == "We ship in 2 days."


# ---------------------------------------------------------------------------------------------- conversations


async def test_listing_conversations_filters_and_pages(api: Api) -> None:
    first, session = await api.start()
    second, _ = await api.start()
    third, _ = await api.start()
    await api.say(first, session, "still here", "m1")  # the most recently updated now

    page = (await api.http.get("/v1/conversations?limit=2", headers=api.admin)).json()
    assert [item["id"] for item in page["items"]] == [first, third]
    assert page["items"][0]["last_seq"] == 5
    rest = (
        await api.http.get(f"/v1/conversations?limit=2&cursor={page['next_cursor']}", headers=api.admin)
    ).json()
    assert [item["id"] for item in rest["items"]] == [second]
    assert rest["next_cursor"] is None

    closed = (await api.http.get("/v1/conversations?status=closed", headers=api.admin)).json()
    assert closed["items"] == []
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert (
        await api.http.get("/v1/conversations", params={"updated_after": later}, headers=api.admin)
    ).json()["items"] == []
    bad = await api.http.get("/v1/conversations?cursor=nonsense", headers=api.admin)
    assert (bad.status_code, bad.json()["type"]) == (400, "invalid_cursor")
    assert (await api.http.get("/v1/conversations?status=open", headers=api.admin)).status_code == 422


async def test_a_conversation_shows_its_transcript_variables_and_position(api: Api) -> None:
    conversation, session = await api.start()
    await api.say(conversation, session, "hello bot", "m1")
    body = (await api.http.get(f"/v1/conversations/{conversation}", headers=api.admin)).json()
    assert body["id"] == conversation
    assert body["status"] == "active"
    assert body["variables"] == {"said": "hello bot"}
    assert body["position"] == {
        "skill_id": "talk",
        "node_id": "ask",
        "waiting": "customer",
        "pending": {"node": "ask", "input": "text"},
    }
    assert [m["seq"] for m in body["messages"]] == [1, 2, 3, 4, 5]
    assert body["messages"][2] | {"created_at": "-"} == {
        "seq": 3,
        "sender": "customer",
        "type": "text",
        "text": "hello bot",
        "created_at": "-",
    }
    assert body["next_after"] is None
    paged = (
        await api.http.get(f"/v1/conversations/{conversation}?after=1&limit=2", headers=api.admin)
    ).json()
    assert ([m["seq"] for m in paged["messages"]], paged["next_after"]) == ([2, 3], 3)
    missing = await api.http.get("/v1/conversations/cnv_nope", headers=api.admin)
    assert (missing.status_code, missing.json()["type"]) == (404, "conversation_not_found")


async def test_erasing_a_conversation_takes_its_tokens_and_sessions_with_it(api: Api) -> None:
    conversation, session = await api.start()
    token = (
        await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    ).json()
    assert (await api.http.delete(f"/v1/conversations/{conversation}", headers=api.admin)).status_code == 204
    assert (await api.http.get(f"/v1/conversations/{conversation}", headers=api.admin)).status_code == 404
    gone = await api.resume(token["token"])
    assert (gone.status_code, gone.json()["type"]) == (404, "token_not_found")
    assert (await api.say(conversation, session, "anyone?", "m1")).status_code == 401
    assert (await api.http.delete(f"/v1/conversations/{conversation}", headers=api.admin)).status_code == 404
    erased = (await api.http.get(f"/v1/audit?conversation_id={conversation}", headers=api.admin)).json()[
        "items"
    ]
    assert [event["kind"] for event in erased][:1] == ["conversation_erased"]


# ---------------------------------------------------------------------------------------------- tokens


async def test_issuing_a_token_shows_it_once_and_lists_only_metadata(api: Api) -> None:
    conversation, _ = await api.start()
    issued = await api.http.post(
        f"/v1/conversations/{conversation}/tokens", json={"ttl": "15m", "uses": 1}, headers=api.admin
    )
    assert issued.status_code == 201
    body = issued.json()
    assert body["token"].startswith("rjt_")
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["expires_at"]) - created == timedelta(minutes=15)
    assert (body["max_uses"], body["uses"], body["revoked_at"], body["last_used_at"]) == (1, 0, None, None)

    assert (await api.resume(body["token"])).status_code == 200
    used_up = await api.resume(body["token"])
    assert (used_up.status_code, used_up.json()["type"]) == (410, "token_used_up")

    listed = await api.http.get(f"/v1/conversations/{conversation}/tokens", headers=api.admin)
    assert body["token"] not in listed.text
    [item] = listed.json()["items"]
    assert set(item) == {
        "id",
        "conversation_id",
        "created_at",
        "expires_at",
        "max_uses",
        "uses",
        "revoked_at",
        "last_used_at",
    }
    assert (item["id"], item["uses"]) == (body["id"], 1)
    assert item["last_used_at"] is not None
    assert listed.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "body", [{"ttl": "soon"}, {"ttl": 0}, {"uses": 0}, {"secret": "x"}, {"ttl": "9999d"}]
)
async def test_invalid_token_requests_are_refused(api: Api, body: dict[str, Any]) -> None:
    conversation, _ = await api.start()
    refused = await api.http.post(f"/v1/conversations/{conversation}/tokens", json=body, headers=api.admin)
    assert (refused.status_code, refused.json()["type"]) == (422, "validation_error")


async def test_revoking_a_token_ends_the_sessions_opened_with_it(api: Api) -> None:
    conversation, own_session = await api.start()
    token = (
        await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    ).json()
    resumed = (await api.resume(token["token"])).json()
    revoked = await api.http.delete(f"/v1/tokens/{token['id']}", headers=api.admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert "token" not in revoked.json()
    assert (await api.say(conversation, resumed["session"], "still me?", "r1")).status_code == 401
    refused = await api.resume(token["token"])
    assert (refused.status_code, refused.json()["type"]) == (410, "token_revoked")
    # The session the conversation was started with did not come from that token: it goes on.
    assert (await api.say(conversation, own_session, "me", "o1")).status_code == 200
    again = await api.http.delete(f"/v1/tokens/{token['id']}", headers=api.admin)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert (await api.http.delete("/v1/tokens/tok_unknown", headers=api.admin)).status_code == 404


# ---------------------------------------------------------------------------------------------- audit


async def test_the_audit_trail_records_resume_attempts_and_admin_actions(api: Api) -> None:
    conversation, _ = await api.start()
    token = (
        await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    ).json()
    await api.http.post(
        "/v1/conversations/resume",
        json={"token": token["token"]},
        headers={"Authorization": f"Bearer {api.sdk_key}", "User-Agent": "shop-app/1.0"},
    )
    await api.resume("rjt_" + "A" * 43)  # unknown: audited, with no conversation
    await api.http.delete(f"/v1/tokens/{token['id']}", headers=api.admin)

    trail = (await api.http.get(f"/v1/audit?conversation_id={conversation}", headers=api.admin)).json()
    kinds = [(event["kind"], event["outcome"]) for event in trail["items"]]
    assert kinds == [("token_revoked", "ok"), ("resume", "ok"), ("token_issued", "ok")]
    resume = trail["items"][1]
    assert (resume["token_id"], resume["ip"], resume["user_agent"]) == (
        token["id"],
        "127.0.0.1",
        "shop-app/1.0",
    )

    everything = (await api.http.get("/v1/audit?limit=2", headers=api.admin)).json()
    assert len(everything["items"]) == 2
    older = (await api.http.get(f"/v1/audit?cursor={everything['next_cursor']}", headers=api.admin)).json()
    assert ("resume", "token_not_found") in [
        (e["kind"], e["outcome"]) for e in everything["items"] + older["items"]
    ]
    assert token["token"] not in json.dumps(everything) + json.dumps(older)


async def test_skill_files_larger_than_a_chat_message_can_be_uploaded(api: Api) -> None:
    described = FAQ + "description: " + repr("x" * 40_000) + "\n"
    assert (await api.put_skill("faq", described)).status_code == 201
    huge = FAQ + "description: " + repr("x" * 300_000) + "\n"
    refused = await api.put_skill("faq", huge)
    assert refused.status_code == 413 and refused.json()["type"] == "too_large"


@pytest.mark.parametrize("content", [None, b""])
async def test_a_token_issue_without_a_body_takes_the_bots_defaults(api: Api, content: bytes | None) -> None:
    conversation, _ = await api.start()
    issued = await api.http.post(
        f"/v1/conversations/{conversation}/tokens", content=content, headers=api.admin
    )
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["token"].startswith("rjt_")
    assert body["max_uses"] is None
    assert datetime.fromisoformat(body["expires_at"]) > datetime.fromisoformat(body["created_at"])
    assert (await api.resume(body["token"])).status_code == 200


@pytest.mark.parametrize("method", ["DELETE", "GET", "PUT"])
@pytest.mark.parametrize("key", ["sdk", "secret"])
async def test_other_methods_on_the_resume_path_are_not_allowed(api: Api, method: str, key: str) -> None:
    secret = api.sdk_key if key == "sdk" else api.secret_key
    answer = await api.http.request(
        method, "/v1/conversations/resume", headers={"Authorization": f"Bearer {secret}"}
    )
    assert (answer.status_code, answer.json()["type"]) == (405, "method_not_allowed"), answer.text
    assert answer.headers["allow"] == "POST"


async def test_a_conversation_path_that_only_starts_with_resume_is_still_a_conversation(api: Api) -> None:
    answer = await api.http.get("/v1/conversations/resumed", headers=api.admin)
    assert (answer.status_code, answer.json()["type"]) == (404, "conversation_not_found")


class _NoDatabase:
    """Stands in for the store's database: any use of it (rather than of a repository's calls) fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the admin API used store.database.{name}")


async def test_the_token_and_erase_routes_go_through_the_store_s_own_calls(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation, _ = await api.start()
    monkeypatch.setattr(api.store, "database", _NoDatabase())

    issued = await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    revoked = await api.http.delete(f"/v1/tokens/{issued.json()['id']}", headers=api.admin)
    erased = await api.http.delete(f"/v1/conversations/{conversation}", headers=api.admin)

    assert (issued.status_code, revoked.status_code, erased.status_code) == (201, 200, 204)
    monkeypatch.undo()
    kinds = [item["kind"] for item in (await api.http.get("/v1/audit", headers=api.admin)).json()["items"]]
    assert kinds[:3] == ["conversation_erased", "token_revoked", "token_issued"]


async def test_another_bot_s_token_cannot_be_revoked_and_stays_valid(api: Api) -> None:
    conversation, _ = await api.start()
    token = (
        await api.http.post(f"/v1/conversations/{conversation}/tokens", json={}, headers=api.admin)
    ).json()
    other = {"Authorization": f"Bearer {api.other_secret_key}"}

    refused = await api.http.delete(f"/v1/tokens/{token['id']}", headers=other)

    assert (refused.status_code, refused.json()["type"]) == (404, "token_not_found")
    assert (await api.resume(token["token"])).status_code == 200
