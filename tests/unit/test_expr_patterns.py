"""Skill patterns run by RE2: no pattern can make matching slow, and what RE2 cannot take is refused up front."""

from __future__ import annotations

import time

import pytest

from rejoinder.engine.runtime import _EMAIL, _parse_input
from rejoinder.expr import ExpressionError, Expressions
from rejoinder.expr.patterns import PatternError, compile_pattern, fullmatch, search
from rejoinder.skills import parse_skill
from rejoinder.skills.model import QuestionNode

# Generous: each of these takes well under a millisecond with RE2 and seconds to minutes with backtracking.
FAST = 0.25


def cpu(action: object) -> float:
    started = time.thread_time()
    action()  # type: ignore[operator]
    return time.thread_time() - started


def test_an_ordinary_full_name_pattern_cannot_freeze_the_worker() -> None:
    node = QuestionNode(type="question", text="Your name?", save_to="name", input={"regex": "([A-Za-z]+ ?)*"})
    assert cpu(lambda: _parse_input(node, "a" * 30 + "!")) < FAST
    assert _parse_input(node, "Ada Lovelace") == "Ada Lovelace"


def test_nested_quantifiers_in_matches_are_linear() -> None:
    expressions = Expressions()
    assert cpu(lambda: expressions.evaluate("matches('a' * 24 + '!', '^(a+)+$')", {})) < FAST
    assert expressions.evaluate("matches('a' * 24, '^(a+)+$')", {}) is True


def test_the_email_check_is_linear() -> None:
    hostile = "a@" + "b." * 2_000 + "@"  # each dot is a place to split the domain, each tried to the end
    started = time.thread_time()
    for _ in range(50):
        assert not fullmatch(_EMAIL, hostile)
    assert time.thread_time() - started < FAST  # 40 ms each with backtracking, 0.4 ms with RE2


@pytest.mark.parametrize(
    ("answer", "valid"),
    [
        ("ada@example.org", True),
        ("a@b.c", True),
        ("ada@example", False),
        ("ada lovelace@example.org", False),
        ("ada@@example.org", False),
        ("@example.org", False),
        ("ada@.org", False),
        ("ada@example.", False),
    ],
)
def test_the_email_check_keeps_its_rules(answer: str, valid: bool) -> None:
    assert fullmatch(_EMAIL, answer) is valid


def test_python_semantics_are_kept_where_re2_allows() -> None:
    assert fullmatch(r"\w+", "José")  # Unicode word characters, as in Python
    assert fullmatch(r"\d+", "١٢٣")
    assert fullmatch(r"[\w-]+ [\w-]+", "Jean-Luc Picard")
    assert fullmatch(r"\s", "\u00a0")
    assert not fullmatch(r"\W", "é")
    assert fullmatch(r"[]a]+", "]a]")
    assert fullmatch(r"(?i)yes|no", "YES")
    assert search(r"\d{4}", "order 1234 shipped")
    assert not fullmatch(r"\d{4}", "order 1234 shipped")  # fullmatch for answers, search for matches()


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(a)\1", "backreferences are not supported"),
        (r"(?P<n>a)(?P=n)", "backreferences are not supported"),
        (r"(?<=a)b", "lookarounds are not supported"),
        (r"a(?!b)", "lookarounds are not supported"),
        (r"(", r"missing \)"),
    ],
)
def test_patterns_re2_cannot_take_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        compile_pattern(pattern)
    with pytest.raises(ExpressionError, match="invalid regular expression"):
        Expressions().evaluate("matches('ab', p)", {"p": pattern})


def test_the_validator_reports_a_pattern_re2_cannot_take_with_file_and_line() -> None:
    text = (
        "id: ask\n"
        "start: name\n"
        "nodes:\n"
        "  name:\n"
        "    type: question\n"
        "    text: Your name?\n"
        "    save_to: name\n"
        "    input:\n"
        "      regex: '(\\w+) \\1'\n"
    )
    skill, problems = parse_skill(text, filename="ask.yaml")
    assert skill is None
    [problem] = problems
    assert (problem.file, problem.line, problem.node) == ("ask.yaml", 9, "name")
    assert "backreferences are not supported" in problem.message
