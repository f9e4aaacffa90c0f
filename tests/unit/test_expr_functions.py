"""The function library as skills call it: results, and the errors a bot designer sees for bad arguments."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from rejoinder.expr import FUNCTIONS, TURN_FUNCTIONS, ExpressionError, Expressions, FunctionError
from rejoinder.expr.functions import MAX_MATCH_TEXT_LENGTH
from rejoinder.expr.patterns import MAX_PATTERN_LENGTH

EXPR = Expressions()


def ev(source: str, **scope: Any) -> Any:
    return EXPR.evaluate(source, scope)


def fails(source: str, message: str, **scope: Any) -> None:
    with pytest.raises(ExpressionError) as caught:
        ev(source, **scope)
    assert message in str(caught.value), str(caught.value)


def test_the_spec_minimum_library_is_there() -> None:
    minimum = {
        *("generate_token", "now", "today", "format_date", "add_days", "len", "lower", "upper", "strip"),
        *("replace", "split", "join", "contains", "int", "float", "str", "round", "min", "max"),
        *("random_int", "uuid", "json_get", "matches"),
    }
    assert minimum <= set(FUNCTIONS)
    assert set(TURN_FUNCTIONS) == {"generate_token", "now", "today", "random_int", "uuid"}


# ------------------------------------------------------------------------------------- time


def test_generate_token_outside_a_conversation_explains_itself() -> None:
    fails("generate_token()", "generate_token() can only be called while a conversation runs")
    fails("generate_token(ttl='15m', uses=2)", "only be called while a conversation runs")


def test_now_and_today_default_to_the_utc_clock() -> None:
    before = datetime.now(UTC)
    moment = ev("now()")
    assert before <= moment <= datetime.now(UTC)
    assert moment.tzinfo is not None
    assert ev("today()") == datetime.now(UTC).date()


def test_the_turn_clock_replaces_now_and_today() -> None:
    frozen = datetime(2024, 5, 31, 14, 30, tzinfo=UTC)
    scope = {"now": lambda: frozen, "today": lambda: frozen.date()}
    assert ev("format_date(now(), '%Y-%m-%d %H:%M')", **scope) == "2024-05-31 14:30"
    assert ev("add_days(today(), 1)", **scope) == date(2024, 6, 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 31, 14, 30), "31.05.2024 14:30"),
        (date(2024, 5, 31), "31.05.2024 00:00"),
        ("2024-05-31T14:30:00Z", "31.05.2024 14:30"),
        ("2024-05-31T14:30:00+02:00", "31.05.2024 14:30"),
        ("2024-05-31", "31.05.2024 00:00"),
    ],
)
def test_format_date_accepts_dates_datetimes_and_iso_text(value: Any, expected: str) -> None:
    assert ev("format_date(v, '%d.%m.%Y %H:%M')", v=value) == expected


def test_format_date_errors() -> None:
    fails("format_date('31/05/2024', '%Y')", "format_date('31/05/2024'): not an ISO-8601 date")
    fails(
        "format_date(5, '%Y')",
        "format_date(5): expects a date, a date and time or ISO-8601 text, got a number",
    )
    fails("format_date('2024-05-31', 5)", "expects text as the format, got a number")


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        (date(2024, 2, 28), 1, date(2024, 2, 29)),
        (date(2024, 3, 1), -1, date(2024, 2, 29)),
        (datetime(2024, 12, 31, 23, 0, tzinfo=UTC), 1, datetime(2025, 1, 1, 23, 0, tzinfo=UTC)),
        ("2024-02-28", 2, "2024-03-01"),
        ("2024-02-28T10:00:00Z", 1, "2024-02-29T10:00:00Z"),
        ("2024-02-28T10:00:00+02:00", 1, "2024-02-29T10:00:00+02:00"),
    ],
)
def test_add_days_returns_the_kind_of_value_it_was_given(value: Any, days: int, expected: Any) -> None:
    result = ev("add_days(v, n)", v=value, n=days)
    assert result == expected
    assert type(result) is type(expected)


def test_add_days_errors() -> None:
    fails("add_days('2024-01-01', 1.5)", "the number of days must be a whole number, got a number 1.5")
    fails("add_days('2024-01-01', '3')", "the number of days must be a whole number, got text '3'")
    fails("add_days('9999-12-31', 1)", "the date is out of range")
    fails("add_days('soon', 1)", "not an ISO-8601 date")


# ------------------------------------------------------------------------------------- text


def test_len_counts_text_lists_and_objects() -> None:
    assert ev("len('héllo')") == 5
    assert ev("len(items)", items=[1, 2, 3]) == 3
    assert ev("len(user)", user={"a": 1, "b": 2}) == 2
    fails("len(5)", "len(5): expects text, a list or an object, got a number")
    fails("len(x)", "got nothing (None)", x=None)


def test_case_and_whitespace_functions() -> None:
    assert ev("lower('ÄBC')") == "äbc"
    assert ev("upper('straße')") == "STRASSE"
    assert ev("strip('  hi \\n')") == "hi"
    assert ev("strip('--hi--', '-')") == "hi"
    fails("lower(5)", "lower(5): expects text, got a number")
    fails("upper(none)", "upper(None): expects text, got nothing (None)", none=None)
    fails("strip('x', 1)", "expects text as the characters to remove")


def test_replace_split_join() -> None:
    assert ev("replace('a-b-c', '-', '+')") == "a+b+c"
    assert ev("split('a, b,c', ',')") == ["a", " b", "c"]
    assert ev("split('  a  b ')") == ["a", "b"]
    assert ev("join(['a', 1, 2.5], '-')") == "a-1-2.5"
    assert ev("join(split('a b c'))") == "abc"
    fails("replace('abc', 1, 'x')", "expects text as the text to replace, got a number")
    fails("split('a,b', '')", "split(): the separator cannot be empty")
    fails("join('abc', '-')", "join('abc'): expects a list, got text")
    fails("join([1], 0)", "expects text as the separator")


def test_replace_and_join_refuse_huge_results() -> None:
    fails(
        "replace('abc', '', big)", "replace(): the result would be larger than 1,000,000", big="y" * 500_000
    )
    fails("join(parts, '')", "join(): the result would be larger than 1,000,000", parts=["x" * 400_000] * 3)


def test_contains_works_for_text_lists_and_objects() -> None:
    assert ev("contains('order 42', 'der')") is True
    assert ev("contains('order 42', 42)") is True
    assert ev("contains(items, 2)", items=[1, 2]) is True
    assert ev("contains(items, 3)", items=[1, 2]) is False
    assert ev("contains(user, 'name')", user={"name": "Ada"}) is True
    assert ev("contains(user, 'Ada')", user={"name": "Ada"}) is False
    assert ev("contains(user, [1])", user={"name": "Ada"}) is False
    fails("contains(5, 1)", "contains(5, ...): expects text, a list or an object, got a number")


def test_matches_searches_anywhere() -> None:
    assert ev("matches('ada@shop.test', '^[^@]+@[^@]+$')") is True
    assert ev("matches('order 42', '\\\\d+')") is True
    assert ev("matches('hello', '^ell')") is False
    assert ev("matches(12345, '^\\\\d{5}$')") is True
    fails("matches('x', '(')", "matches(..., '('): invalid regular expression")
    fails("matches(none, 'x')", "expects text, got nothing (None)", none=None)


def test_matches_limits_pattern_and_text_length() -> None:
    fails("matches('x', p)", f"longer than {MAX_PATTERN_LENGTH} characters", p="a" * (MAX_PATTERN_LENGTH + 1))
    fails("matches(t, 'a')", "the text is longer than", t="a" * (MAX_MATCH_TEXT_LENGTH + 1))


# ------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("int('42')", 42),
        ("int(' -7 ')", -7),
        ("int('3.9')", 3),
        ("int(3.9)", 3),
        ("int(-3.9)", -3),
        ("int(true)", 1),
        ("float('2.5')", 2.5),
        ("float(2)", 2.0),
        ("str(42)", "42"),
        ("str(none)", "None"),
    ],
)
def test_conversions(source: str, expected: Any) -> None:
    result = ev(source, none=None)
    assert result == expected
    assert type(result) is type(expected)


def test_conversion_errors_say_what_was_wrong() -> None:
    fails("int('abc')", "int('abc'): not a number")
    fails("int('inf')", "int('inf'): not a finite number")
    fails("int(none)", "int(None): expects a number or text, got nothing (None)", none=None)
    fails("int([1])", "expects a number or text, got a list")
    fails("float('1,5')", "float('1,5'): not a number")
    fails("float('nan')", "float('nan'): not a finite number")
    fails("float(10 ** 400)", "the number is too large")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("round(2.5)", 3),
        ("round(-2.5)", -3),
        ("round(2.4)", 2),
        ("round(2.675, 2)", 2.68),
        ("round(1.005, 2)", 1.01),
        ("round(1234, -2)", 1200),
        ("round(7)", 7),
        ("round(7, 1)", 7.0),
    ],
)
def test_round_goes_half_away_from_zero(source: str, expected: float) -> None:
    result = ev(source)
    assert result == expected
    assert type(result) is type(expected)


def test_round_errors() -> None:
    fails("round('2.5')", "round('2.5'): expects a number, got text")
    fails("round(2.5, 1.5)", "the number of decimals must be a whole number")


def test_min_and_max_of_a_list_or_of_arguments() -> None:
    assert ev("min([3, 1, 2])") == 1
    assert ev("max(3, 1, 2)") == 3
    assert ev("max(['b', 'a'])") == "b"
    assert ev("min(prices)", prices=(9.5, 3.25)) == 3.25
    fails("min([])", "min(): no values")
    fails("max(1, 'a')", "max(): cannot compare a number and text")
    fails("max(5)", "max(5): expects a list or several values, got a number")


def test_random_int_is_inclusive_and_checks_its_bounds() -> None:
    seen = {ev("random_int(1, 3)") for _ in range(300)}
    assert seen == {1, 2, 3}
    assert ev("random_int(5, 5)") == 5
    fails("random_int(3, 1)", "random_int(3, 1): the lowest value is above the highest")
    fails("random_int(1, '9')", "the highest value must be a whole number, got text '9'")


def test_uuid_is_a_fresh_uuid_string() -> None:
    first, second = ev("uuid()"), ev("uuid()")
    assert isinstance(first, str)
    assert uuid.UUID(first).version == 4
    assert first != second


# ------------------------------------------------------------------------------------- JSON


def test_json_get_reads_paths_and_gives_none_when_missing() -> None:
    body = {"data": {"orders": [{"id": "A1"}, {"id": "B2"}]}}
    assert ev("json_get(body, 'data.orders[-1].id')", body=body) == "B2"
    assert ev("json_get(body, '$.data.orders[5].id')", body=body) is None
    assert ev("json_get(body, '$')", body=body) == body
    assert ev("json_get(text, 'a[0]')", text='{"a": [7]}') == 7


def test_json_get_errors() -> None:
    fails("json_get(body, 'a[')", "json_get(..., 'a['): invalid path", body={})
    fails("json_get(body, 3)", "expects text as the path", body={})
    fails("json_get('not json', 'a')", "the text is not valid JSON")


# ------------------------------------------------------------------------------------- calls


def test_an_unknown_function_is_an_error_naming_it() -> None:
    fails("shout('hi')", "unknown function 'shout'")
    with pytest.raises(ExpressionError, match="unknown function 'shout'"):
        EXPR.render("{{ shout('hi') }}", {})


def test_errors_name_the_expression_too() -> None:
    fails("int(age) + 1", "'int(age) + 1': int('x'): not a number", age="x")


def test_library_functions_raise_function_errors_when_called_directly() -> None:
    with pytest.raises(FunctionError, match=re.escape("int('abc'): not a number")):
        FUNCTIONS["int"]("abc")


def test_extra_functions_can_be_added() -> None:
    exprs = Expressions(extra_functions={"double": lambda x: 2 * x})
    assert exprs.evaluate("double(21)", {}) == 42


# ------------------------------------------------------------------------------------- filters


def test_string_functions_are_filters_too() -> None:
    scope = {"name": "  Ada  ", "csv": "a,b", "when": "2024-05-31", "body": {"a": {"b": 1}}}
    assert EXPR.render("{{ name | strip | upper }}", scope) == "ADA"
    assert EXPR.render("{{ csv | split(',') | join(' & ') }}", scope) == "a & b"
    assert EXPR.render("{{ when | format_date('%d.%m.') }}", scope) == "31.05."
    assert EXPR.render("{{ when | add_days(1) }}", scope) == "2024-06-01"
    assert EXPR.render("{{ body | json_get('a.b') }}", scope) == "1"
    assert EXPR.render("{{ 'yes' if csv | contains('b') }}", scope) == "yes"
    assert EXPR.render("{{ 'ok' if csv | matches('^a,') }}", scope) == "ok"
    assert EXPR.render("{{ 'a-b' | replace('-', '+') }}", scope) == "a+b"


def test_library_filters_let_an_undefined_value_through_like_jinjas_own() -> None:
    source = (
        "[{{ missing | strip }}][{{ missing | split(',') | join(' & ') }}][{{ missing | format_date('%d') }}]"
    )
    assert EXPR.render(source, {}) == "[][][]"


def test_calling_a_function_on_an_undefined_value_says_so() -> None:
    with pytest.raises(ExpressionError, match="upper\\(Undefined\\): expects text, got an undefined value"):
        EXPR.render("{{ upper(missing) }}", {})
