"""Loading bots and skills: every problem names its file, skill, node and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rejoinder.skills import (
    Bot,
    BotLoadError,
    Problem,
    check_bot,
    check_paths,
    check_report,
    load_bot,
    parse_skill,
    read_skill,
    with_skill,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "skills"
VALID_BOT = FIXTURES / "valid_bot"
BROKEN = FIXTURES / "broken"
BOTS = FIXTURES / "bots"


def found(problems: list[Problem]) -> list[tuple[str, int | None, str | None, str]]:
    return [(p.severity, p.line, p.node, p.message) for p in problems]


# ------------------------------------------------------------------------------------------ a valid bot


def test_the_spec_example_bot_loads_with_its_settings_and_skills() -> None:
    bot = load_bot(VALID_BOT)

    assert isinstance(bot, Bot)
    assert bot.id == "shop"
    assert bot.config.env == ["SHOP_BACKEND"]
    assert bot.config.integrate.allow_hosts == ["127.0.0.1"]
    assert sorted(bot.skills) == ["login_resume", "welcome"]
    login = bot.skills["login_resume"]
    assert login.start == "greet"
    assert list(login.nodes)[:3] == ["greet", "make_token", "send_token"]
    assert bot.event_skill("login_help") is login
    assert bot.default_skill() is bot.skills["welcome"]


def test_check_bot_reports_no_problem_for_the_valid_bot() -> None:
    bot, problems = check_bot(VALID_BOT)
    assert bot is not None
    assert problems == []


def test_version_is_stable_across_loads_and_changes_with_a_skill(tmp_path: Path) -> None:
    copy = tmp_path / "shop"
    shutil.copytree(VALID_BOT, copy)
    first = load_bot(VALID_BOT).version
    assert len(first) == 12
    assert load_bot(copy).version == first

    skill = copy / "skills" / "welcome.yml"
    skill.write_text(skill.read_text().replace("9:00 to 18:00", "8:00 to 20:00"))
    assert load_bot(copy).version != first


def test_loading_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_BACKEND", raising=False)
    without = load_bot(VALID_BOT).version
    monkeypatch.setenv("SHOP_BACKEND", "http://127.0.0.1:9")
    assert load_bot(VALID_BOT).version == without


# ------------------------------------------------------------------------------------------ broken skill files


BROKEN_FILES = [
    (
        "unknown_field.yaml",
        [("error", 8, "send_token", "unknown field 'tiemout' (did you mean 'timeout'?)")],
    ),
    (
        "unknown_node_type.yaml",
        [
            (
                "error",
                5,
                "greet",
                "unknown node type 'mesage' (did you mean 'message'? valid types: "
                "message, question, assign, integrate, condition, jump, end)",
            )
        ],
    ),
    ("missing_field.yaml", [("error", 4, "fetch", "missing required field 'url'")]),
    (
        "duplicate_node.yaml",
        [("error", 10, "greet", "duplicate node id 'greet' (first defined at line 4)")],
    ),
    (
        "bad_regex.yaml",
        [
            (
                "error",
                8,
                "ask_order",
                "input.regex: invalid regular expression '[0-9{6}': missing ]: [0-9{6}",
            )
        ],
    ),
    (
        "bad_yaml.yaml",
        [
            (
                "error",
                7,
                None,
                "invalid YAML: expected <block end>, but found '<block mapping start>' "
                "(column 4; while parsing a block mapping started at line 4; check the indentation)",
            )
        ],
    ),
    (
        "broken.json",
        [("error", 7, None, "invalid JSON: Expecting property name enclosed in double quotes (column 3)")],
    ),
]


@pytest.mark.parametrize(("name", "expected"), BROKEN_FILES, ids=[name for name, _ in BROKEN_FILES])
def test_a_broken_file_is_reported_at_its_line(
    name: str, expected: list[tuple[str, int, str | None, str]]
) -> None:
    path = BROKEN / name
    skill, problems = parse_skill(path.read_text(), filename=str(path))

    assert skill is None
    assert found(problems) == expected
    assert all(problem.file == str(path) for problem in problems)


def test_problem_text_names_file_line_skill_and_node() -> None:
    path = BROKEN / "unknown_field.yaml"
    _, problems = parse_skill(path.read_text(), filename="skills/login.yaml")

    assert str(problems[0]) == (
        "skills/login.yaml:8: skill 'login_resume', node 'send_token': unknown field 'tiemout' (did you mean 'timeout'?)"
    )
    assert problems[0].format(severity=True).startswith("skills/login.yaml:8: error: skill 'login_resume'")


def test_problem_text_leaves_out_what_is_unknown() -> None:
    assert str(Problem("error", "boom")) == "boom"
    assert str(Problem("warning", "boom", file="a.yaml")) == "a.yaml: boom"
    assert str(Problem("error", "boom", file="a.yaml", line=3, skill="s")) == "a.yaml:3: skill 's': boom"


def test_every_shape_error_is_reported_not_only_the_first() -> None:
    text = """\
