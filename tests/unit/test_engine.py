"""The sans-I/O engine: every node type, questions, Integrate round trips, tokens, budgets."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from rejoinder.engine import (
    CloseConversation,
    ConversationClosed,
    ConversationState,
    CustomerChoice,
    CustomerText,
    Engine,
    HandledFault,
    HttpResponse,
    InvalidChoice,
    IssueToken,
    StartEvent,
    StepResult,
    UnknownEvent,
    VariableNotSettable,
)
from rejoinder.engine.runtime import FALLBACK_REPLY
from rejoinder.tokens import TokenRef, hash_token, is_well_formed
from tests.helpers.engine import ctx, make_bot, skill, texts


def run(
    engine: Engine, *inputs: Any, state: ConversationState | None = None
) -> tuple[ConversationState, list[StepResult]]:
    state = state or ConversationState()
    results = []
    for event in inputs:
        result = engine.step(state, event, ctx())
        results.append(result)
        state = result.state
    return state, results


def test_message_assign_condition_end_walk_in_one_step() -> None:
    bot = make_bot(
        skill(
            {
                "a": {"type": "message", "text": "Hello {{ name }}", "next": "b"},
                "b": {"type": "assign", "set": {"count": "count + 2", "label": "'n=' ~ count"}, "next": "c"},
                "c": {"type": "condition", "branches": [{"if": "count > 2", "next": "big"}], "else": "small"},
                "big": {"type": "end", "text": "big {{ label }}"},
                "small": {"type": "end", "text": "small"},
            },
            variables={"count": {"default": 1}, "name": {"default": "Ann"}},
        )
    )
    state, [result] = run(Engine(bot), StartEvent("main"))
    assert texts(result) == ["Hello Ann", "big n=3"]
    assert state.variables["count"] == 3
    assert state.skill_id is None and state.waiting == "nothing"
    assert result.pending is None


def test_question_waits_then_saves_answer_and_continues() -> None:
    bot = make_bot(
        skill(
            {
                "a": {"type": "question", "text": "Your name?", "save_to": "name", "next": "b"},
                "b": {"type": "message", "text": "Nice to meet you, {{ name }}."},
            }
        )
    )
    engine = Engine(bot)
    state, [first, second] = run(engine, StartEvent("main"), CustomerText("  Ada "))
    assert texts(first) == ["Your name?"]
    assert first.pending is not None and first.pending.node == "a" and first.pending.input == "text"
    assert first.state.waiting == "customer"
    assert texts(second) == ["Nice to meet you, Ada."]
    assert state.variables["name"] == "Ada"
    assert engine.pending(state) is None


def test_choices_by_click_label_or_value_case_insensitive() -> None:
    nodes = {
        "a": {
            "type": "question",
            "text": "Pick",
            "save_to": "pick",
            "choices": [{"label": "Red wine", "value": "red", "next": "r"}, {"label": "Water", "next": "w"}],
        },
        "r": {"type": "message", "text": "red"},
        "w": {"type": "message", "text": "water"},
    }
    engine = Engine(make_bot(skill(nodes)))
    first = engine.step(ConversationState(), StartEvent("main"), ctx())
    assert first.messages[0].type == "buttons"
    assert first.messages[0].buttons == [
        {"label": "Red wine", "value": "red"},
        {"label": "Water", "value": "Water"},
    ]
    assert first.pending is not None and first.pending.input == "choice"
    for answer, expected in [
        (CustomerChoice("red"), "red"),
        (CustomerText(" RED WINE "), "red"),
        (CustomerText("water"), "water"),
    ]:
        result = engine.step(first.state, answer, ctx())
        assert texts(result) == [expected]
    with pytest.raises(InvalidChoice):
        engine.step(first.state, CustomerChoice("beer"), ctx())


def test_unmatched_text_at_choices_goes_to_else_when_present() -> None:
    nodes = {
        "a": {
            "type": "question",
            "text": "Pick",
            "save_to": "pick",
            "choices": [{"label": "A", "next": "x"}],
            "else": "other",
        },
        "x": {"type": "message", "text": "x"},
        "other": {"type": "message", "text": "you said {{ pick }}"},
    }
    _state, [_, result] = run(Engine(make_bot(skill(nodes))), StartEvent("main"), CustomerText("something"))
    assert texts(result) == ["you said something"]


@pytest.mark.parametrize(
    ("kind", "bad", "good", "saved"),
    [
        ("number", "many", "42", 42),
        ("number", "4 2", "3.5", 3.5),
        ("email", "ada-at-example", "ada@example.org", "ada@example.org"),
        ({"regex": "[0-9]{4}"}, "12345", "1234", "1234"),
    ],
)
def test_input_kinds_reask_then_accept(kind: Any, bad: str, good: str, saved: Any) -> None:
    nodes = {
        "a": {
            "type": "question",
            "text": "Q?",
            "save_to": "v",
            "input": kind,
            "retry_text": "Again?",
            "next": "b",
        },
        "b": {"type": "message", "text": "ok"},
    }
    state, [_, retry, done] = run(
        Engine(make_bot(skill(nodes))), StartEvent("main"), CustomerText(bad), CustomerText(good)
    )
    assert texts(retry) == ["Again?"]
    assert retry.pending is not None and retry.pending.node == "a"
    assert texts(done) == ["ok"]
    assert state.variables["v"] == saved


def test_max_retries_routes_to_on_invalid() -> None:
    nodes = {
        "a": {
            "type": "question",
            "text": "Number?",
            "save_to": "n",
            "input": "number",
            "max_retries": 1,
            "on_invalid": "give_up",
        },
        "give_up": {"type": "message", "text": "Let's move on."},
    }
    _, results = run(Engine(make_bot(skill(nodes))), StartEvent("main"), CustomerText("x"), CustomerText("y"))
    assert texts(results[1]) == ["Number?"]  # no retry_text: the question is asked again
    assert texts(results[2]) == ["Let's move on."]
    assert results[2].state.waiting == "nothing"


def test_integrate_emits_call_and_applies_response() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"tok": "generate_token()"}, "next": "call"},
        "call": {
            "type": "integrate",
            "method": "post",
            "url": "{{ env.BACKEND }}/resume",
            "headers": {"X-Conv": "{{ conversation.id }}"},
            "send": ["tok", "who"],
            "save": {"data.login_url": "login_url", "$.missing.path": "nothing"},
            "save_status": "status",
            "timeout": 3,
            "retries": 2,
            "on_error": "down",
            "next": "ok",
        },
        "ok": {"type": "message", "text": "Go to {{ login_url }} ({{ status }})"},
        "down": {"type": "message", "text": "down {{ status }}"},
    }
    bot = make_bot(skill(nodes, variables={"who": {"default": "ann"}}))
    engine = Engine(bot)
    first = engine.step(ConversationState(), StartEvent("main"), ctx(env={"BACKEND": "http://127.0.0.1:9"}))
    call = first.http_call
    assert call is not None and first.state.waiting == "http"
    assert (call.method, call.url, call.timeout, call.retries) == ("POST", "http://127.0.0.1:9/resume", 3, 2)
    assert call.headers == {"X-Conv": "cnv_1"}
    reference = call.json_body["tok"]
    assert call.json_body["who"] == "ann" and isinstance(reference, TokenRef)
    secret = call.token_secrets[reference.token_id]  # only the request builder puts it in the body
    assert is_well_formed(secret) and secret not in json.dumps(call.json_body)
    [issue] = first.effects
    assert isinstance(issue, IssueToken) and issue.token_hash == hash_token(secret)
    assert issue.ttl_seconds == 24 * 3600

    done = engine.step(first.state, HttpResponse(status=200, body={"data": {"login_url": "/login"}}), ctx())
    assert texts(done) == ["Go to /login (200)"]
    assert done.state.variables["nothing"] is None
    failed = engine.step(first.state, HttpResponse(status=503, body="busy"), ctx())
    assert texts(failed) == ["down 503"]
    timed_out = engine.step(first.state, HttpResponse(error="timed out after 3 s"), ctx())
    assert texts(timed_out) == ["down "]  # no status: null renders as empty text, never "None"
    assert timed_out.errors and "timed out" in timed_out.errors[0]


def test_failed_call_without_on_error_says_so_and_ends_skill() -> None:
    nodes = {"a": {"type": "integrate", "url": "http://127.0.0.1:9/x", "next": "b"}, "b": {"type": "end"}}
    engine = Engine(make_bot(skill(nodes)))
    first = engine.step(ConversationState(), StartEvent("main"), ctx())
    result = engine.step(first.state, HttpResponse(status=None, error="connection refused"), ctx())
    assert texts(result) == [FALLBACK_REPLY] and result.messages[0].sender == "system"
    assert result.state.skill_id is None


def test_integrate_body_template_tree() -> None:
    nodes = {
        "a": {
            "type": "integrate",
            "method": "PUT",
            "url": "http://127.0.0.1:9/x",
            "body": {"name": "{{ who | upper }}", "tags": ["a", "{{ who }}"], "n": 3},
        }
    }
    engine = Engine(make_bot(skill(nodes, variables={"who": {"default": "ann"}})))
    call = engine.step(ConversationState(), StartEvent("main"), ctx()).http_call
    assert call is not None and call.json_body == {"name": "ANN", "tags": ["a", "ann"], "n": 3}


def test_token_secret_is_not_persisted_in_state() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"tok": "generate_token('15m', 2)"}, "next": "q"},
        "q": {"type": "question", "text": "Code sent.", "save_to": "x"},
    }
    result = Engine(make_bot(skill(nodes))).step(ConversationState(), StartEvent("main"), ctx())
    [issue] = result.effects
    assert isinstance(issue, IssueToken) and issue.ttl_seconds == 900 and issue.max_uses == 2
    assert result.state.variables["tok"] == "tokref-" + issue.token_id
    assert "rjt_" not in json.dumps(result.state.to_json())


def test_generate_token_bad_ttl_is_a_skill_error_not_a_crash() -> None:
    nodes = {"a": {"type": "assign", "set": {"tok": "generate_token('soon')"}}}
    result = Engine(make_bot(skill(nodes))).step(ConversationState(), StartEvent("main"), ctx())
    assert texts(result) == [FALLBACK_REPLY]
    assert "generate_token" in result.errors[0]
    assert result.effects == []


def test_jump_across_skills_with_defaults() -> None:
    main = skill({"a": {"type": "jump", "skill": "other", "node": "y"}})
    other = skill(
        {"x": {"type": "message", "text": "x"}, "y": {"type": "message", "text": "y={{ v }}"}},
        id="other",
        start="x",
        variables={"v": {"default": 7}},
    )
    _state, [result] = run(Engine(make_bot(main, other)), StartEvent("main"))
    assert texts(result) == ["y=7"]


def test_runaway_loop_is_stopped_by_the_step_budget() -> None:
    nodes = {
        "a": {"type": "assign", "set": {"i": "i + 1"}, "next": "b"},
        "b": {"type": "jump", "to": "a"},
    }
    engine = Engine(make_bot(skill(nodes, variables={"i": {"default": 0}})), step_budget=100)
    result = engine.step(ConversationState(), StartEvent("main"), ctx())
    assert texts(result) == [FALLBACK_REPLY]
    assert "ran 100 nodes without waiting" in result.errors[0]
    assert result.state.skill_id is None  # the conversation is not stuck


def test_bad_expression_at_run_time_ends_the_skill_with_a_clear_error() -> None:
    nodes = {"a": {"type": "condition", "branches": [{"if": "missing_var > 3", "next": "a"}]}}
    result = Engine(make_bot(skill(nodes))).step(ConversationState(), StartEvent("main"), ctx())
    assert texts(result) == [FALLBACK_REPLY]
    assert "missing_var" in result.errors[0]


def test_default_skill_answers_free_text_and_unknown_event_is_refused() -> None:
    engine = Engine(make_bot(skill({"a": {"type": "message", "text": "default here"}})))
    result = engine.step(ConversationState(), CustomerText("hi"), ctx())
    assert texts(result) == ["default here"]
    with pytest.raises(UnknownEvent, match="nope"):
        engine.step(ConversationState(), StartEvent("nope"), ctx())


def test_only_settable_variables_can_be_preset() -> None:
    bot = make_bot(
        skill(
            {"a": {"type": "message", "text": "{{ name }}"}},
            variables={"name": {"default": "", "settable": True}, "secret": {"default": 1}},
        )
    )
    engine = Engine(bot)
    assert texts(engine.step(ConversationState(), StartEvent("main", {"name": "Bo"}), ctx())) == ["Bo"]
    with pytest.raises(VariableNotSettable, match="secret"):
        engine.step(ConversationState(), StartEvent("main", {"secret": 2}), ctx())


def test_end_close_closes_the_conversation() -> None:
    engine = Engine(make_bot(skill({"a": {"type": "end", "text": "bye", "close": True}})))
    result = engine.step(ConversationState(), StartEvent("main"), ctx())
    assert result.state.status == "closed"
    assert any(isinstance(e, CloseConversation) for e in result.effects)
    with pytest.raises(ConversationClosed):
        engine.step(result.state, CustomerText("hello?"), ctx())


def test_message_list_and_buttons() -> None:
    nodes = {
        "a": {
            "type": "message",
            "messages": ["one", "two {{ 1 + 1 }}"],
            "buttons": [
                {"label": "Docs", "url": "https://example.org/{{ 'x' }}"},
                {"label": "Again", "value": "again"},
            ],
        }
    }
    result = Engine(make_bot(skill(nodes))).step(ConversationState(), StartEvent("main"), ctx())
    assert texts(result) == ["one", "two 2"]
    assert result.messages[0].buttons is None
    assert result.messages[1].buttons == [
        {"label": "Docs", "url": "https://example.org/x"},
        {"label": "Again", "value": "again"},
    ]


def test_state_round_trips_through_json_and_input_is_not_mutated() -> None:
    engine = Engine(
        make_bot(
            skill({"a": {"type": "question", "text": "?", "save_to": "x", "next": "b"}, "b": {"type": "end"}})
        )
    )
    start = ConversationState()
    first = engine.step(start, StartEvent("main"), ctx())
    assert start.waiting == "nothing"  # the caller's state is untouched
    restored = ConversationState.from_json(first.state.to_json())
    assert restored == first.state
    assert engine.step(restored, CustomerText("y"), ctx()).state.variables["x"] == "y"


def test_now_comes_from_the_turn_clock() -> None:
    engine = Engine(
        make_bot(skill({"a": {"type": "message", "text": "{{ now().year }}-{{ conversation.id }}"}}))
    )
    assert texts(engine.step(ConversationState(), StartEvent("main"), ctx())) == ["2026-cnv_1"]


def test_a_huge_token_ttl_from_a_customer_variable_is_a_skill_error() -> None:
    nodes = {"a": {"type": "assign", "set": {"tok": "generate_token(ttl=ttl)"}}}
    bot = make_bot(skill(nodes, variables={"ttl": {"default": "1h", "settable": True}}))
    result = Engine(bot).step(ConversationState(), StartEvent("main", {"ttl": "9999999d"}), ctx())
    assert texts(result) == [FALLBACK_REPLY] and "at most 10 years" in result.errors[0]
    assert result.effects == []


def test_pending_of_a_question_the_bot_no_longer_has_is_none() -> None:
    engine = Engine(make_bot(skill({"a": {"type": "question", "text": "?", "save_to": "x"}})))
    waiting = engine.step(ConversationState(), StartEvent("main"), ctx()).state
    assert engine.pending(waiting) is not None
    gone = ConversationState(skill_id="main", node_id="removed", waiting="customer")
    assert engine.pending(gone) is None
    assert engine.pending(ConversationState(skill_id="old_skill", node_id="a", waiting="customer")) is None


def test_a_state_serialises_every_field_and_round_trips() -> None:
    state = ConversationState(
        variables={"name": "Zoë", "orders": [{"id": "A-1"}]},
        skill_id="orders",
        node_id="ask",
        waiting="customer",
        retries=2,
        status="active",
        bot_version="v3",
    )

    data = state.to_json()

    assert set(data) == {field.name for field in dataclasses.fields(ConversationState)}
    assert ConversationState.from_json(json.loads(json.dumps(data))) == state


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
def test_max_retries_counts_the_times_the_question_is_asked_again(max_retries: int) -> None:
    """``max_retries: n``: n invalid answers are each asked again; invalid answer n + 1 goes to ``on_invalid``."""
    nodes = {
        "a": {
            "type": "question",
            "text": "Number?",
            "retry_text": "A number, please.",
            "save_to": "n",
            "input": "number",
            "max_retries": max_retries,
            "on_invalid": "give_up",
        },
        "give_up": {"type": "message", "text": "Let's move on."},
    }
    engine = Engine(make_bot(skill(nodes)))
    wrong = [CustomerText(f"wrong {i}") for i in range(max_retries + 1)]
    state, results = run(engine, StartEvent("main"), *wrong)
    for retry in results[1:-1]:
        assert texts(retry) == ["A number, please."]
        assert retry.pending is not None and retry.pending.node == "a"
    assert texts(results[-1]) == ["Let's move on."]
    assert state.waiting == "nothing"

    # One invalid answer fewer, and a valid one still counts.
    state, results = run(engine, StartEvent("main"), *wrong[:-1], CustomerText("7"))
    assert state.variables["n"] == 7
    assert "Let's move on." not in texts(results[-1])


def test_a_failed_call_handled_by_on_error_is_marked_handled_and_never_says_status_none() -> None:
    nodes = {
        "a": {"type": "integrate", "url": "http://127.0.0.1:9/x", "on_error": "down", "next": "b"},
        "down": {"type": "message", "text": "The shop is not answering."},
        "b": {"type": "end"},
    }
    engine = Engine(make_bot(skill(nodes)))
    first = engine.step(ConversationState(), StartEvent("main"), ctx())
    handled = engine.step(first.state, HttpResponse(status=None), ctx())
    assert texts(handled) == ["The shop is not answering."]
    [fault] = handled.errors
    assert isinstance(fault, HandledFault)
    assert fault == "node 'a': outside call failed: no response"

    unhandled_nodes = {
        "a": {"type": "integrate", "url": "http://127.0.0.1:9/x", "next": "b"},
        "b": {"type": "end"},
    }
    engine = Engine(make_bot(skill(unhandled_nodes)))
    first = engine.step(ConversationState(), StartEvent("main"), ctx())
    unhandled = engine.step(first.state, HttpResponse(status=502), ctx())
    [fault] = unhandled.errors
    assert not isinstance(fault, HandledFault) and fault == "node 'a': outside call failed: status 502"


def test_an_integrate_node_that_cannot_be_built_goes_to_on_error_marked_handled() -> None:
    nodes = {
        "a": {"type": "integrate", "url": "http://127.0.0.1:9/{{ 1 / 0 }}", "on_error": "down", "next": "b"},
        "down": {"type": "message", "text": "Not now."},
        "b": {"type": "end"},
    }
    result = Engine(make_bot(skill(nodes))).step(ConversationState(), StartEvent("main"), ctx())
    assert texts(result) == ["Not now."]
    [fault] = result.errors
    assert isinstance(fault, HandledFault) and "division by zero" in fault
