"""One expression language for skills: Jinja2 in a sandbox with limits.

Bare expressions (``assign`` values, ``if:`` conditions) and ``{{ }}`` templates (message texts, URLs,
headers) share one set of functions. Each source string is compiled once and cached. The sandbox is
:mod:`rejoinder.expr.sandbox`, the limits it enforces :mod:`rejoinder.expr.limits`; this module compiles,
evaluates and renders, turns every failure into an :class:`ExpressionError` that names its source, and checks
a source statically (unknown functions, the names it reads).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextlib import contextmanager, nullcontext
from random import Random
from typing import Any, cast

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from rejoinder.expr import budget, chance
from rejoinder.expr.budget import MAX_VALUE_SIZE, OverBudget
from rejoinder.expr.errors import ExpressionError, ExpressionSyntaxError, LimitExceeded
from rejoinder.expr.functions import FILTERS, FUNCTIONS, FunctionError, ValueTooLarge
from rejoinder.expr.limits import MAX_OUTPUT, TOO_LONG, check_result, check_value_size
from rejoinder.expr.sandbox import LenientUndefined, Sandbox

_CACHE_LIMIT = 4096

CompiledExpression = Callable[[Mapping[str, Any]], Any]


def _shown(source: str) -> str:
    return repr(source) if len(source) <= 80 else repr(source[:77] + "...")


@contextmanager
def _syntax_errors(kind: str, source: str) -> Iterator[None]:
    """Turn a failure to compile ``source`` (an expression or a template) into an ExpressionSyntaxError."""
    try:
        yield
    except TemplateSyntaxError as exc:
        raise ExpressionSyntaxError(f"invalid {kind} {_shown(source)}: {exc.message}", exc.lineno) from exc
    except _TOO_DEEP_TO_COMPILE:
        raise ExpressionSyntaxError(f"invalid {kind} {_shown(source)}: {_TOO_DEEP}") from None


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Keep ``value`` in ``cache``, emptied first when full: a visitor's sources must not grow it without end."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _failure(source: str, exc: BaseException) -> ExpressionError:
    """The error a caller sees: which source failed, and why."""
    if isinstance(exc, SecurityError):
        return ExpressionError(f"{_shown(source)}: not allowed: {exc}")
    if isinstance(exc, RecursionError):
        return LimitExceeded(f"{_shown(source)}: recursion too deep")
    message = str(exc)
    if isinstance(exc, UndefinedError | TemplateError) and exc.message:
        message = exc.message
    kind = LimitExceeded if isinstance(exc, LimitExceeded | ValueTooLarge | OverBudget) else ExpressionError
    return kind(f"{_shown(source)}: {message}")


_FAILURES = (
    ExpressionError,
    OverBudget,
    FunctionError,
    TemplateError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    RecursionError,
    MemoryError,
)


_CONTAINER_TYPES = frozenset({list, dict, tuple})


def _plain(value: Any) -> Any:
    """Lazy results (generators from filters, ranges, dict views) become lists: variables hold plain data."""
    if isinstance(value, Iterator | range | MappingView):
        value = list(itertools.islice(cast(Iterable[Any], value), MAX_VALUE_SIZE + 1))
        check_value_size(len(value), "the result")
    if type(value) in _CONTAINER_TYPES:
        check_result(value, lambda: "the result")
    return value


# Jinja's parser and code generator recurse on the source's nesting, and so does Python's compiler.
_TOO_DEEP_TO_COMPILE = (RecursionError, SyntaxError, MemoryError)


class Expressions:
    """Compiles, caches and evaluates skill expressions and templates."""

    def __init__(self, extra_functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        functions = {**FUNCTIONS, **(extra_functions or {})}
        self._strict = Sandbox(StrictUndefined)
        self._lenient = Sandbox(LenientUndefined)
        self._statements = Sandbox(LenientUndefined, statements=True)
        for env in (self._strict, self._lenient, self._statements):
            env.globals.update(functions)
            env.filters.update(FILTERS)
        self._expressions: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}
        self._trees: dict[tuple[str, bool], nodes.Template] = {}

    # ------------------------------------------------------------------ compile

    def compile_expression(self, source: str) -> Any:
        """The compiled form of a bare expression (cached). Raises ExpressionSyntaxError."""
        compiled = self._expressions.get(source)
        if compiled is None:
            with _syntax_errors("expression", source):
                compiled = self._strict.compile_expression(source, undefined_to_none=False)
            _remember(self._expressions, source, compiled)
        return compiled

    def compile_template(self, source: str) -> Any:
        """The compiled form of a template (cached). Raises ExpressionSyntaxError."""
        compiled = self._templates.get(source)
        if compiled is None:
            env = self._statements if "{%" in source else self._lenient
            with _syntax_errors("template", source):
                compiled = env.from_string(source)
            _remember(self._templates, source, compiled)
        return compiled

    # ------------------------------------------------------------------ evaluate

    @contextmanager
    def turn(
        self, time_budget: float = budget.DEFAULT_TIME_BUDGET, source: Random | None = None
    ) -> Iterator[budget.Budget]:
        """One budget, one CPU-time deadline and one source of randomness (``source``, when given) for every
        evaluation inside the block (a turn)."""
        drawing = chance.drawing(source) if source is not None else nullcontext()
        with budget.spending(budget.Budget(time_budget)) as spent, drawing:
            yield spent

    @contextmanager
    def _budgeted(self) -> Iterator[None]:
        """Outside a turn, each evaluation gets a budget of its own."""
        if budget.active() is not None:
            yield
            return
        with budget.spending(budget.Budget()):
            yield

    def evaluate(self, source: str, scope: Mapping[str, Any]) -> Any:
        """Evaluate a bare expression. An undefined name is an error, not a silent empty value."""
        compiled = self.compile_expression(source)
        try:
            with self._budgeted():
                value = _plain(compiled(scope))
        except _FAILURES as exc:
            raise _failure(source, exc) from exc
        if isinstance(value, Undefined):
            raise ExpressionError(f"{_shown(source)}: {value._undefined_message}")
        return value

    def render(self, source: str, scope: Mapping[str, Any]) -> str:
        """Render a template; undefined names render as empty. Text without ``{{``/``{%`` comes back as is."""
        if not is_template(source):
            return source
        template = self.compile_template(source)
        try:
            with self._budgeted():
                text: str = template.render(scope)
        except _FAILURES as exc:
            raise _failure(source, exc) from exc
        # Without {% %}, the output is a fixed number of values, each checked on its own when written.
        if len(text) > MAX_OUTPUT:
            raise LimitExceeded(f"{_shown(source)}: {TOO_LONG}")
        return text

    # ------------------------------------------------------------------ static checks

    def parse(self, source: str, *, template: bool) -> nodes.Template:
        """The syntax tree of ``source`` (cached: do not change it). Raises ExpressionSyntaxError."""
        key = (source, template)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._parse(source, template=template)
            _remember(self._trees, key, tree)
        return tree

    def _parse(self, source: str, *, template: bool) -> nodes.Template:
        env = self._lenient if template else self._strict
        text = source if template else "{{ " + source + " }}"
        what = "template" if template else "expression"
        try:
            return env.parse(text)
        except TemplateSyntaxError as exc:
            raise ExpressionSyntaxError(
                f"invalid {what} {_shown(source)}: {exc.message}", exc.lineno
            ) from exc
        except RecursionError:
            raise ExpressionSyntaxError(f"invalid {what} {_shown(source)}: {_TOO_DEEP}") from None

    def syntax_error(self, source: str, *, template: bool) -> ExpressionSyntaxError | None:
        """The first problem that stops ``source`` from running, or None when it compiles.

        Besides syntax: unknown filters, tests and functions (also inside ``{% if %}``, where Jinja would only
        notice them at run time) and nesting too deep to compile.
        """
        if template and not is_template(source):
            return None
        try:
            if template:
                self.compile_template(source)
            else:
                self.compile_expression(source)
            tree = self.parse(source, template=template)
            env = self._lenient if template else self._strict
            try:
                unknown = _unknown_names(tree, env)
            except RecursionError:
                unknown = _TOO_DEEP
        except ExpressionSyntaxError as exc:
            return exc
        if unknown is None:
            return None
        return ExpressionSyntaxError(
            f"invalid {'template' if template else 'expression'} {_shown(source)}: {unknown}"
        )

    def names_used(self, source: str, *, template: bool) -> set[str]:
        """Top-level names a source reads that are not functions (for undefined-variable warnings)."""
        env = self._lenient if template else self._strict
        try:
            ast = self.parse(source, template=template)
            found = meta.find_undeclared_variables(ast)
            called = {
                node.node.name for node in ast.find_all(nodes.Call) if isinstance(node.node, nodes.Name)
            }
        except (ExpressionSyntaxError, TemplateError, RecursionError):
            return set()  # reported as a syntax error
        return {name for name in found if name not in env.globals and name not in called}


_TOO_DEEP = "nested too deeply"


def _declared(tree: nodes.Template) -> set[str]:
    """Names a template defines itself: macros, ``{% set %}``, loop variables and ``caller``."""
    names = {node.name for node in tree.find_all(nodes.Macro)}
    names.update(node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param"))
    if any(True for _ in tree.find_all(nodes.CallBlock)):
        names.add("caller")
    return names


def _unknown_names(tree: nodes.Template, env: Sandbox) -> str | None:
    """The first filter, test or function ``tree`` uses that does not exist, worded for a bot designer."""
    for node in tree.find_all((nodes.Filter, nodes.Test, nodes.Call, nodes.FilterBlock)):
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            return f"no filter named {node.name!r}{_close(node.name, env.filters)}"
        if isinstance(node, nodes.Test) and node.name not in env.tests:
            return f"no test named {node.name!r}{_close(node.name, env.tests)}"
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            name = node.node.name
            if name not in env.globals and name not in _declared(tree):
                return f"no function named {name!r}{_close(name, env.globals)}"
    return None


def _close(name: str, known: Iterable[str]) -> str:
    public = [candidate for candidate in known if not candidate.startswith("_")]
    close = difflib.get_close_matches(name, public, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_template(text: str) -> bool:
    """Whether ``text`` has template markup (``{{`` or ``{%``); anything else is plain text."""
    return "{{" in text or "{%" in text
