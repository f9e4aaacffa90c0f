"""A skill holds a token reference, never the secret: whatever it does with one, no secret reaches its state."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from rejoinder.engine import (
    ConversationState,
    CustomerText,
    Engine,
    HttpResponse,
    IssueToken,
    StartEvent,
    TurnContext,
)
from rejoinder.integrations.http import with_token_secrets
from rejoinder.skills.model import Bot, BotConfig, Skill
from rejoinder.tokens import TokenRef, conceal, is_well_formed, mint, reveal

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECRET = re.compile(r"rjt_[A-Za-z0-9_-]{43}")


def make_bot(nodes: dict[str, Any], **variables: Any) -> Bot:
    skill = Skill.model_validate(
        {
            "id": "main",
            "start": "a",
            "triggers": {"events": ["main"], "default": True},
            "variables": {name: {"default": value} for name, value in variables.items()},
            "nodes": nodes,
        }
    )
    return Bot(config=BotConfig(id="test", env=["BACKEND"]), skills={skill.id: skill})


def ctx() -> TurnContext:
    return TurnContext(
        conversation_id="cnv_1", started_at=NOW, now=NOW, env={"BACKEND": "http://backend.test"}
    )


def fragments(secret: str) -> list[str]:
    """Pieces of a secret that any string derived from it would still show."""
    body = secret[len("rjt_") :]
    return [body[:12], body[-12:], body[::-1][:12], body.upper()[:12], body.lower()[:12]]


# ------------------------------------------------------------------------------------------ the reference


def test_a_reference_is_text_naming_the_token_by_its_public_id() -> None:
    token = mint()
    reference = TokenRef(token.token_id)
    assert reference == "tokref-" + token.token_id and reference.token_id == token.token_id
    assert token.secret not in reference and not SECRET.search(reference)
    assert json.dumps({"t": reference}) == json.dumps({"t": "tokref-" + token.token_id})


def test_reveal_and_conceal_touch_only_the_tokens_of_the_turn() -> None:
    mine, other = mint(), mint()
    secrets = {mine.token_id: mine.secret}
    text = f"a={TokenRef(mine.token_id)}&b={TokenRef(other.token_id)}&c=tokref-tok_nothex"
    revealed = reveal(text, secrets)
    assert revealed == f"a={mine.secret}&b=tokref-{other.token_id}&c=tokref-tok_nothex"
    assert conceal(revealed, secrets) == text
    assert conceal(other.secret, secrets) == other.secret  # not this turn's: not this function's business
    assert reveal(text, {}) == text


# ------------------------------------------------------------------------------ what a skill does with one

HOSTILE = [
    "{'t': generate_token()}",
    "[generate_token()]",
    "generate_token()|replace('rjt_','RJT:')",
    "generate_token()|replace('tokref-','')",
    "generate_token()|string",
    "str(generate_token())",
    "'x' ~ generate_token() ~ 'y'",
    "generate_token()|tojson",
    "generate_token()[4:]",
    "generate_token()[::-1]",
    "generate_token()|list",
    "generate_token()|list|join('-')",
    "generate_token()|upper",
    "generate_token()|urlencode",
    "generate_token()|reverse|join",
    "'%s'|format(generate_token())",
    "'{}'.format(generate_token())",
    "generate_token().replace('rjt_', '')",
    "generate_token().split('_')",
    "{'deep': [{'t': generate_token()}]}",
    "generate_token().token_id",
    "generate_token() ~ generate_token()",
]


@pytest.mark.parametrize("expression", HOSTILE)
def test_no_expression_turns_a_reference_into_its_secret(expression: str) -> None:
    nodes = {
        "a": {"type": "assign", "set": {"v": expression}, "next": "b"},
        "b": {"type": "message", "text": "value: {{ v }} / {{ v | tojson }}", "next": "c"},
        "c": {"type": "question", "text": "{{ v | string | upper }}", "save_to": "x"},
    }
    context = ctx()
    result = Engine(make_bot(nodes)).step(ConversationState(), StartEvent("main"), context)
    assert not result.errors
    assert context.token_secrets and all(isinstance(e, IssueToken) for e in result.effects)
    stored = json.dumps(result.state.to_json()) + json.dumps([m.to_payload() for m in result.messages])
    assert not SECRET.search(stored)
    for secret in context.token_secrets.values():
        for piece in fragments(secret):
            assert piece not in stored
    # What the skill made is made from the public reference.
    hexes = [token_id[len("tok_") :] for token_id in context.token_secrets]
    letters = re.sub(r"[^0-9a-z]", "", stored.lower())
    assert any(h[:8] in letters or h[::-1][:8] in letters for h in hexes)


def test_a_reference_stored_in_the_state_is_not_a_token() -> None:
    nodes = {"a": {"type": "assign", "set": {"t": "generate_token()"}, "next": "q"}}
    nodes["q"] = {"type": "question", "text": "?", "save_to": "x"}
    result = Engine(make_bot(nodes)).step(ConversationState(), StartEvent("main"), ctx())
    read_back = json.loads(json.dumps(result.state.to_json()))["variables"]["t"]
    assert read_back.startswith("tokref-tok_") and not is_well_formed(read_back)


# ------------------------------------------------------------------------------------ the Integrate request


def test_the_request_carries_the_secret_and_the_skill_keeps_the_reference() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"t": "generate_token()", "ts": "[generate_token()]"}, "next": "u"},
        "u": {"type": "assign", "set": {"link": "env.BACKEND ~ '/resume?token=' ~ t"}, "next": "call"},
        "call": {
            "type": "integrate",
            "method": "POST",
            "url": "{{ link }}&again={{ t | urlencode }}",
            "headers": {"Authorization": "Bearer {{ t }}"},
            "query": {"q": "{{ ts[0] }}"},
            "body": {"nested": {"t": "{{ t }}", "list": ["{{ ts[0] }}"]}, "n": 1},
            "next": "q",
        },
        "q": {"type": "question", "text": "Sent {{ t }}", "save_to": "x"},
    }
    engine = Engine(make_bot(nodes))
    context = ctx()
    first = engine.step(ConversationState(), StartEvent("main"), context)
    call = first.http_call
    assert call is not None and first.effects
    t_id, ts_id = [e.token_id for e in first.effects if isinstance(e, IssueToken)]
    t_secret, ts_secret = context.token_secrets[t_id], context.token_secrets[ts_id]
    shown = f"{call.url} {call.headers} {call.query} {call.json_body} {call!r}"
    assert not SECRET.search(shown)  # the engine's call, and its repr, hold references only

    sent = with_token_secrets(call)
    assert sent.url == f"http://backend.test/resume?token={t_secret}&again={t_secret}"
    assert sent.headers == {"Authorization": f"Bearer {t_secret}"}
    assert sent.query == {"q": ts_secret}
    assert sent.json_body == {"nested": {"t": t_secret, "list": [ts_secret]}, "n": 1}

    done = engine.step(first.state, HttpResponse(status=200, body={}), context)
    stored = json.dumps(done.state.to_json()) + json.dumps([m.to_payload() for m in done.messages])
    assert done.state.variables["link"] == f"http://backend.test/resume?token=tokref-{t_id}"
    assert not SECRET.search(stored) and not done.errors


def test_send_posts_the_secret_of_a_variable_that_holds_a_reference() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"RESUME_TOKEN": "{'t': generate_token()}"}, "next": "call"},
        "call": {
            "type": "integrate",
            "url": "{{ env.BACKEND }}/t",
            "method": "POST",
            "send": ["RESUME_TOKEN"],
        },
    }
    context = ctx()
    call = Engine(make_bot(nodes)).step(ConversationState(), StartEvent("main"), context).http_call
    assert call is not None
    [secret] = context.token_secrets.values()
    assert with_token_secrets(call).json_body == {"RESUME_TOKEN": {"t": secret}}


def test_a_reference_from_an_earlier_turn_is_sent_as_is_and_reported() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"t": "generate_token()"}, "next": "q"},
        "q": {"type": "question", "text": "Ready?", "save_to": "x", "next": "call"},
        "call": {"type": "integrate", "url": "{{ env.BACKEND }}/t?token={{ t }}", "next": "end"},
        "end": {"type": "end"},
    }
    engine = Engine(make_bot(nodes))
    first = engine.step(ConversationState(), StartEvent("main"), ctx())
    [issue] = first.effects
    assert isinstance(issue, IssueToken)
    stored = ConversationState.from_json(json.loads(json.dumps(first.state.to_json())))
    later = engine.step(stored, CustomerText("yes"), ctx())
    assert later.http_call is not None and not later.effects
    sent = with_token_secrets(later.http_call)
    assert sent.url == f"http://backend.test/t?token=tokref-{issue.token_id}"
    assert any("which this turn did not make" in error and issue.token_id in error for error in later.errors)
