"""One expression language for skills: Jinja2 in a sandbox with limits.

Bare expressions (``assign`` values, ``if:`` conditions) and ``{{ }}`` templates (message texts, URLs,
headers) share one set of functions. Each source string is compiled once and cached.

A skill must not be able to stall or exhaust the server. ``range()`` is capped; operators, literals, calls
and filters refuse to build values larger than :data:`MAX_VALUE_SIZE` (nested lists counted in full, however
often they are shared), and text is checked before it is written; rendered text may not exceed
:data:`MAX_OUTPUT`. Every evaluation draws on the turn's :class:`~rejoinder.expr.budget.Budget`: loop
iterations, calls and each item an iterating filter or function handles cost steps, and the turn has a
wall-clock deadline. The checks sit in the sandbox's hooks (calls, intercepted operators, output
finalisation) and in a compile-time rewrite of ``{% for %}``, ``~``, ``in`` and list literals, so
``count + 1`` or ``Hi {{ name }}`` pays almost nothing for them.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextlib import contextmanager
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

from rejoinder.expr import budget
from rejoinder.expr.budget import BULK_ITEMS, MAX_VALUE_SIZE, OverBudget
from rejoinder.expr.budget import MAX_PRODUCED as MAX_PRODUCED  # the limits, where callers look for them
from rejoinder.expr.budget import MAX_STEPS as MAX_STEPS
from rejoinder.expr.functions import FILTERS, FUNCTIONS, FunctionError, ValueTooLarge, join

MAX_OUTPUT = 65_536  # characters of rendered text (a template, a macro's result, a {% set %} block)
CALL_STEPS = 4  # a call through the sandbox takes a few microseconds
NESTED_CALL_STEPS = 10  # a macro call or recursive loop runs a whole body: it costs more than one step
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


def _produce(size: int) -> None:
    budget.current().produce(size)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable: each iteration costs one step."""
    current = budget.current()
    for item in iterable:
        current.step()
        yield item


def _concat(parts: list[Any]) -> str:
    """The ``~`` operator, with its result size checked before it is built."""
    texts: list[str] = []
    size = 0
    for part in parts:
        piece = budget.text(part, "'~'", MAX_VALUE_SIZE - size)
        size += len(piece)
        texts.append(piece)
    _limit(size, "'~'")
    _produce(size)
    return "".join(texts)


def _finalize(value: Any) -> str:
    """Every ``{{ }}`` output passes here: written with its length checked, and counted for the turn.

    ``null`` is shown as empty text, like an undefined variable (never "None").
    """
    current = budget.current()
    current.step()
    text = "" if value is None else budget.text(value, "the output", MAX_OUTPUT)
    current.produce(len(text))
    return text


def _walked(value: Any) -> Any:
    """A value C code walks through: each side of a comparison (``in``, ``==``, ``<``), a sliced value."""
    budget.current().charge_bulk(value)
    return value


def _literal(value: Any) -> Any:
    """A list, tuple or object literal with variables in it: ``[big, big]`` is twice the size of ``big``."""
    size = budget.current().check_size(value, "a literal")
    _produce(size)
    return value


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
            current = budget.current()
            size = current.size_of(left) + current.size_of(right)
            _limit(size, "'+'")
            _produce(size)
    elif operator == "*":
        if isinstance(left, str | list | tuple) and _is_int(right):
            size = budget.current().size_of(left) * right
        elif _is_int(left) and isinstance(right, str | list | tuple):
            size = left * budget.current().size_of(right)
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
    """The size of the largest value: a lower bound of the longest text any of them is written as."""
    current = budget.current()
    return max((current.size_of(value) for value in values), default=0)


def _format_args(args: Any) -> Iterable[Any]:
    if isinstance(args, tuple):
        return args
    if isinstance(args, Mapping):
        return args.values()
    return (args,)


