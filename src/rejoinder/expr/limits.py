"""The limits a skill's expressions run within, and the checks that enforce them.

A skill must not be able to stall or exhaust the server. ``range()`` is capped; operators, literals, calls
and filters refuse to build values larger than :data:`MAX_VALUE_SIZE` (nested lists counted in full, however
often they are shared), and text is checked before it is written; rendered text may not exceed
:data:`MAX_OUTPUT`. Every evaluation draws on the turn's :class:`~rejoinder.expr.budget.Budget`: loop
iterations, calls and each item an iterating filter or function handles cost steps, and the turn has a
CPU-time deadline. The checks sit in the sandbox's hooks (calls, intercepted operators, output
finalisation), in the filters replaced here, and in a compile-time rewrite of ``{% for %}``, ``~``, ``in``
and list literals, so ``count + 1`` or ``Hi {{ name }}`` pays almost nothing for them.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from jinja2 import Undefined, nodes, pass_environment
from jinja2.defaults import DEFAULT_FILTERS
from jinja2.filters import make_attrgetter
from jinja2.visitor import NodeTransformer

from rejoinder.expr import budget
from rejoinder.expr.budget import BULK_ITEMS, MAX_VALUE_SIZE
from rejoinder.expr.errors import LimitExceeded
from rejoinder.expr.functions import FunctionError, join

MAX_OUTPUT = 65_536  # characters of rendered text (a template, a macro's result, a {% set %} block)
CALL_STEPS = 4  # a call through the sandbox takes a few microseconds
NESTED_CALL_STEPS = 10  # a macro call or recursive loop runs a whole body: it costs more than one step
MAX_RANGE = 100_000  # numbers in one range()
MAX_INT_BITS = 10_000  # about 3,000 decimal digits
MAX_NESTING = 50  # macro calls and recursive loops inside each other
MAX_JSON_INDENT = 32


# ------------------------------------------------------------------------------------- inside templates

# The rewritten code calls _counted, _concat, _walked and _literal as filters (see BudgetedRewrite); the sandbox
# writes every output through finalize and joins {% %} output with bounded_concat.


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
    check_value_size(size, "'~'")
    _produce(size)
    return "".join(texts)


def finalize(value: Any) -> str:
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


TOO_LONG = f"the rendered text is longer than {MAX_OUTPUT:,} characters"


def bounded_concat(chunks: Iterable[str]) -> str:
    """Joins rendered chunks, stopping as soon as they exceed MAX_OUTPUT."""
    parts: list[str] = []
    append = parts.append
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise LimitExceeded(TOO_LONG)
        append(chunk)
    return "".join(parts)


def bounded_range(*args: int) -> range:
    """``range()`` for skills: refused beyond :data:`MAX_RANGE` numbers."""
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE + 1
    if count > MAX_RANGE:
        raise LimitExceeded(f"range() of more than {MAX_RANGE:,} numbers")
    return numbers


# ------------------------------------------------------------------------------------- size checks


def check_value_size(size: int, what: str) -> None:
    """Refuses a value of ``size`` characters or items, ``what`` built, when over :data:`MAX_VALUE_SIZE`."""
    if size > MAX_VALUE_SIZE:
        raise LimitExceeded(f"{what}: the result would be larger than {MAX_VALUE_SIZE:,} characters or items")


def _is_int(value: Any) -> bool:
    return type(value) is int


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuses operations whose result would be too large, before computing them."""
    if operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            current = budget.current()
            size = current.size_of(left) + current.size_of(right)
            check_value_size(size, "'+'")
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
        check_value_size(size, "'*'")
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
    check_value_size(size, what)
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


def check_result(value: Any, what: Callable[[], str]) -> Any:
    """``value``, refused when larger than :data:`MAX_VALUE_SIZE`; ``what()`` names it in the message."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_SIZE:
            check_value_size(len(value), what())
    elif isinstance(value, list | tuple | dict):
        size = budget.current().size_of(value)
        if size > MAX_VALUE_SIZE:
            check_value_size(size, what())
    return value


_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def check_str_method(name: str, text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Python string methods that can blow a text up, checked from their arguments."""
    if name == "format":
        _check_format_spec(text, [*args, *kwargs.values()])
    elif name == "format_map" and args and isinstance(args[0], Mapping):
        _check_format_spec(text, args[0].values())
    elif name in _WIDTH_METHODS and args and _is_int(args[0]):
        check_value_size(args[0], f"{name}()")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if _is_int(tabsize):
            check_value_size(len(text) + text.count("\t") * tabsize, "expandtabs()")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        if len(new) > len(old):
            check_value_size(len(text) + text.count(old) * (len(new) - len(old)), "replace()")
    elif name == "join" and args and isinstance(args[0], list | tuple):
        items = args[0]
        if all(isinstance(item, str) for item in items):
            check_value_size(sum(map(len, items)) + len(text) * max(len(items) - 1, 0), "join()")


# ------------------------------------------------------------------------------------- filters


def _guard(original: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``original`` with ``check`` run on its arguments first (after Jinja's context/environment argument)."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        check(*args[skip:], **kwargs)
        return check_result(original(*args, **kwargs), lambda: original.__name__)

    return guarded


def _width(value: Any) -> int:
    return value if _is_int(value) else len(str(value))


def _check_center(value: Any, width: Any = 80) -> None:
    check_value_size(len(str(value)) + _width(width), "center")


def _check_indent(s: Any, width: Any = 4, *_: Any, **__: Any) -> None:
    text = str(s)
    check_value_size(len(text) + (text.count("\n") + 1) * _width(width), "indent")


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
    check_value_size(len(str(s)) * (1 + len(str(wrapstring or "\n"))), "wordwrap")


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
                check_value_size(size, original.__name__)
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


def budgeted_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``filters`` with those that go through their input charged for it, and those that write it bounded."""
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
        check_value_size(len(text) + occurrences * (len(new) - len(old)), "replace")
    return text.replace(old, new, -1 if count is None else count)


# Jinja filters that could build unbounded values, replaced by checked ones; and the rewrite's budget hooks.
SAFE_FILTERS: dict[str, Callable[..., Any]] = {
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


# ------------------------------------------------------------------------------------- compile-time rewrite


def _through(node: nodes.Node, hook: str) -> nodes.Filter:
    return nodes.Filter(cast(nodes.Expr, node), hook, [], [], None, None, lineno=node.lineno)


class BudgetedRewrite(NodeTransformer):
    """Compile-time rewrite: ``{% for %}`` iterables, ``~``, ``in`` and literals go through the budgeted filters."""

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
