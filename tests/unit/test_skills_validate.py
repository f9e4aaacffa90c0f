"""The validator's rules (SKILLS.md, "Validation"), each on a skill or bot broken in one way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml

from rejoinder.skills import Bot, BotConfig, Problem, Skill, check_bot, check_paths, parse_skill, validate_bot
from rejoinder.skills.model import EndNode, Expression, Flaw, NodeBase, Triggers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "skills"
BROKEN = FIXTURES / "broken"
BOTS = FIXTURES / "bots"


def found(problems: list[Problem]) -> list[tuple[str, int | None, str | None, str]]:
    return [(p.severity, p.line, p.node, p.message) for p in problems]


def check_text(text: str) -> list[tuple[str, int | None, str | None, str]]:
    return found(parse_skill(text, filename="skill.yaml")[1])


def bot_problems(name: str) -> list[tuple[str, str, int | None, str | None, str]]:
    bot, problems = check_bot(BOTS / name)
    assert bot is None or all(not p.is_error for p in problems)
    return [(Path(p.file or "").name, p.severity, p.line, p.node, p.message) for p in problems]


# ------------------------------------------------------------------------------------------ one rule per fixture


SKILL_FIXTURES = [
    (
        "missing_target.yaml",
        [
            (
                "error",
                13,
                "after_login",
                "branches[0].next: no node 'welcom_back' in this skill (did you mean 'welcome_back'?)",
            ),
            ("warning", 15, "welcome_back", "unreachable: no path leads here from start 'wait_login'"),
        ],
    ),
    (
        "question_without_save_to.yaml",
        [("error", 4, "ask", "a question needs 'save_to': the variable that keeps the customer's answer")],
    ),
    (
        "bad_expression.yaml",
        [("error", 9, "count", "set.total: invalid expression 'price *': unexpected 'end of template'")],
    ),
    (
        "bad_condition.yaml",
        [
            (
                "error",
                12,
                "after_login",
                """branches[0].if: invalid expression 'resume_reply = "RESUME"': chunk after expression""",
            )
        ],
    ),
    (
        "bad_template.yaml",
        [("error", 8, "greet", """text: invalid template "Hi {{ user_name or 'there' }!": unexpected '}'""")],
    ),
    (
        "endless_loop.yaml",
        [
            (
                "error",
                4,
                "remind",
                "can loop forever without waiting for the customer: remind → again → remind (no question on the way)",
            )
        ],
    ),
    ("unreachable.yaml", [("warning", 8, "goodbye", "unreachable: no path leads here from start 'greet'")]),
    (
        "undefined_variable.yaml",
        [("warning", 16, "send", "text: variable 'login_ur' is never set (did you mean 'login_url'?)")],
    ),
    (
        "read_only_variable.yaml",
        [("error", 7, "ask", "save_to: 'user' is built in and read-only; choose another name")],
    ),
]


@pytest.mark.parametrize(("name", "expected"), SKILL_FIXTURES, ids=[name for name, _ in SKILL_FIXTURES])
def test_a_skill_broken_one_way(name: str, expected: list[tuple[str, int, str, str]]) -> None:
    skill, problems = parse_skill((BROKEN / name).read_text(), filename=name)
    assert found(problems) == expected
    assert {p.skill for p in problems} == {yaml.safe_load((BROKEN / name).read_text())["id"]}
    assert (skill is None) == any(p.is_error for p in problems)


def test_triggers_that_collide_across_skills() -> None:
    help_file = BOTS / "trigger_clash" / "skills" / "help.yaml"
    assert bot_problems("trigger_clash") == [
        (
            "support.yaml",
            "error",
            3,
            None,
            f"triggers: event 'help' already starts skill 'help' ({help_file})",
        ),
        (
            "support.yaml",
            "error",
            4,
            None,
            f"triggers: skill 'help' ({help_file}) is already the default skill; only one skill may have default: true",
        ),
    ]


def test_jumps_to_unknown_skills_and_nodes() -> None:
    assert bot_problems("bad_jumps") == [
        (
            "menu.yaml",
            "error",
            15,
            "to_orders",
            "node: skill 'orders' has no node 'list_order' (did you mean 'list_orders'?)",
        ),
        (
            "menu.yaml",
            "error",
            18,
            "to_returns",
            "skill: no skill 'retruns' in this bot (skills: menu, orders)",
        ),
    ]


def test_a_loop_through_jumps_between_skills() -> None:
    assert bot_problems("loop_across_skills") == [
        (
            "ping.yaml",
            "error",
            5,
            "say_ping",
            "can loop forever without waiting for the customer: "
            "say_ping → to_pong → pong.say_pong → pong.to_ping → say_ping (no question on the way)",
        )
    ]


def test_env_names_the_bot_does_not_allow() -> None:
    assert bot_problems("env_not_allowed") == [
        (
            "orders.yaml",
            "error",
            9,
            "fetch",
            "headers.Authorization: env.SHOP_API_KEY is not allowed by the bot's config (allowed: SHOP_BACKEND)",
        )
    ]


# ------------------------------------------------------------------------------------------ expressions


def test_every_template_and_expression_field_is_compiled() -> None:
    text = """\
