"""One expression language for skills: Jinja2 in a sandbox with limits.

Bare expressions (``assign`` values, ``if:`` conditions) and ``{{ }}`` templates (message texts, URLs,
headers) share one set of functions. Each source string is compiled once and cached.

A skill must not be able to stall or exhaust the server. Everywhere, ``range()`` is capped, operators, calls
and filters refuse to build huge texts, lists or numbers, and rendered text may not exceed
:data:`MAX_OUTPUT`. Templates with ``{% %}`` statements, the only sources that can loop, recurse or buffer
output, also draw on a per-render budget of steps (loop iterations and calls) and of characters built, and
cap macro nesting. The checks sit in the sandbox's hooks (calls, intercepted operators, output finalisation)
and in a compile-time rewrite of ``{% for %}`` and ``~``, so ``count + 1`` or ``Hi {{ name }}`` pays almost
nothing for them.
"""

from __future__ import annotations

import functools
import itertools
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextvars import ContextVar
from typing import Any, cast

from jinja2 import (
    ChainableUndefined,
    StrictUndefined,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
    pass_environment,
)
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer

from rejoinder.expr.functions import FILTERS, FUNCTIONS, MAX_VALUE_SIZE, FunctionError, ValueTooLarge, join

MAX_OUTPUT = 65_536  # characters of rendered text (a template, a macro's result, a {% set %} block)
MAX_STEPS = 100_000  # loop iterations plus calls in one render
NESTED_CALL_STEPS = 10  # a macro call or recursive loop runs a whole body: it costs more than one step
MAX_PRODUCED = 20_000_000  # characters and items built by operators and output in one render
MAX_RANGE = 100_000  # numbers in one range()
MAX_INT_BITS = 10_000  # about 3,000 decimal digits
MAX_NESTING = 50  # macro calls and recursive loops inside each other
MAX_JSON_INDENT = 32

_CACHE_LIMIT = 4096


class ExpressionError(Exception):
    """An expression or template could not be evaluated (undefined name, bad value, sandbox limit)."""


class ExpressionSyntaxError(ExpressionError):
    """A source string is not a valid expression or template."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


class LimitExceeded(ExpressionError):
    """An evaluation or render went over one of the sandbox's limits."""


# ------------------------------------------------------------------------------------- budget


