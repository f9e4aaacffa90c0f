"""`rejoinder test`: conversation test files run against a small café bot, its backend faked.

Each test writes a test file into the bot's tests/ directory, runs the real command in process and reads what a
designer would read: the PASSED/FAILED lines, the failure details with file:line, the last line and the exit code.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from rejoinder.cli import app
from rejoinder.testing.match import mismatch

EXAMPLE_SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"

CAFE_CONFIG = """\
id: cafe
name: Test café
env: [CAFE_API]
"""

CAFE_SKILL = """\
id: order
triggers: {default: true, events: [order]}
start: ask
variables:
  guest: {default: "", settable: true}
nodes:
  ask:
    type: question
    text: "Hello {{ guest or 'guest' }}! Tea or coffee?"
    choices:
      - {label: Tea, value: tea}
      - {label: Coffee, value: coffee}
    save_to: drink
    else: unknown
    next: mint
  unknown:
    type: message
    text: "We only have tea and coffee."
    next: ask
  mint:
    type: assign
    set: {TOKEN: generate_token()}
    next: place
  place:
    type: integrate
    method: POST
    url: "{{ env.CAFE_API }}/orders"
    send: [drink, TOKEN]
    save: {number: number}
    on_error: sorry
    next: placed
  placed:
    type: question
    text: "Order {{ number }} is being made."
    save_to: check
    next: bye
  bye:
    type: end
    text: "Enjoy your {{ drink }}!"
    close: true
  sorry:
    type: message
    text: "The kitchen is closed."
    next: stop
  stop:
    type: end
"""

HEADER = """\
env: {CAFE_API: "http://cafe.test"}
http:
  - {method: POST, url: "http://cafe.test/orders", json: {number: 7}}
tests:
"""


@pytest.fixture
def cafe(tmp_path: Path) -> Path:
    """The café bot's directory, with an empty tests/."""
    bot = tmp_path / "cafe"
    (bot / "skills").mkdir(parents=True)
    (bot / "tests").mkdir()
    (bot / "rejoinder.yaml").write_text(CAFE_CONFIG)
    (bot / "skills" / "order.yaml").write_text(CAFE_SKILL)
    return bot


def write(bot: Path, tests: str, *, header: str = HEADER, name: str = "cafe.yaml") -> Path:
    path = bot / "tests" / name
    path.write_text(header + textwrap.indent(textwrap.dedent(tests), "  "))
    return path


def line_of(path: Path, snippet: str) -> int:
    """The 1-based line of the first line of ``path`` containing ``snippet``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if snippet in line)


def rejoinder_test(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["test", *map(str, args)])


def last_line(result: Result) -> str:
    return result.stdout.rstrip("\n").splitlines()[-1]


# ------------------------------------------------------------------------------------------------ whole runs


def test_a_passing_suite_reports_each_test_and_exits_0(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: tea is ordered
          start: {event: order, variables: {guest: Ann}}
          steps:
            - bot: "Hello Ann!"
            - buttons: [Tea, Coffee]
            - pending: {node: ask, choices: [{label: Tea, value: tea}, {label: Coffee, value: coffee}]}
            - choose: Tea
            - http_called: {method: POST, url: "*/orders", json: {drink: tea, TOKEN: "rjt_*"}}
            - bot_exact: "Order 7 is being made."
            - variables: {drink: tea, number: 7}
            - say: "thanks"
            - bot_matches: "^Enjoy your tea!$"
            - status: closed
            - no_errors: true
        - name: the first message opens the question
          steps:
            - say: hi
            - bot: "Tea or coffee?"
            - status: active
        """,
    )
    result = rejoinder_test(cafe)
    assert result.exit_code == 0, result.stdout
    assert f"{path}::tea is ordered PASSED" in result.stdout
    assert f"{path}::the first message opens the question PASSED" in result.stdout
    assert "FAILURES" not in result.stdout
    assert last_line(result) == "2 passed, 0 failed"