id: shop_hours
start: ask
nodes:
  ask:
    type: question
    text: "Which shop?"
    save_to: shop
    max_retries: -1
    choices:
      - {label: Berlin, nxt: berlin}
  berlin:
    type: message
    text: "Berlin opens at 9."
    messages: ["and closes at 18."]
  oops:
    type: condition
    branches: []
"""
    skill, problems = parse_skill(text, filename="hours.yaml")

    assert skill is None
    assert found(problems) == [
        ("error", 8, "ask", "max_retries: should be greater than or equal to 0 (got -1)"),
        ("error", 10, "ask", "choices[0]: unknown field 'nxt' (did you mean 'next'?)"),
        ("error", 11, "berlin", "a message node needs exactly one of 'text' or 'messages'"),
        ("error", 17, "oops", "branches: needs at least 1 item(s)"),
    ]
    assert {problem.skill for problem in problems} == {"shop_hours"}


def test_a_union_field_reports_the_alternative_that_was_meant() -> None:
    text = "id: a\nstart: q\nnodes:\n  q:\n    type: question\n    text: Phone?\n    input: phone\n    save_to: p\n"
    _, problems = parse_skill(text)
    assert found(problems) == [
        ("error", 7, "q", "input: should be 'text', 'number' or 'email' (got 'phone')")
    ]

    text = "id: a\nstart: s\nnodes:\n  s:\n    type: integrate\n    url: http://x\n    body: 5\n"
    _, problems = parse_skill(text)
    assert found(problems) == [("error", 7, "s", "body: should be a list, a mapping or a string (got 5)")]


def test_a_node_without_type_or_not_a_mapping() -> None:
    text = "id: a\nstart: s\nnodes:\n  s:\n    text: hi\n  t: hello\n"
    _, problems = parse_skill(text)
    assert found(problems) == [
        (
            "error",
            4,
            "s",
            "a node needs a 'type' (one of: message, question, assign, integrate, condition, jump, end)",
        ),
        ("error", 6, "t", "a node must be a mapping with a 'type' (got 'hello')"),
    ]


def test_duplicate_keys_inside_a_node_are_errors() -> None:
    text = "id: a\nstart: s\nnodes:\n  s:\n    type: end\n    text: one\n    text: two\n"
    skill, problems = parse_skill(text)
    assert skill is None
    assert found(problems) == [("error", 7, "s", "duplicate key 'text' (first at line 6)")]


def test_files_that_are_not_a_skill_mapping() -> None:
    assert found(parse_skill("", filename="x.yaml")[1]) == [("error", 1, None, "the file is empty")]
    assert found(parse_skill("- a\n- b\n")[1]) == [
        ("error", 1, None, "expected a mapping of fields, not a list")
    ]
    assert found(parse_skill("id: a\n---\nid: b\n")[1]) == [
        (
            "error",
            2,
            None,
            "invalid YAML: expected a single document in the stream, but found another document (column 1)",
        )
    ]


def test_yes_and_no_stay_text() -> None:
    text = """\