class _Budget:
    """What one evaluation or render has used so far."""

    __slots__ = ("nesting", "produced", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.produced = 0
        self.nesting = 0

    def step(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"more than {MAX_STEPS:,} loop iterations and calls")

    def produce(self, size: int) -> None:
        self.produced += size
        if self.produced > MAX_PRODUCED:
            raise LimitExceeded(f"builds more than {MAX_PRODUCED:,} characters or items in total")


# Set while a template with statements renders; None otherwise (then only the per-value checks apply).
_BUDGET: ContextVar[_Budget | None] = ContextVar("rejoinder_expr_budget", default=None)


def _produce(size: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.produce(size)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable: each iteration costs one step."""
    budget = _BUDGET.get()
    if budget is None:
        yield from iterable
        return
    for item in iterable:
        budget.step()
        yield item


def _concat(parts: list[Any]) -> str:
    """The ``~`` operator, with its result size checked before it is built."""
    texts = [part if type(part) is str else str(part) for part in parts]
    size = sum(map(len, texts))
    _limit(size, "'~'")
    _produce(size)
    return "".join(texts)


def _finalize(value: Any) -> str:
    """Every ``{{ }}`` output passes here; counting it bounds what macros and blocks buffer before joining."""
    text = value if type(value) is str else _shown_value(value)
    _produce(len(text))
    return text


def _shown_value(value: Any) -> str:
    """What ``{{ value }}`` shows: ``null`` is empty text, like an undefined variable (never "None")."""
    return "" if value is None else str(value)


_TOO_LONG = f"the rendered text is longer than {MAX_OUTPUT:,} characters"


def _bounded_concat(chunks: Iterable[str]) -> str:
    """Joins rendered chunks, stopping as soon as they exceed MAX_OUTPUT."""
    parts: list[str] = []
    append = parts.append
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise LimitExceeded(_TOO_LONG)
        append(chunk)
    return "".join(parts)


def _range(*args: int) -> range:
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        raise LimitExceeded(f"range() of more than {MAX_RANGE:,} numbers")
    return numbers


# ------------------------------------------------------------------------------------- size checks


def _limit(size: int, what: str) -> None:
    if size > MAX_VALUE_SIZE:
        raise LimitExceeded(f"{what}: the result would be larger than {MAX_VALUE_SIZE:,} characters or items")


def _is_int(value: Any) -> bool:
    return type(value) is int


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses operations whose result would be too large, before computing them."""
    if operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            size = len(left) + len(right)
            _limit(size, "'+'")
            _produce(size)
    elif operator == "*":
        if isinstance(left, str | list | tuple) and _is_int(right):
            size = len(left) * right
        elif _is_int(left) and isinstance(right, str | list | tuple):
            size = left * len(right)
        elif _is_int(left) and _is_int(right):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"'*': the result would have more than {MAX_INT_BITS:,} bits")
            return
        else:
            return
        _limit(size, "'*'")
        _produce(max(size, 0))
    elif operator == "**":
        if _is_int(left) and _is_int(right) and right > 0 and left.bit_length() * right > MAX_INT_BITS:
            raise LimitExceeded(f"'**': the result would have more than {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        _check_printf(left, right)


def _numbers_total(spec: str) -> int:
    """The sum of the numbers in a format spec: its widths and precisions."""
    return sum(int(number) for number in re.findall(r"[0-9]+", spec))


def _longest(values: Iterable[Any]) -> int:
    return max((len(value) for value in values if isinstance(value, str | list | tuple | dict)), default=0)


def _format_args(args: Any) -> Iterable[Any]:
    if isinstance(args, tuple):
        return args
    if isinstance(args, Mapping):
        return args.values()
    return (args,)


def _check_printf(fmt: str, args: Any = ()) -> None:
    """Bounds ``%`` formatting by its format's widths and precisions plus its longest argument per field."""
    fields = 0
    widths = 0
    position = fmt.find("%")
    while position != -1:
        end = position + 1
        if fmt.startswith("(", end):  # %(name)s: the name may hold digits
            end = max(fmt.find(")", end), end)
        while end < len(fmt) and fmt[end] not in "diouxXeEfFgGcrsa%":
            if fmt[end] == "*":
                raise FunctionError("'%' formatting: '*' widths are not supported")
            end += 1
        spec = fmt[position + 1 : end].rpartition(")")[2]
        widths += _numbers_total(spec)
        fields += 1
        position = fmt.find("%", end + 1)
    _limit(len(fmt) + widths + fields * _longest(_format_args(args)), "'%' formatting")


def _check_format_spec(fmt: str, args: Iterable[Any]) -> None:
    """Bounds ``str.format`` by its specs' widths and precisions plus its longest argument per field."""
    fields = 0
    widths = 0
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        fields += 1
        if "{" in (spec or ""):
            raise FunctionError("format(): nested replacement fields are not supported")
        widths += _numbers_total(spec or "")
    _limit(len(fmt) + widths + fields * _longest(args), "format()")


def _check_result(value: Any, what: Callable[[], str]) -> Any:
    if isinstance(value, str | list | tuple | dict) and len(value) > MAX_VALUE_SIZE:
        _limit(len(value), what())
    return value


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _check_str_method(name: str, text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Python string methods that can blow a text up, checked from their arguments."""
    if name == "format":
        _check_format_spec(text, [*args, *kwargs.values()])
    elif name == "format_map" and args and isinstance(args[0], Mapping):
        _check_format_spec(text, args[0].values())
    elif name in _WIDTH_METHODS and args and _is_int(args[0]):
        _limit(args[0], f"{name}()")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if _is_int(tabsize):
            _limit(len(text) + text.count("\t") * tabsize, "expandtabs()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        if len(new) > len(old):
            _limit(len(text) + text.count(old) * (len(new) - len(old)), "replace()")
    elif name == "join" and args and isinstance(args[0], list | tuple):
        items = args[0]
        if all(isinstance(item, str) for item in items):
            _limit(sum(map(len, items)) + len(text) * max(len(items) - 1, 0), "join()")


# ------------------------------------------------------------------------------------- filters


def _guard(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``original`` with ``check`` run on its arguments first (after Jinja's context/environment argument)."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return _check_result(original(*args, **kwargs), lambda: original.__name__)

    return guarded


def _width(value: Any) -> int:
    return value if _is_int(value) else len(str(value))


def _check_center(value: Any, width: Any = 80) -> None:
    _limit(len(str(value)) + _width(width), "center")


def _check_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    _limit(len(text) + (text.count("\n") + 1) * _width(width), "indent")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_printf(str(value), kwargs or args)


def _check_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise FunctionError(f"sum: start must be a number, got {type(start).__name__}")


def _check_count(value: Any, count: Any = 1, *_: Any, **__: Any) -> None:
    if _is_int(count) and count > MAX_RANGE:
        raise LimitExceeded(f"more than {MAX_RANGE:,} groups")


def _check_tojson(value: Any, indent: Any = None) -> None:
    if indent is not None and _width(indent) > MAX_JSON_INDENT:
        raise FunctionError(f"tojson: indent must be at most {MAX_JSON_INDENT}")


def _check_wordwrap(s: Any, width: Any = 79, long_words: Any = 1, wrapstring: Any = None, **_: Any) -> None:
    _limit(len(str(s)) * (1 + len(str(wrapstring or "\n"))), "wordwrap")


@pass_environment
def _join_filter(environment: Any, value: Iterable[Any], d: str = "", attribute: str | None = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(environment, attribute), value)
    return join(list(value), str(d))


def _replace_filter(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old, new = str(s), str(old), str(new)
    if len(new) > len(old):
        occurrences = text.count(old) if count is None else min(text.count(old), max(count, 0))
        _limit(len(text) + occurrences * (len(new) - len(old)), "replace")
    return text.replace(old, new, -1 if count is None else count)


_SAFE_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _guard(DEFAULT_FILTERS["center"], _check_center),
    "indent": _guard(DEFAULT_FILTERS["indent"], _check_indent),
    "format": _guard(DEFAULT_FILTERS["format"], _check_format),
    "sum": _guard(DEFAULT_FILTERS["sum"], _check_sum),
    "batch": _guard(DEFAULT_FILTERS["batch"], _check_count),
    "slice": _guard(DEFAULT_FILTERS["slice"], _check_count),
    "tojson": _guard(DEFAULT_FILTERS["tojson"], _check_tojson),
    "wordwrap": _guard(DEFAULT_FILTERS["wordwrap"], _check_wordwrap),
    "join": _join_filter,
    "replace": _replace_filter,
    "_counted": _counted,
    "_concat": _concat,
}


# ------------------------------------------------------------------------------------- sandbox


class _LenientUndefined(ChainableUndefined):
    """Renders as empty text; remembers that ``name.attr`` came from an undefined value (not a bare name)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(self)(obj=self, name=name)

    __getitem__ = __getattr__


class _Budgeted(NodeTransformer):
    """Compile-time rewrite: ``{% for %}`` iterables and ``~`` go through the budgeted helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_counted", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes), "_concat", [], [], None, None, lineno=node.lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox: no internals, no mutation of values passed in, and the limits above."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, undefined: type[Undefined], *, statements: bool = False) -> None:
        # Only sources with {% %} can loop, call macros or buffer output, so only they need the budget hooks.
        super().__init__(
            undefined=undefined, autoescape=False, finalize=_finalize if statements else _shown_value
        )
        if statements:
            self.concat = _bounded_concat  # type: ignore[method-assign]
        self.lenient = not issubclass(undefined, StrictUndefined)
        del self.globals["lipsum"]  # generates unbounded text
        self.globals["range"] = _range
        self.filters.update(_SAFE_FILTERS)

    def make_globals(self, d: Any) -> Any:
        # A plain dict, not Jinja's ChainMap: every context copies the globals, and a dict copies fast.
        return {**self.globals, **(d or {})}

    def _generate(self, source: nodes.Template, name: Any, filename: Any, defer_init: bool = False) -> Any:
        _Budgeted().visit(source)
        source.set_environment(self)
        return super()._generate(source, name, filename, defer_init=defer_init)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to {attribute!r} of {type(obj).__name__}")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call in a skill: budgeted, checked for unknown functions and oversized results."""
        if isinstance(__obj, Undefined):
            return __self._call_undefined(__obj)
        budget = _BUDGET.get()
        nested = isinstance(__obj, Macro | LoopContext)
        if budget is not None:
            budget.step(NESTED_CALL_STEPS if nested else 1)
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in a checked formatter
        if isinstance(getattr(method, "__self__", None), str):
            _check_str_method(method.__name__, method.__self__, args, kwargs)
        if budget is not None and nested:
            budget.nesting += 1
            try:
                if budget.nesting > MAX_NESTING:
                    raise LimitExceeded(f"macros or recursive loops nested more than {MAX_NESTING} deep")
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                budget.nesting -= 1
        else:
            result = super().call(__context, __obj, *args, **kwargs)
        return _check_result(result, lambda: f"{getattr(__obj, '__name__', 'the call')}()")

    def _call_undefined(self, obj: Undefined) -> Any:
        if obj._undefined_obj is missing:
            raise ExpressionError(f"unknown function {obj._undefined_name!r}")
        if self.lenient:
            return obj
        raise ExpressionError(obj._undefined_message)


# ------------------------------------------------------------------------------------- front door

CompiledExpression = Callable[[Mapping[str, Any]], Any]


def _shown(source: str) -> str:
    return repr(source) if len(source) <= 80 else repr(source[:77] + "...")


def _failure(source: str, exc: BaseException) -> ExpressionError:
    """The error a caller sees: which source failed, and why."""
    if isinstance(exc, SecurityError):
        return ExpressionError(f"{_shown(source)}: not allowed: {exc}")
    if isinstance(exc, RecursionError):
        return LimitExceeded(f"{_shown(source)}: recursion too deep")
    message = str(exc)
    if isinstance(exc, UndefinedError | TemplateError) and exc.message:
        message = exc.message
    kind = LimitExceeded if isinstance(exc, LimitExceeded | ValueTooLarge) else ExpressionError
    return kind(f"{_shown(source)}: {message}")


_FAILURES = (
    ExpressionError,
    FunctionError,
    TemplateError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    RecursionError,
    MemoryError,
)


_PLAIN_TYPES = frozenset({str, int, float, bool, type(None), list, dict, tuple})


def _plain(value: Any) -> Any:
    """Lazy results (generators from filters, ranges, dict views) become lists: variables hold plain data."""
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, Iterator | range | MappingView):
        value = list(itertools.islice(cast(Iterable[Any], value), MAX_VALUE_SIZE + 1))
        _limit(len(value), "the result")
    return value


class Expressions:
    """Compiles, caches and evaluates skill expressions and templates."""

    def __init__(self, extra_functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        functions = {**FUNCTIONS, **(extra_functions or {})}
        self._strict = _Sandbox(StrictUndefined)
        self._lenient = _Sandbox(_LenientUndefined)
        self._statements = _Sandbox(_LenientUndefined, statements=True)
        for env in (self._strict, self._lenient, self._statements):
            env.globals.update(functions)
            env.filters.update(FILTERS)
        self._expressions: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}

    # ------------------------------------------------------------------ compile

    def compile_expression(self, source: str) -> Any:
        """The compiled form of a bare expression (cached). Raises ExpressionSyntaxError."""
        compiled = self._expressions.get(source)
        if compiled is None:
            try:
                compiled = self._strict.compile_expression(source, undefined_to_none=False)
            except TemplateSyntaxError as exc:
                message = f"invalid expression {_shown(source)}: {exc.message}"
                raise ExpressionSyntaxError(message, exc.lineno) from exc
            if len(self._expressions) >= _CACHE_LIMIT:
                self._expressions.clear()
            self._expressions[source] = compiled
        return compiled

    def compile_template(self, source: str) -> Any:
        """The compiled form of a template (cached). Raises ExpressionSyntaxError."""
        compiled = self._templates.get(source)
        if compiled is None:
            try:
                env = self._statements if "{%" in source else self._lenient
                compiled = env.from_string(source)
            except TemplateSyntaxError as exc:
                message = f"invalid template {_shown(source)}: {exc.message}"
                raise ExpressionSyntaxError(message, exc.lineno) from exc
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[source] = compiled
        return compiled

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, source: str, scope: Mapping[str, Any]) -> Any:
        """Evaluate a bare expression. An undefined name is an error, not a silent empty value."""
        compiled = self.compile_expression(source)
        try:
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
        if "{%" not in source:
            # No loops, macros or blocks: the output is a fixed number of values, each already size-checked.
            try:
                text: str = template.render(scope)
            except _FAILURES as exc:
                raise _failure(source, exc) from exc
            if len(text) > MAX_OUTPUT:
                raise LimitExceeded(f"{_shown(source)}: {_TOO_LONG}")
            return text
        token = _BUDGET.set(_Budget())
        try:
            return str(template.render(scope))
        except _FAILURES as exc:
            raise _failure(source, exc) from exc
        finally:
            _BUDGET.reset(token)

    # ------------------------------------------------------------------ static checks

    def syntax_error(self, source: str, *, template: bool) -> ExpressionSyntaxError | None:
        """The syntax error in ``source``, or None when it compiles."""
        try:
            if not template:
                self.compile_expression(source)
            elif is_template(source):
                self.compile_template(source)
        except ExpressionSyntaxError as exc:
            return exc
        return None

    def names_used(self, source: str, *, template: bool) -> set[str]:
        """Top-level names a source reads that are not functions (for undefined-variable warnings)."""
        env = self._lenient if template else self._strict
        text = source if template else "{{ " + source + " }}"
        try:
            ast: nodes.Template = env.parse(text)
        except TemplateSyntaxError:
            return set()
        return {name for name in meta.find_undeclared_variables(ast) if name not in env.globals}


def is_template(text: str) -> bool:
    """Whether ``text`` has template markup (``{{`` or ``{%``); anything else is plain text."""
    return "{{" in text or "{%" in text