def test_a_failing_test_shows_its_step_line_expected_and_what_the_bot_said(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: passes
          start: {event: order}
          steps:
            - bot: "Tea or coffee?"
        - name: expects the wrong greeting
          start: {event: order}
          steps:
            - bot: "Good morning"
        """,
    )
    result = rejoinder_test(path)
    assert result.exit_code == 1
    assert f"{path}::passes PASSED" in result.stdout
    assert f"{path}::expects the wrong greeting FAILED" in result.stdout
    assert f"_ {path}::expects the wrong greeting _" in result.stdout  # the failure's header, never cut short
    line = line_of(path, 'bot: "Good morning"')
    assert f"{path}:{line}: expected a bot message containing 'Good morning'" in result.stdout
    assert "bot: Hello guest! Tea or coffee?" in result.stdout
    assert "buttons: Tea | Coffee" in result.stdout
    assert last_line(result) == "1 passed, 1 failed"


def test_the_example_shop_tests_pass() -> None:
    result = rejoinder_test(EXAMPLE_SHOP)
    assert result.exit_code == 0, result.stdout
    assert "customer logs in and comes back by the token PASSED" in result.stdout
    assert last_line(result).endswith("passed, 0 failed")


def test_k_selects_tests_by_name_and_v_prints_each_step(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: Tea please
          start: {event: order}
          steps:
            - choose: tea
        - name: coffee please
          start: {event: order}
          steps:
            - choose: coffee
        """,
    )
    result = rejoinder_test(cafe, "-k", "TEA", "-v")
    assert result.exit_code == 0, result.stdout
    assert "coffee please" not in result.stdout
    assert f'{path}:{line_of(path, "choose: tea")} choose: "tea" ok' in result.stdout
    assert "customer: Tea" in result.stdout  # the turn the step caused
    assert "Integrate call: POST http://cafe.test/orders" in result.stdout
    assert last_line(result) == "1 passed, 0 failed"


# ------------------------------------------------------------------------------------------------ expectations

FAILING_STEPS = [
    pytest.param('bot: "Goodbye"', "expected a bot message containing 'Goodbye'", id="bot"),
    pytest.param('bot_exact: "Order 7"', "expected a bot message equal to 'Order 7'", id="bot_exact"),
    pytest.param(
        'bot_exact: ["Order 7 is being made.", "Extra"]',
        'expected the bot to say exactly ["Order 7 is being made.", "Extra"], in order',
        id="bot_exact-list",
    ),
    pytest.param(
        'bot_matches: "Order \\\\d{3}"', "expected a bot message matching /Order \\d{3}/", id="bot_matches"
    ),
    pytest.param("buttons: [Tea]", 'expected the buttons ["Tea"], got []', id="buttons"),
    pytest.param(
        'http_called: {url: "*/orders", json: {drink: coffee}}',
        "json.drink: expected 'coffee', got 'tea'",
        id="http_called",
    ),
    pytest.param(
        'http_called: {method: GET, url: "*/orders"}',
        "method: expected 'GET', got 'POST'",
        id="http_called-method",
    ),
    pytest.param(
        'http_called: {url: "*/orders", times: 2}', "expected 2 call(s) matching", id="http_called-times"
    ),
    pytest.param(
        "variables: {drink: coffee}", 'variable \'drink\': expected "coffee", got "tea"', id="variables"
    ),
    pytest.param("variables: {number: '7'}", "variable 'number': expected \"7\", got 7", id="variables-type"),
    pytest.param("variables: {size: large}", "variable 'size' is not set (set: ", id="variables-missing"),
    pytest.param("pending: {node: ask}", "pending.node: expected 'ask', got 'placed'", id="pending"),
    pytest.param("pending: null", "expected the bot to wait for nothing, it waits for", id="pending-null"),
    pytest.param("status: closed", "expected the conversation to be closed, it is active", id="status"),
    pytest.param("errors: ['*timeout*']", "no error matches '*timeout*'", id="errors"),
    pytest.param("choose: coffee", "the bot is not asking a question with choices", id="choose-no-choices"),
]


@pytest.mark.parametrize(("step", "message"), FAILING_STEPS)
def test_each_expectation_fails_with_a_useful_message(cafe: Path, step: str, message: str) -> None:
    path = write(
        cafe,
        f"""\
        - name: tea
          start: {{event: order}}
          steps:
            - choose: tea
            - {step}
        """,
    )
    result = rejoinder_test(path)
    assert result.exit_code == 1, result.stdout
    assert f"{path}:{line_of(path, step)}: " in result.stdout
    assert message in result.stdout
    assert "customer: Tea" in result.stdout  # the turn the step looked at
    assert last_line(result) == "0 passed, 1 failed"


def test_an_unknown_choice_lists_the_choices(cafe: Path) -> None:
    path = write(cafe, "- name: juice\n  start: {event: order}\n  steps:\n    - choose: juice\n")
    result = rejoinder_test(path)
    assert result.exit_code == 1
    line = line_of(path, "choose: juice")
    assert (
        f"{path}:{line}: no choice 'juice'; the choices are 'Tea' (tea), 'Coffee' (coffee)" in result.stdout
    )