id: confirm
start: sure
nodes:
  sure:
    type: question
    text: "Sure?"
    save_to: answer
    choices:
      - {label: Yes, value: yes, next: no}
  no:
    type: end
"""
    skill, problems = parse_skill(text)
    assert problems == []
    assert skill is not None
    choice = skill.nodes["sure"].choices[0]  # type: ignore[union-attr]
    assert (choice.label, choice.value, choice.next) == ("Yes", "yes", "no")


def test_an_alias_bomb_is_refused() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    skill, problems = parse_skill("\n".join(lines) + "\n")
    assert skill is None
    assert "expands to over 100000 values" in problems[0].message


# ------------------------------------------------------------------------------------------ JSON


def test_json_upload_is_read_as_json_with_line_numbers() -> None:
    document = {"id": "greeting", "start": "greet", "nodes": {"greet": {"type": "message", "txt": "Hi"}}}
    text = json.dumps(document, indent=2)
    skill, problems = parse_skill(text, content_type="application/json; charset=utf-8")

    assert skill is None
    assert [(p.file, p.line, p.node, p.message) for p in problems] == [
        ("<upload>", 7, "greet", "unknown field 'txt' (did you mean 'text'?)")
    ]


def test_json_syntax_errors_use_the_json_parser_message() -> None:
    _, problems = parse_skill('{"id": "a",\n "start": }', content_type="application/json")
    assert found(problems) == [("error", 2, None, "invalid JSON: Expecting value (column 11)")]


def test_a_valid_json_skill_loads() -> None:
    document = {"id": "bye", "start": "end", "nodes": {"end": {"type": "end", "text": "Bye!", "close": True}}}
    skill, problems = parse_skill(json.dumps(document), filename="bye.json")
    assert problems == []
    assert skill is not None and skill.nodes["end"].close  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ bot directories


def test_load_bot_raises_with_every_error_one_per_line() -> None:
    with pytest.raises(BotLoadError) as caught:
        load_bot(BOTS / "trigger_clash")

    error = caught.value
    assert len(error.problems) == 2
    lines = str(error).splitlines()
    assert lines[0] == f"cannot load bot {str(BOTS / 'trigger_clash')!r}: 2 errors"
    assert lines[1:] == [str(problem) for problem in error.problems]


def test_warnings_do_not_block_loading(tmp_path: Path) -> None:
    copy = tmp_path / "shop"
    shutil.copytree(VALID_BOT, copy)
    shutil.copy(BROKEN / "unreachable.yaml", copy / "skills" / "extra.yaml")

    bot, problems = check_bot(copy)
    assert bot is not None and "greeting" in bot.skills
    assert [(p.severity, p.skill, p.node) for p in problems] == [("warning", "greeting", "goodbye")]
    load_bot(copy)


def test_a_broken_config_is_reported_at_its_lines() -> None:
    bot, problems = check_bot(BOTS / "bad_config")
    assert bot is None
    config = str(BOTS / "bad_config" / "rejoinder.yaml")
    assert [(p.file, p.line, p.message) for p in problems] == [
        (config, 3, "unknown field 'alowed_origins' (did you mean 'allowed_origins'?)"),
        (config, 4, "tokens.ttl: expected a duration such as '15m', '24h' or '7d', got '24 hours'"),
    ]


def test_two_skills_with_one_id() -> None:
    bot, problems = check_bot(BOTS / "duplicate_ids")
    assert bot is None
    first = BOTS / "duplicate_ids" / "skills" / "greeting.yaml"
    assert [(p.file, p.line, p.skill, p.message) for p in problems] == [
        (
            str(BOTS / "duplicate_ids" / "skills" / "greeting_copy.yaml"),
            2,
            "greeting",
            f"id: skill id 'greeting' is already used by {first}",
        )
    ]


def test_a_directory_without_settings(tmp_path: Path) -> None:
    (tmp_path / "skills").mkdir()
    bot, problems = check_bot(tmp_path)
    assert bot is None
    assert [p.message for p in problems] == [
        "no rejoinder.yaml: a bot directory holds rejoinder.yaml and skills/"
    ]


def test_a_skill_that_fails_to_load_is_not_reported_again_by_jumps(tmp_path: Path) -> None:
    copy = tmp_path / "shop"
    shutil.copytree(VALID_BOT, copy)
    login = copy / "skills" / "login_resume.yaml"
    login.write_text(login.read_text().replace("    next: done\n  done:", "    nxt: done\n  done:"))

    bot, problems = check_bot(copy)
    assert bot is None
    assert [(Path(p.file or "").name, p.line, p.message) for p in problems] == [
        ("login_resume.yaml", 46, "unknown field 'nxt' (did you mean 'next'?)")
    ]


# ------------------------------------------------------------------------------------------ check_paths


def test_check_paths_mixes_bot_directories_and_single_files() -> None:
    report = check_report([VALID_BOT, BROKEN / "unknown_field.yaml", BROKEN / "unreachable.yaml"])
    assert report.skills == 4
    assert [(Path(p.file or "").name, p.severity) for p in report.problems] == [
        ("unknown_field.yaml", "error"),
        ("unreachable.yaml", "warning"),
    ]
    assert check_paths([VALID_BOT]) == []


def test_a_skill_file_inside_a_bot_is_checked_with_its_bot() -> None:
    # welcome.yml jumps to login_resume: known only with the rest of the bot.
    assert check_paths([VALID_BOT / "skills" / "welcome.yml"]) == []

    menu = BOTS / "bad_jumps" / "skills" / "menu.yaml"
    orders = BOTS / "bad_jumps" / "skills" / "orders.yaml"
    assert [p.line for p in check_paths([menu])] == [15, 18]
    assert check_paths([orders]) == []


def test_check_paths_reports_paths_that_are_not_there(tmp_path: Path) -> None:
    problems = check_paths([tmp_path / "nope.yaml", tmp_path])
    assert [p.message for p in problems] == [
        "no such file or directory",
        "not a bot directory: no rejoinder.yaml in it (a bot holds rejoinder.yaml and skills/)",
    ]


# ------------------------------------------------------------------------------------------ uploads into a bot


def test_with_skill_adds_an_uploaded_skill_and_checks_the_whole_bot() -> None:
    bot = load_bot(VALID_BOT)
    upload = "id: goodbye\ntriggers: {events: [bye]}\nstart: bye\nnodes:\n  bye: {type: jump, skill: login_resume}\n"

    new_bot, problems = with_skill(bot, upload)
    assert problems == []
    assert new_bot is not None
    assert sorted(new_bot.skills) == ["goodbye", "login_resume", "welcome"]
    assert new_bot.version != bot.version


def test_with_skill_refuses_an_upload_that_breaks_the_bot() -> None:
    bot = load_bot(VALID_BOT)
    upload = "id: goodbye\ntriggers: {events: [login_help]}\nstart: bye\nnodes:\n  bye: {type: jump, skill: logn}\n"

    new_bot, problems = with_skill(bot, upload, filename="goodbye.yaml")
    assert new_bot is None
    assert [(p.file, p.line, p.message) for p in problems] == [
        ("goodbye.yaml", 2, "triggers: event 'login_help' already starts skill 'login_resume'"),
        ("goodbye.yaml", 5, "skill: no skill 'logn' in this bot (skills: login_resume, welcome, goodbye)"),
    ]


def test_read_skill_keeps_the_line_of_every_key() -> None:
    source, problems = read_skill(
        (VALID_BOT / "skills" / "login_resume.yaml").read_text(), filename="login.yaml"
    )
    assert problems == []
    assert source is not None
    assert source.line(("nodes", "send_token", "timeout")) == 25
    assert source.line(("nodes", "after_login", "branches", 0, "next")) == 37
    assert source.line(("nodes", "greet", "no_such_field")) == 10