id: fields
start: m
nodes:
  m:
    type: message
    messages: ["ok", "{{ broken"]
    buttons:
      - {label: "{{ x", url: "https://a/{{ y"}
    next: q
  q:
    type: question
    text: ok
    retry_text: "{% if %}"
    save_to: a
    next: i
  i:
    type: integrate
    url: "{{ }}"
    headers: {X-Key: "{{ (}}"}
    query: {page: "{{ ) }}"}
    body: {nested: ["{{ ]] }}"]}
    next: e
  e:
    type: end
    text: "{{ 1 + }}"
"""
    where = [(line, message.split(":", 1)[0]) for _, line, _, message in check_text(text)]
    assert where == [
        (6, "messages[1]"),
        (8, "buttons[0].label"),
        (8, "buttons[0].url"),
        (13, "retry_text"),
        (18, "url"),
        (19, "headers.X-Key"),
        (20, "query.page"),
        (21, "body.nested[0]"),
        (25, "text"),
    ]


def test_functions_builtins_filters_and_loop_variables_are_not_undefined() -> None:
    text = """\
id: fine
start: a
variables:
  items: {default: []}
nodes:
  a:
    type: assign
    set:
      token: generate_token(ttl="15m")
      stamp: now()
      who: user.name
      ref: conversation.id
      count: len(items)
    next: show
  show:
    type: message
    text: "{% for item in items %}{{ loop.index }}. {{ item | upper }}{% endfor %} {{ token }} {{ stamp }}"
    next: done
  done:
    type: end
"""
    assert check_text(text) == []


def test_variables_set_by_questions_and_integrate_are_known() -> None:
    text = """\
id: lookup
start: ask
nodes:
  ask:
    type: question
    text: "Order number?"
    input: number
    save_to: order_number
    next: fetch
  fetch:
    type: integrate
    method: POST
    url: "https://shop.example/orders"
    send: [order_number, tracking_code]
    save: {order.status: status}
    save_status: http_status
    next: tell
  tell:
    type: end
    text: "{{ status }} ({{ http_status }})"