def test_a_call_no_fake_answers_lists_the_call_and_the_fakes(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: unanswered
          start: {event: order}
          http:
            - {method: GET, url: "http://cafe.test/orders", json: {}}
          steps:
            - choose: coffee
        """,
        header='env: {CAFE_API: "http://cafe.test"}\ntests:\n',
    )
    result = rejoinder_test(path)
    assert result.exit_code == 1
    out = result.stdout
    assert (
        f"{path}:{line_of(path, 'choose: coffee')}: no fake answers the Integrate call of node 'place'" in out
    )
    assert 'POST http://cafe.test/orders {"drink": "coffee", "TOKEN": "rjt_…"}' in out
    assert f"{path}:{line_of(path, 'method: GET')}: GET http://cafe.test/orders → status 200" in out


def test_skill_errors_fail_the_turn_unless_expected(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: errors not expected
          start: {event: order}
          http:
            - {url: "*/orders", error: timeout}
          steps:
            - choose: tea
            - bot: "The kitchen is closed."
        - name: errors expected by a step
          start: {event: order}
          http:
            - {url: "*/orders", status: 500, body: "oops"}
          steps:
            - choose: tea
            - errors: ["*outside call failed: status 500"]
            - bot: "The kitchen is closed."
        - name: errors allowed for the test
          expect_errors: true
          start: {event: order}
          http:
            - {url: "*/orders", error: timeout}
          steps:
            - choose: tea
            - pending: null
        - name: no_errors still checks
          expect_errors: true
          start: {event: order}
          http:
            - {url: "*/orders", error: timeout}
          steps:
            - choose: tea
            - no_errors: true
        """,
    )
    result = rejoinder_test(path)
    out = result.stdout
    assert result.exit_code == 1
    assert "::errors not expected FAILED" in out
    assert f"{path}:{line_of(path, 'choose: tea')}: the skill reported errors in this turn:" in out
    assert "node 'place': outside call failed: timeout" in out
    assert "::errors expected by a step PASSED" in out
    assert "::errors allowed for the test PASSED" in out
    assert "::no_errors still checks FAILED" in out
    assert "expected no skill errors, found:" in out
    assert last_line(result) == "2 passed, 2 failed"


def test_fakes_answer_in_order_with_times_and_query_rules(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: first call fails, the second succeeds
          http:
            - {url: "http://cafe.test/orders?x=1", json: {number: 99}}
            - {url: "http://cafe.test/orders", error: "connection refused", times: 1}
          steps:
            - say: hi
            - say: tea
            - bot: "The kitchen is closed."
            - errors: ["*connection refused"]
            - say: hi
            - say: tea
            - bot: "Order 7 is being made."
        """,
    )
    result = rejoinder_test(path)
    assert result.exit_code == 0, result.stdout
    assert last_line(result) == "1 passed, 0 failed"


def test_resume_by_the_token_sent_to_the_backend(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: comes back
          start: {event: order}
          steps:
            - choose: coffee
            - resume: last_token
            - bot: "Order 7 is being made."
            - pending: {node: placed}
            - variables: {drink: coffee}
            - say: "ready?"
            - bot: "Enjoy your coffee!"
            - status: closed
        - name: a token that is not one
          start: {event: order}
          steps:
            - resume: "rjt_nope"
        - name: nothing sent yet
          start: {event: order}
          steps:
            - resume: last_token
        """,
    )
    result = rejoinder_test(path)
    out = result.stdout
    assert "::comes back PASSED" in out
    assert f"{path}:{line_of(path, 'rjt_nope')}: the token was refused (token_malformed)" in out
    assert "no conversation token (rjt_…) was sent in any Integrate call yet" in out
    assert last_line(result) == "1 passed, 2 failed"


def test_a_refused_message_fails_the_step(cafe: Path) -> None:
    path = write(
        cafe,
        """\
        - name: talks after the end
          start: {event: order}
          steps:
            - choose: tea
            - say: ok
            - status: closed
            - say: "hello again"
        """,
    )
    result = rejoinder_test(path)
    assert result.exit_code == 1
    line = line_of(path, "hello again")
    assert f"{path}:{line}: the bot refused this: this conversation is closed" in result.stdout