def _formatting(size: int, what: str) -> None:
    """Refuses formatting whose result could be too large; charges writing it."""
    _limit(size, what)
    budget.current().step(size // BULK_ITEMS)


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
    _formatting(len(fmt) + widths + fields * _longest(_format_args(args)), "'%' formatting")


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
    _formatting(len(fmt) + widths + fields * _longest(args), "format()")


def _check_result(value: Any, what: Callable[[], str]) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_VALUE_SIZE:
            _limit(len(value), what())
    elif isinstance(value, list | tuple | dict):
        size = budget.current().size_of(value)
        if size > MAX_VALUE_SIZE:
            _limit(size, what())
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
        value = map(make_attrgetter(environment, attribute), budget.counted(value))
    return join(list(budget.counted(value, BULK_ITEMS)), str(d))


def _string_filter(value: Any) -> str:
    return budget.text(value, "string")


def _charging(original: Callable[..., Any], per: int) -> Callable[..., Any]:
    """``original``, a filter that goes through its input, charging a step per ``per`` items of it."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def charged(*args: Any, **kwargs: Any) -> Any:
        if len(args) > skip and isinstance(args[skip], Iterable) and not isinstance(args[skip], Undefined):
            args = (*args[:skip], budget.counted(args[skip], per), *args[skip + 1 :])
        return original(*args, **kwargs)

    return charged


def _writing(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, a filter that writes its input as text: refused before that text would be too long."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def written(*args: Any, **kwargs: Any) -> Any:
        if len(args) > skip:
            size = budget.current().charge_writing(args[skip])
            if size > MAX_VALUE_SIZE:
                _limit(size, original.__name__)
        return original(*args, **kwargs)

    return written


# Filters whose Python code handles each item (a step each), and those that leave it to C code (bulk).
_PER_ITEM = frozenset(
    {
        "map",
        "select",
        "reject",
        "selectattr",
        "rejectattr",
        "groupby",
        "unique",
        "dictsort",
        "sort",
        "min",
        "max",
    }
    | {"batch", "slice"}
)
_BULK = frozenset({"list", "sum", "reverse", "random", "last", "items"})
_WRITING = frozenset(
    {"tojson", "pprint", "e", "escape", "forceescape", "safe", "striptags", "title", "capitalize", "upper"}
    | {"lower", "trim", "truncate", "wordcount", "wordwrap", "center", "indent", "urlize", "urlencode"}
    | {"format", "replace", "xmlattr"}
)


def _budgeted_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    budgeted = dict(filters)
    for name in _PER_ITEM:
        budgeted[name] = _charging(budgeted[name], 1)
    for name in _BULK:
        budgeted[name] = _charging(budgeted[name], BULK_ITEMS)
    for name in _WRITING:
        budgeted[name] = _writing(budgeted[name])
    return budgeted


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
    "string": _string_filter,
    "_counted": _counted,
    "_concat": _concat,
    "_walked": _walked,
    "_literal": _literal,
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


def _through(node: nodes.Node, helper: str) -> nodes.Filter:
    return nodes.Filter(cast(nodes.Expr, node), helper, [], [], None, None, lineno=node.lineno)


class _Budgeted(NodeTransformer):
    """Compile-time rewrite: ``{% for %}`` iterables, ``~``, ``in`` and literals go through budgeted helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _through(node.iter, "_counted")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _through(nodes.List(node.nodes, lineno=node.lineno), "_concat")

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _through(node.expr, "_walked")
        for operand in node.ops:
            operand.expr = _through(operand.expr, "_walked")
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(
            node.arg, nodes.Slice
        ):  # compiled to a plain Python slice, which the sandbox never sees
            node.node = _through(node.node, "_walked")
        return node

    def _literal(self, node: nodes.List | nodes.Tuple | nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":  # a target: {% for a, b in … %}
            return node
        values = [item.value for item in node.items] if isinstance(node, nodes.Dict) else node.items
        if all(isinstance(value, nodes.Const) for value in values):
            return node  # written out in the source: its size is the source's
        return _through(node, "_literal")

    visit_List = visit_Tuple = visit_Dict = _literal


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox: no internals, no mutation of values passed in, and the limits above."""

    # Every arithmetic operator: each costs a step, and some are checked for the size of their result.
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "**", "%"})

    def __init__(self, undefined: type[Undefined], *, statements: bool = False) -> None:
        # Only sources with {% %} can loop, call macros or buffer output, so only they need the budget hooks.
        super().__init__(undefined=undefined, autoescape=False, finalize=_finalize)
        if statements:
            self.concat = _bounded_concat  # type: ignore[method-assign]
        self.lenient = not issubclass(undefined, StrictUndefined)
        del self.globals["lipsum"]  # generates unbounded text
        self.globals["range"] = _range
        self.filters.update(_SAFE_FILTERS)
        self.filters = _budgeted_filters(self.filters)

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
        budget.current().step()
        _check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget.current().step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        current = budget.current()
        current.step()
        if isinstance(argument, slice):
            current.charge_bulk(obj)  # a slice copies
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call in a skill: budgeted, checked for unknown functions and oversized results."""
        if isinstance(__obj, Undefined):
            return __self._call_undefined(__obj)
        current = budget.current()
        nested = isinstance(__obj, Macro | LoopContext)
        current.step(NESTED_CALL_STEPS if nested else CALL_STEPS)
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format in a checked formatter
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str | list | tuple | dict):
            current.charge_bulk(owner)  # str.count, list.index…: C code over the whole value
            if isinstance(owner, str):
                _check_str_method(method.__name__, owner, args, kwargs)
        if nested:
            current.nesting += 1
            try:
                if current.nesting > MAX_NESTING:
                    raise LimitExceeded(f"macros or recursive loops nested more than {MAX_NESTING} deep")
                result = super().call(__context, __obj, *args, **kwargs)
            finally:
                current.nesting -= 1
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
        _limit(len(value), "the result")
    if type(value) in _CONTAINER_TYPES:
        _check_result(value, lambda: "the result")
    return value


# Jinja's parser and code generator recurse on the source's nesting, and so does Python's compiler.
_TOO_DEEP_TO_COMPILE = (RecursionError, SyntaxError, MemoryError)


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
        self._trees: dict[tuple[str, bool], nodes.Template] = {}

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
            except _TOO_DEEP_TO_COMPILE:
                raise ExpressionSyntaxError(f"invalid expression {_shown(source)}: {_TOO_DEEP}") from None
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
            except _TOO_DEEP_TO_COMPILE:
                raise ExpressionSyntaxError(f"invalid template {_shown(source)}: {_TOO_DEEP}") from None
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[source] = compiled
        return compiled

    # ------------------------------------------------------------------ evaluate

    @contextmanager
    def turn(self, time_budget: float = budget.DEFAULT_TIME_BUDGET) -> Iterator[budget.Budget]:
        """One budget, and one wall-clock deadline, for every evaluation inside the block (a turn)."""
        with budget.spending(budget.Budget(time_budget)) as spent:
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
            raise LimitExceeded(f"{_shown(source)}: {_TOO_LONG}")
        return text

    # ------------------------------------------------------------------ static checks

    def parse(self, source: str, *, template: bool) -> nodes.Template:
        """The syntax tree of ``source`` (cached: do not change it). Raises ExpressionSyntaxError."""
        key = (source, template)
        tree = self._trees.get(key)
        if tree is None:
            tree = self._parse(source, template=template)
            if len(self._trees) >= _CACHE_LIMIT:
                self._trees.clear()
            self._trees[key] = tree
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


def _unknown_names(tree: nodes.Template, env: _Sandbox) -> str | None:
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