"""
    assert check_text(text) == [
        (
            "warning",
            14,
            "fetch",
            "send[1]: variable 'tracking_code' is never set "
            "(declare it under 'variables:' or set it with an assign, a save_to or a save)",
        ),
    ]


def test_variables_are_shared_by_all_skills_of_a_bot(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    (bot / "skills").mkdir(parents=True)
    (bot / "rejoinder.yaml").write_text("id: bot\n")
    (bot / "skills" / "a.yaml").write_text(
        "id: a\ntriggers: {default: true}\nstart: ask\nnodes:\n"
        "  ask: {type: question, text: 'Name?', save_to: name, next: go}\n"
        "  go: {type: jump, skill: b}\n"
    )
    (bot / "skills" / "b.yaml").write_text(
        "id: b\nstart: hi\nnodes:\n  hi: {type: end, text: 'Hi {{ name }}'}\n"
    )
    loaded, problems = check_bot(bot)
    assert problems == []
    assert loaded is not None


def test_env_through_brackets_and_a_bot_without_env(tmp_path: Path) -> None:
    skill = Skill.model_validate(
        {
            "id": "s",
            "start": "e",
            "nodes": {"e": {"type": "end", "text": "{{ env['SHOP_BACKEND'] }}"}},
        }
    )
    bot = Bot(config=BotConfig(id="b"), skills={"s": skill})
    assert [(p.node, p.line, p.message) for p in validate_bot(bot)] == [
        (
            "e",
            None,
            "text: env.SHOP_BACKEND is not allowed by the bot's config "
            "(allowed: none; list it under env: in rejoinder.yaml)",
        )
    ]


# ------------------------------------------------------------------------------------------ loops and reachability


def make_skill(nodes: dict[str, Any], start: str = "a", skill_id: str = "s") -> Skill:
    return Skill.model_validate({"id": skill_id, "start": start, "nodes": nodes})


def test_a_cycle_through_a_question_waits_and_is_fine() -> None:
    skill = make_skill(
        {
            "a": {"type": "question", "text": "?", "save_to": "x", "next": "b"},
            "b": {"type": "message", "text": "again", "next": "a"},
        }
    )
    assert validate_bot(Bot(config=BotConfig(id="b"), skills={"s": skill})) == []


def test_a_counting_loop_without_a_question_is_reported() -> None:
    skill = make_skill(
        {
            "a": {"type": "assign", "set": {"i": "0"}, "next": "b"},
            "b": {"type": "assign", "set": {"i": "i + 1"}, "next": "c"},
            "c": {"type": "condition", "branches": [{"if": "i < 3", "next": "b"}], "else": "d"},
            "d": {"type": "end"},
        }
    )
    problems = validate_bot(Bot(config=BotConfig(id="b"), skills={"s": skill}))
    assert [(p.node, p.message) for p in problems] == [
        ("b", "can loop forever without waiting for the customer: b → c → b (no question on the way)")
    ]


def test_a_node_jumping_to_itself_and_a_jump_back_into_the_own_skill() -> None:
    skill = make_skill(
        {
            "a": {"type": "message", "text": "x", "next": "b"},
            "b": {"type": "jump", "skill": "s", "node": "a"},
            "c": {"type": "jump", "to": "c"},
        }
    )
    problems = validate_bot(Bot(config=BotConfig(id="b"), skills={"s": skill}))
    assert [(p.severity, p.node, p.message) for p in problems] == [
        (
            "error",
            "a",
            "can loop forever without waiting for the customer: a → b → a (no question on the way)",
        ),
        ("warning", "c", "unreachable: no path leads here from start 'a'"),
        ("error", "c", "can loop forever without waiting for the customer: c → c (no question on the way)"),
    ]


def test_a_node_entered_by_another_skill_is_reachable() -> None:
    menu = make_skill(
        {
            "a": {"type": "question", "text": "?", "save_to": "x", "next": "b"},
            "b": {"type": "jump", "skill": "t", "node": "late"},
        },
    )
    target = make_skill(
        {"first": {"type": "end"}, "late": {"type": "end", "text": "entered here"}}, "first", "t"
    )
    problems = validate_bot(Bot(config=BotConfig(id="b"), skills={"s": menu, "t": target}))
    assert problems == []


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    count = 3000
    nodes = {f"n{i}": {"type": "message", "text": "x", "next": f"n{i + 1}"} for i in range(count)}
    nodes[f"n{count}"] = {"type": "jump", "to": "n0"}
    problems = validate_bot(Bot(config=BotConfig(id="b"), skills={"s": make_skill(nodes, "n0")}))
    assert len(problems) == 1
    assert problems[0].message.startswith("can loop forever without waiting for the customer: n0 → n1 → n2")


def test_missing_start_is_reported_once_without_unreachable_noise() -> None:
    text = "id: s\nstart: begin\nnodes:\n  bgin: {type: end}\n  other: {type: end}\n"
    assert check_text(text) == [
        ("error", 2, None, "start: no node 'begin' in this skill (did you mean 'bgin'?)")
    ]


def test_a_malformed_save_path_is_an_error_on_its_line(tmp_path: Path) -> None:
    skill_file = tmp_path / "call.yaml"
    skill_file.write_text(
        "id: call\nstart: a\nnodes:\n  a:\n    type: integrate\n    url: http://127.0.0.1:9/x\n"
        "    save: {'data[': result}\n"
    )
    [problem] = [p for p in check_paths([skill_file]) if p.is_error]
    assert problem.line == 7 and problem.node == "a" and "data[" in problem.message


class ApprovalNode(NodeBase):
    """A node type the validator has never seen: it waits for a person to approve, and must say who."""

    type: Literal["approval"] = "approval"
    approver: str | None = None
    request: str
    next: str | None = None

    waits_for_customer: ClassVar[bool] = True

    def expressions(self) -> Iterator[Expression]:
        yield Expression(("request",), self.request, True)

    def flaws(self) -> Iterator[Flaw]:
        if self.approver is None:
            yield Flaw(("approver",), "an approval needs 'approver': who is asked")


def test_a_new_node_type_is_validated_by_what_it_states_of_itself() -> None:
    nodes = {
        "ask": ApprovalNode(request="Approve {{ order", next="again"),
        "again": ApprovalNode(approver="boss", request="Still?", next="ask"),
        "lost": EndNode(type="end"),
    }
    # The skill model lists the node types the language has; a new one is put into a skill without it.
    skill = Skill.model_construct(id="s", start="ask", nodes=nodes, triggers=Triggers(), variables={})
    problems = validate_bot(Bot(config=BotConfig(id="b"), skills={"s": skill}))
    found = [(p.severity, p.node, p.message.split(":")[0]) for p in problems]
    # Its own flaw and its broken template are errors; the cycle waits, so it is no endless loop.
    assert found == [
        ("error", "ask", "an approval needs 'approver'"),
        ("error", "ask", "request"),
        ("warning", "lost", "unreachable"),
    ]


def test_each_node_type_reports_its_own_flaws() -> None:
    skill = make_skill(
        {
            "a": {"type": "question", "text": "?", "next": "b"},
            "b": {"type": "integrate", "url": "http://127.0.0.1:9/", "save": {"ok": "v", "x[": "w"}},
        }
    )
    assert [
        (p.node, p.message.split(":")[0])
        for p in validate_bot(Bot(config=BotConfig(id="b"), skills={"s": skill}))
    ] == [
        ("a", "a question needs 'save_to'"),
        ("b", "save"),
    ]


# ------------------------------------------------------------------------------------------ bad names and literals


def one_node_skill(node: str) -> str:
    """A skill whose only node (``n``, at line 4) is ``node``, indented under it."""
    return "id: s\nstart: n\nnodes:\n  n:\n" + "".join(f"    {line}\n" for line in node.splitlines())


@pytest.mark.parametrize(
    ("node", "line", "message"),
    [
        (
            "type: message\ntext: '{{ x | shout }}'",
            6,
            "text: invalid template '{{ x | shout }}': No filter named",
        ),
        (
            "type: message\ntext: '{% if x %}{{ x | shout }}{% endif %}'",
            6,
            "no filter named 'shout'",
        ),
        (
            "type: condition\nbranches:\n  - if: y is truthy\n    next: n\nelse: n",
            7,
            "branches[0].if: invalid expression 'y is truthy': No test named 'truthy'",
        ),
        (
            "type: message\ntext: '{% if x %}{{ x is truthy }}{% endif %}'",
            6,
            "no test named 'truthy'",
        ),
        ('type: assign\nset:\n  t: make_token(ttl="30m")', 7, "no function named 'make_token'"),
        ("type: assign\nset:\n  t: uper(x)", 7, "no function named 'uper' (did you mean 'upper'?)"),
        (
            'type: assign\nset:\n  t: generate_token(ttl="30 minutes")',
            7,
            "set.t: generate_token(ttl='30 minutes'): expected a duration such as '15m'",
        ),
        (
            "type: assign\nset:\n  t: generate_token('15m', 0)",
            7,
            "generate_token(uses=0): uses must be a whole",
        ),
        (
            "type: assign\nset:\n  t: matches(x, '(a)\\\\1')",
            7,
            "matches(): invalid regular expression '(a)\\\\1': invalid escape sequence: \\1 (backreferences",
        ),
        ("type: assign\nset:\n  t: \"x | matches('(?=a)')\"", 7, "(lookarounds are not supported)"),
        ("type: assign\nset:\n  2fa: '1'", 7, "set.2fa: '2fa' is not a valid variable name"),
        (
            "type: integrate\nurl: https://api.test/x\nsave:\n  data.id: order-id",
            8,
            "save.data.id: 'order-id' is not a valid variable name",
        ),
        ("type: question\ntext: Hi\nsave_to: not", 7, "save_to: 'not' is not a valid variable name"),
        ("type: assign\nset:\n  t: " + "(" * 1000 + "1" + ")" * 1000, 7, "nested too deeply"),
        ("type: assign\nset:\n  t: " + "+".join(["1"] * 3000), 7, "nested too deeply"),
        ("type: message\ntext: '{{ " + "[" * 1000 + "]" * 1000 + " }}'", 6, "nested too deeply"),
    ],
)
def test_a_skill_that_would_fail_at_run_time_is_an_error_at_its_line(
    node: str, line: int, message: str
) -> None:
    found = check_text(one_node_skill(node))
    problems = [
        p for p in found if p[0] == "error" and "can loop forever" not in p[3]
    ]  # a lone condition loops
    assert len(problems) == 1, problems
    _, found_line, found_node, found_message = problems[0]
    assert (found_line, found_node) == (line, "n")
    assert message in found_message


def test_literals_that_run_are_not_reported() -> None:
    node = (
        "type: assign\nset:\n"
        "  t: generate_token(ttl='15m', uses=3)\n"
        "  u: generate_token(ttl=ttl_var)\n"
        "  m: matches(x, '^[0-9]{4}$') and x | matches('\\\\d')\n"
        "  order_id: '1'\n"
        "  x: '1'\n"
        "  ttl_var: '\"7d\"'"
    )
    assert [p for p in check_text(one_node_skill(node)) if p[0] == "error"] == []


def test_an_unknown_filter_in_a_bot_does_not_crash_check_bot(tmp_path: Path) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "rejoinder.yaml").write_text("id: b\nname: B\n")
    (tmp_path / "skills" / "s.yaml").write_text(one_node_skill("type: message\ntext: '{{ x | shout }}'"))
    bot, problems = check_bot(tmp_path)
    assert bot is None
    assert [(p.line, p.severity) for p in problems] == [(6, "error")]