# ------------------------------------------------------------------------------------------------ broken input


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        pytest.param("tests:\n  - name: x\n    steps: [\n", 4, "invalid YAML", id="yaml"),
        pytest.param(
            "tests:\n  - name: x\n    start: {event: order}\n    stpes: []\n",
            4,
            "tests[0]: unknown field 'stpes' (did you mean 'steps'?)",
            id="unknown-key",
        ),
        pytest.param(
            "tests:\n  - name: x\n    start: {event: order}\n    steps:\n      - sayy: hi\n",
            5,
            "tests[0].steps[0]: unknown field 'sayy' (did you mean 'say'?)",
            id="unknown-step",
        ),
        pytest.param(
            "tests:\n  - name: x\n    steps:\n      - say: hi\n        bot: hello\n",
            4,
            "a step has exactly one key, found 2: bot, say",
            id="two-keys",
        ),
        pytest.param(
            "tests:\n  - name: x\n    steps:\n      - bot: hello\n",
            2,
            "a test opens with 'start:' or with a 'say:' step",
            id="no-start",
        ),
        pytest.param(
            "tests:\n  - name: x\n    start: {event: order}\n    http:\n      - {url: x, json: {}, body: y}\n",
            5,
            "a fake answers with 'json' or with 'body', not both",
            id="fake",
        ),
        pytest.param(
            "env: {}\nenv: {}\ntests: []\n", 2, "duplicate key 'env' (first at line 1)", id="duplicate"
        ),
        pytest.param("", 1, "the file is empty", id="empty"),
    ],
)
def test_a_broken_file_is_an_error_with_its_line_counted_as_failed(
    cafe: Path, content: str, line: int, message: str
) -> None:
    write(cafe, "- name: fine\n  start: {event: order}\n  steps: [{bot: Tea}]\n", name="a_good.yaml")
    broken = cafe / "tests" / "broken.yaml"
    broken.write_text(content)
    result = rejoinder_test(cafe)
    assert result.exit_code == 1
    assert f"{broken} FAILED" in result.stdout
    assert f"{broken}:{line}: " in result.stdout
    assert message in result.stdout
    assert "a_good.yaml::fine PASSED" in result.stdout  # the other files still run
    assert last_line(result) == "1 passed, 1 failed"


def test_a_bot_that_does_not_load_fails_each_of_its_tests(cafe: Path) -> None:
    (cafe / "skills" / "order.yaml").write_text(CAFE_SKILL.replace("next: mint", "next: nowhere"))
    path = write(cafe, "- name: one\n  steps: [{say: hi}]\n")
    write(cafe, "- name: two\n  steps: [{say: hi}]\n", name="more.yaml")
    result = rejoinder_test(cafe)
    assert result.exit_code == 1
    assert f"{path}::one FAILED" in result.stdout
    assert "the bot does not load, so no test of it can run" in result.stdout
    assert "nowhere" in result.stdout
    assert last_line(result) == "0 passed, 2 failed"


def test_env_the_bot_does_not_allow_is_an_error(cafe: Path) -> None:
    path = write(cafe, "- name: x\n  steps: [{say: hi}]\n", header="env: {CAFE_APII: x}\ntests:\n")
    result = rejoinder_test(path)
    assert result.exit_code == 1
    refused = "env.CAFE_APII: the bot does not allow this variable (its rejoinder.yaml allows: CAFE_API)"
    assert f"{path}:1: {refused}" in result.stdout


# ------------------------------------------------------------------------------------------------ usage


def test_no_tests_found_is_a_usage_error(tmp_path: Path, cafe: Path) -> None:
    empty = rejoinder_test(tmp_path / "cafe")
    assert empty.exit_code == 2
    assert "no tests found in" in empty.stderr

    missing = rejoinder_test(tmp_path / "nowhere")
    assert missing.exit_code == 2
    assert "no such file or directory" in missing.stderr

    write(cafe, "- name: tea\n  steps: [{say: tea}]\n")
    unselected = rejoinder_test(cafe, "-k", "coffee")
    assert unselected.exit_code == 2
    assert "no test name contains 'coffee'" in unselected.stderr


def test_a_test_file_outside_a_bot_must_name_its_bot(tmp_path: Path, cafe: Path) -> None:
    loose = tmp_path / "loose.yaml"
    loose.write_text("tests:\n  - name: x\n    steps: [{say: hi}]\n")
    result = rejoinder_test(loose)
    assert result.exit_code == 1
    assert "no bot to test" in result.stdout and "'bot: PATH'" in result.stdout

    loose.write_text(
        'bot: cafe\nenv: {CAFE_API: "http://cafe.test"}\ntests:\n  - name: x\n    steps: [{say: hi}]\n'
    )
    assert rejoinder_test(loose).exit_code == 0


# ------------------------------------------------------------------------------------------------ matching


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("cnv_*", "cnv_1f2e", True),
        ("cnv_*", "tok_1f2e", False),
        ({"a": 1}, {"a": 1, "b": 2}, True),  # a mapping matches the keys it lists
        ({"a": 1}, {"b": 1}, False),
        ([1, 2], [1, 2, 3], False),  # a list matches item by item
        (1, True, False),  # numbers are not booleans
        (7, 7.0, True),
        (None, None, True),
    ],
)
def test_matching_rules(expected: object, actual: object, ok: bool) -> None:
    assert (mismatch(expected, actual) is None) is ok
