"""Expressions and templates: evaluation, rendering, static checks, and the sandbox's limits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rejoinder.expr import ExpressionError, Expressions, ExpressionSyntaxError, LimitExceeded, is_template
from rejoinder.expr.budget import MAX_STEPS
from rejoinder.expr.limits import MAX_NESTING, MAX_OUTPUT

SCOPE: dict[str, Any] = {
    "count": 3,
    "name": "Ada",
    "items": [{"sku": "A1", "qty": 2}, {"sku": "B7", "qty": 1}],
    "conversation": {"id": "conv_1", "started_at": "2024-05-31T10:00:00Z"},
    "user": {"id": "u1", "tier": "gold"},
    "env": {"SHOP_BACKEND": "https://shop.test"},
}


@pytest.fixture
def exprs() -> Expressions:
    return Expressions()


# ------------------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("count + 1", 4),
        ("count * 2 > 5 and name == 'Ada'", True),
        ("name ~ '!' ", "Ada!"),
        ("items[1].sku", "B7"),
        ("items | map(attribute='qty') | sum", 3),
        ("user.tier == 'gold'", True),
        ("env.SHOP_BACKEND ~ '/chat'", "https://shop.test/chat"),
        ("conversation.id", "conv_1"),
        ("[1, 2] + [3]", [1, 2, 3]),
        ("'ab' * 3", "ababab"),
        ("2 ** 10", 1024),
        ("'%05.1f' % 3.14159", "003.1"),
        ("'{} has {}'.format(name, count)", "Ada has 3"),
        ("name.upper()", "ADA"),
        ("{'a': count}", {"a": 3}),
    ],
)
def test_evaluate(exprs: Expressions, source: str, expected: Any) -> None:
    assert exprs.evaluate(source, SCOPE) == expected


def test_an_undefined_name_in_an_expression_is_an_error(exprs: Expressions) -> None:
    with pytest.raises(ExpressionError, match="'missing' is undefined"):
        exprs.evaluate("missing", SCOPE)
    with pytest.raises(ExpressionError, match="'missing' is undefined"):
        exprs.evaluate("missing + 1", SCOPE)
    with pytest.raises(ExpressionError, match="no attribute 'nope'"):
        exprs.evaluate("user.nope", SCOPE)


def test_lazy_results_are_stored_as_plain_lists(exprs: Expressions) -> None:
    assert exprs.evaluate("items | map(attribute='sku')", SCOPE) == ["A1", "B7"]
    assert exprs.evaluate("range(3)", SCOPE) == [0, 1, 2]
    assert exprs.evaluate("user.keys()", SCOPE) == ["id", "tier"]


def test_values_passed_in_cannot_be_changed(exprs: Expressions) -> None:
    scope = {"items": [1, 2], "user": {"id": "u1"}}
    with pytest.raises(ExpressionError, match="not allowed"):
        exprs.evaluate("items.append(3)", scope)
    with pytest.raises(ExpressionError, match="not allowed"):
        exprs.evaluate("user.update({'id': 'admin'})", scope)
    assert scope == {"items": [1, 2], "user": {"id": "u1"}}


def test_compiled_expressions_are_cached(exprs: Expressions) -> None:
    assert exprs.compile_expression("count + 1") is exprs.compile_expression("count + 1")
    assert exprs.compile_template("Hi {{ name }}") is exprs.compile_template("Hi {{ name }}")


def test_a_cached_expression_evaluates_quickly(exprs: Expressions) -> None:
    exprs.evaluate("count + 1", SCOPE)
    started = time.thread_time()  # CPU, which a busy machine does not inflate
    for _ in range(10_000):
        exprs.evaluate("count + 1", SCOPE)
        exprs.render("Hi {{ name }}", SCOPE)
    assert time.thread_time() - started < 1.0  # about 50 ms; recompiling each time would take seconds


# ------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ name }}!", "Hi Ada!"),
        ("Hi {{ missing }}!", "Hi !"),
        ("Hi {{ missing or 'there' }}!", "Hi there!"),
        ("{{ missing.deeper.still }}|{{ missing.upper() }}|{{ user.nope }}", "||"),
        ("{{ env.SHOP_BACKEND }}/chat/resume-token", "https://shop.test/chat/resume-token"),
        (
            "{% for i in items %}{{ loop.index }}. {{ i.sku }} x{{ i.qty }}\n{% endfor %}",
            "1. A1 x2\n2. B7 x1\n",
        ),
        ("{% if count > 2 %}many{% else %}few{% endif %}", "many"),
        ("{% set total = items | sum(attribute='qty') %}{{ total }} items", "3 items"),
        ("{{ name | upper }} {{ name | lower }}", "ADA ada"),
        ("{{ 1 ~ 2 }}{{ name ~ '!' }}", "12Ada!"),
    ],
)
def test_render(exprs: Expressions, source: str, expected: str) -> None:
    assert exprs.render(source, SCOPE) == expected


def test_plain_text_is_returned_unchanged_without_compiling(exprs: Expressions, monkeypatch: Any) -> None:
    def no_compiling(source: str) -> None:
        raise AssertionError(f"compiled {source!r}")

    monkeypatch.setattr(exprs, "compile_template", no_compiling)
    for text in ["Hello there", "Braces { alone } and {# not a comment #} stay", "50% off {x}", ""]:
        assert exprs.render(text, SCOPE) is text


def test_is_template() -> None:
    assert is_template("Hi {{ name }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("{ plain } {# text #}")


# ------------------------------------------------------------------------------------- static checks


def test_syntax_errors(exprs: Expressions) -> None:
    with pytest.raises(ExpressionSyntaxError) as caught:
        exprs.compile_expression("count +")
    assert "invalid expression 'count +'" in str(caught.value)
    error = exprs.syntax_error("Hi {{ name ", template=True)
    assert error is not None
    assert error.lineno == 1
    assert exprs.syntax_error("{% for x in items %}\n{{ x }}", template=True) is not None
    assert exprs.syntax_error("Hi {{ name }}", template=True) is None
    assert exprs.syntax_error("no markup {", template=True) is None
    assert exprs.syntax_error("a ==", template=False) is not None
    assert exprs.syntax_error("a == 1", template=False) is None


def test_an_unknown_filter_is_a_syntax_error(exprs: Expressions) -> None:
    error = exprs.syntax_error("name | shout", template=False)
    assert error is not None
    assert "shout" in error.message


def test_names_used_lists_variables_but_not_functions(exprs: Expressions) -> None:
    assert exprs.names_used("len(items) > limit and now()", template=False) == {"items", "limit"}
    assert exprs.names_used("{% for i in items %}{{ i }}{{ greeting }}{% endfor %}", template=True) == {
        "items",
        "greeting",
    }
    assert exprs.names_used("broken {{", template=True) == set()


# ------------------------------------------------------------------------------------- sandbox


def stopped(action: Callable[[], Any], message: str, error: type[ExpressionError] = LimitExceeded) -> str:
    """Runs a runaway expression or template: it must fail with ``error`` quickly."""
    started = time.perf_counter()
    with pytest.raises(error) as caught:
        action()
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert message in str(caught.value), str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        "''.__class__",
        "name.__class__.__mro__",
        "items.__len__",
        "user['__class__']",
        "'{0.__class__}'.format(1)",
    ],
)
def test_private_attributes_are_not_allowed(exprs: Expressions, source: str) -> None:
    stopped(lambda: exprs.evaluate(source, SCOPE), "not allowed", ExpressionError)
    # in templates too: not silently rendered as empty text
    stopped(lambda: exprs.render("{{ " + source + " }}", SCOPE), "not allowed", ExpressionError)


def test_huge_ranges_are_refused(exprs: Expressions) -> None:
    stopped(lambda: exprs.evaluate("range(10 ** 12) | list", SCOPE), "range() of more than 100,000 numbers")
    stopped(lambda: exprs.render("{% for i in range(10 ** 12) %}{% endfor %}", SCOPE), "range() of more")
    assert len(exprs.evaluate("range(100000)", SCOPE)) == 100_000


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("'x' * 10 ** 9", "'*': the result would be larger than 1,000,000"),
        ("10 ** 9 * [0]", "'*': the result would be larger than 1,000,000"),
        ("(name * 200000) + (name * 200000)", "'+': the result would be larger than 1,000,000"),
        ("(name * 300000) ~ (name * 300000)", "'~': the result would be larger than 1,000,000"),
        ("2 ** 100000", "'**': the result would have more than 10,000 bits"),
        ("(7 ** 3000) * (7 ** 3000)", "'*': the result would have more than 10,000 bits"),
        ("'%0999999999d' % 1", "'%' formatting: the result would be larger"),
        ("('%s' * 1000) % (('x' * 999999,) * 1000)", "'*': the result would be larger"),
        ("('%s' * 1000) % big", "'%' formatting: the result would be larger"),
        ("'{:>999999999}'.format(1)", "format(): the result would be larger"),
        ("('{0}' * 1000).format('x' * 999999)", "format(): the result would be larger"),
        ("'a'.center(10 ** 9)", "center(): the result would be larger"),
        ("'a'.zfill(10 ** 9)", "zfill(): the result would be larger"),
        ("'a'|center(10 ** 9)", "center: the result would be larger"),
        ("'a'|indent(10 ** 9)", "indent: the result would be larger"),
        ("'%999999999s'|format(1)", "'%' formatting: the result would be larger"),
        ("'x'|replace('', 'y' * 999999)", "replace: the result would be larger"),
        ("'x'.replace('', 'y' * 999999)", "replace(): the result would be larger"),
        ("([('x' * 999999)] * 1000) | join", "'*': the result would be larger"),
        ("big | join", "join(): the result would be larger"),
        ("join(big)", "join(): the result would be larger"),
        ("[1]|batch(10 ** 9, 0)|list", "more than 100,000 groups"),
    ],
)
def test_operations_that_would_build_huge_values_are_refused(
    exprs: Expressions, source: str, message: str
) -> None:
    stopped(lambda: exprs.evaluate(source, {**SCOPE, "big": ("x" * 999_999,) * 1000}), message)


def test_sum_refuses_list_concatenation(exprs: Expressions) -> None:
    stopped(
        lambda: exprs.evaluate("[[1] * 100] * 100 | sum(start=[])", SCOPE),
        "start must be a number",
        ExpressionError,
    )


def test_lipsum_is_not_available(exprs: Expressions) -> None:
    stopped(lambda: exprs.evaluate("lipsum(10 ** 9)", SCOPE), "unknown function 'lipsum'", ExpressionError)


def test_nested_loops_run_out_of_steps(exprs: Expressions) -> None:
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    message = stopped(
        lambda: exprs.render(source, SCOPE), f"more than {MAX_STEPS:,} loop iterations and calls"
    )
    assert message.startswith("'{% for i in range(100000) %}")


def test_reasonable_loops_run(exprs: Expressions) -> None:
    source = "{% for i in range(150) %}{% for j in range(150) %}{% endfor %}{% endfor %}done"
    assert exprs.render(source, SCOPE) == "done"


def test_deep_recursion_is_stopped(exprs: Expressions) -> None:
    source = "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}"
    stopped(lambda: exprs.render(source, SCOPE), f"nested more than {MAX_NESTING} deep")
    tree = {"children": []}
    tree["children"].append(tree)
    source = "{% for node in [tree] recursive %}{{ loop(node.children) }}{% endfor %}"
    stopped(lambda: exprs.render(source, {"tree": tree}), f"nested more than {MAX_NESTING} deep")


def test_shallow_but_wide_recursion_runs_out_of_steps(exprs: Expressions) -> None:
    source = "{% macro f(n) %}{% if n < 25 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}"
    stopped(lambda: exprs.render(source, SCOPE), "loop iterations and calls")


def test_moderate_recursion_works(exprs: Expressions) -> None:
    source = "{% macro count_down(n) %}{{ n }}{% if n > 0 %} {{ count_down(n - 1) }}{% endif %}{% endmacro %}"
    assert exprs.render(source + "{{ count_down(5) }}", SCOPE) == "5 4 3 2 1 0"


def test_rendered_text_is_capped(exprs: Expressions) -> None:
    assert len(exprs.render("{{ 'x' * size }}", {"size": MAX_OUTPUT})) == MAX_OUTPUT
    stopped(
        lambda: exprs.render("{{ 'x' * size }}", {"size": MAX_OUTPUT + 1}), "rendered text is longer than"
    )
    stopped(
        lambda: exprs.render("{% for i in range(700) %}{{ 'x' * 100 }}{% endfor %}", SCOPE),
        "rendered text is longer than",
    )
    stopped(
        lambda: exprs.render(
            "{% set x %}{% for i in range(700) %}{{ 'x' * 100 }}{% endfor %}{% endset %}ok", SCOPE
        ),
        "rendered text is longer than",
    )


def test_doubling_a_text_in_a_loop_is_stopped(exprs: Expressions) -> None:
    for operator in ("~", "+"):
        source = (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            f"{{% set ns.s = ns.s {operator} ns.s %}}{{% endfor %}}{{{{ ns.s | length }}}}"
        )
        stopped(
            lambda source=source: exprs.render(source, SCOPE), "the result would be larger than 1,000,000"
        )


def test_buffered_output_cannot_pile_up(exprs: Expressions) -> None:
    source = (
        "{% set x %}{% for i in range(100000) %}{{ 'a' * 999999 }}{% endfor %}{% endset %}{{ x | length }}"
    )
    stopped(lambda: exprs.render(source, SCOPE), "characters or items in total")


def test_limits_apply_per_render(exprs: Expressions) -> None:
    source = "{% for i in range(30000) %}{% endfor %}ok"
    for _ in range(3):  # each render has its own budget: 3 x 30,000 steps would exceed one budget
        assert exprs.render(source, SCOPE) == "ok"


def test_limits_do_not_hang_on_infinite_data(exprs: Expressions) -> None:
    def forever() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    stopped(
        lambda: exprs.render("{% for i in numbers %}{% endfor %}", {"numbers": forever()}), "loop iterations"
    )


def test_an_endless_iterator_result_is_cut_off(exprs: Expressions) -> None:
    def forever() -> Iterator[int]:
        while True:
            yield 1

    stopped(lambda: exprs.evaluate("numbers", {"numbers": forever()}), "the result would be larger than")
