"""The function library skills call from expressions and templates (SKILLS.md, "Function library").

Every function checks its arguments and fails with a :class:`FunctionError` worded for a bot designer
(``int('abc'): not a number``); the expression environment reports it together with the expression.
"""

from __future__ import annotations

import functools
import json
import math
import reprlib
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from random import Random, SystemRandom
from typing import Any, NoReturn

from jinja2 import Undefined

from rejoinder.expr import budget, jsonpath, patterns
from rejoinder.expr.budget import BULK_ITEMS, MATCHED_CHARACTERS
from rejoinder.expr.budget import MAX_VALUE_SIZE as MAX_VALUE_SIZE  # the largest value a function may build

# matches(): longer texts are refused (RE2 is linear in the text, but the text is still work).
MAX_MATCH_TEXT_LENGTH = 10_000


class FunctionError(ValueError):
    """A library function was called with arguments it cannot use."""


class ValueTooLarge(FunctionError):
    """A library function would build a text or list larger than MAX_VALUE_SIZE."""


def _fail(call: str, problem: str) -> NoReturn:
    raise FunctionError(f"{call}: {problem}")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 5


def _show(value: Any) -> str:
    """A short repr of a value for messages, however large the value is."""
    return _SHORT.repr(value)


def _kind(value: Any) -> str:
    """How a bot designer would name the type of a value."""
    if value is None:
        return "nothing (None)"
    if isinstance(value, Undefined):
        return "an undefined value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    return f"a {type(value).__name__}"


def check_size(size: int, what: str) -> None:
    """Refuse to build a value larger than MAX_VALUE_SIZE characters or items."""
    if size > MAX_VALUE_SIZE:
        raise ValueTooLarge(f"{what}: the result would be larger than {MAX_VALUE_SIZE:,} characters or items")


def _text(name: str, value: Any, arg: str = "") -> str:
    if not isinstance(value, str):
        where = f" as {arg}" if arg else ""
        _fail(f"{name}({_show(value)})", f"expects text{where}, got {_kind(value)}")
    return value


def _whole(name: str, value: Any, arg: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{name}()", f"{arg} must be a whole number, got {_kind(value)} {_show(value)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------- time


def now() -> datetime:
    """The current time (UTC). The engine rebinds it to the turn's clock."""
    return datetime.now(UTC)


def today() -> date:
    """Today's date (UTC). The engine rebinds it to the turn's clock."""
    return now().date()


def _outside_conversation(*_: Any, **__: Any) -> str:
    raise FunctionError("generate_token() can only be called while a conversation runs")


def _parse_when(name: str, value: Any) -> date | datetime:
    if isinstance(value, date):  # datetime is a date too
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return date.fromisoformat(text) if len(text) <= 10 else datetime.fromisoformat(text)
        except ValueError:
            _fail(f"{name}({_show(value)})", "not an ISO-8601 date like '2024-05-31' or '2024-05-31T14:30Z'")
    _fail(f"{name}({_show(value)})", f"expects a date, a date and time or ISO-8601 text, got {_kind(value)}")


def format_date(value: date | datetime | str, fmt: str) -> str:
    """``value`` (a date, a datetime or ISO-8601 text) formatted with a strftime format like ``%d.%m.%Y``."""
    when = _parse_when("format_date", value)
    _text("format_date", fmt, "the format")
    try:
        return when.strftime(fmt)
    except ValueError as exc:
        _fail(f"format_date(..., {_show(fmt)})", f"invalid format: {exc}")


def add_days(value: date | datetime | str, n: int) -> date | datetime | str:
    """``value`` moved by ``n`` days (negative goes back), returned as the same kind of value it was given."""
    when = _parse_when("add_days", value)
    days = _whole("add_days", n, "the number of days")
    try:
        moved = when + timedelta(days=days)
    except OverflowError:
        _fail(f"add_days({_show(value)}, {days})", "the date is out of range")
    if not isinstance(value, str):
        return moved
    text = moved.isoformat()
    if value.strip().endswith("Z") and text.endswith("+00:00"):
        text = text[: -len("+00:00")] + "Z"
    return text


# ------------------------------------------------------------------------------------- text


def length(value: Any) -> int:
    """The number of characters of text, items of a list or keys of an object."""
    if isinstance(value, str | list | tuple | Mapping | set | frozenset):
        return len(value)
    _fail(f"len({_show(value)})", f"expects text, a list or an object, got {_kind(value)}")


def lower(text: str) -> str:
    """``text`` in lower case."""
    budget.current().charge_bulk(_text("lower", text))
    return text.lower()


def upper(text: str) -> str:
    """``text`` in upper case."""
    budget.current().charge_bulk(_text("upper", text))
    return text.upper()


def strip(text: str, chars: str | None = None) -> str:
    """``text`` without surrounding white space (or without the given characters)."""
    if chars is not None:
        _text("strip", chars, "the characters to remove")
    budget.current().charge_bulk(_text("strip", text))
    return text.strip(chars)


def replace(text: str, old: str, new: str) -> str:
    """``text`` with every ``old`` replaced by ``new``."""
    _text("replace", text)
    _text("replace", old, "the text to replace")
    _text("replace", new, "the replacement")
    budget.current().charge_bulk(text)
    if len(new) > len(old):
        check_size(len(text) + text.count(old) * (len(new) - len(old)), "replace()")
    return text.replace(old, new)


def split(text: str, sep: str | None = None) -> list[str]:
    """``text`` cut at every ``sep`` (default: at runs of white space)."""
    _text("split", text)
    if sep is not None:
        _text("split", sep, "the separator")
        if not sep:
            _fail("split()", "the separator cannot be empty")
    budget.current().charge_bulk(text)
    return text.split(sep)


def join(items: Iterable[Any], sep: str = "") -> str:
    """The items as text, separated by ``sep``; items that are not text are converted with str()."""
    if isinstance(items, Mapping | str) or not isinstance(items, Iterable):
        _fail(f"join({_show(items)})", f"expects a list, got {_kind(items)}")
    _text("join", sep, "the separator")
    parts: list[str] = []
    size = 0
    for item in budget.counted(items, BULK_ITEMS):
        part = item if type(item) is str else budget.text(item, "join()", MAX_VALUE_SIZE - size)
        size += len(part) + len(sep)
        check_size(size - len(sep), "join()")
        parts.append(part)
    return sep.join(parts)


def contains(container: Any, item: Any) -> bool:
    """Whether text contains a piece of text, a list contains an item, or an object has a key."""
    budget.current().charge_bulk(container)
    if isinstance(container, str):
        return budget.text(item, "contains()") in container
    if isinstance(container, list | tuple | set | frozenset | Mapping):
        try:
            return item in container
        except TypeError:  # an unhashable item cannot be a key
            return False
    _fail(f"contains({_show(container)}, ...)", f"expects text, a list or an object, got {_kind(container)}")


def matches(text: Any, regex: str) -> bool:
    """Whether the regular expression ``regex`` matches anywhere in ``text`` (numbers are matched as text)."""
    if _is_number(text):
        text = str(text)
    _text("matches", text)
    _text("matches", regex, "the pattern")
    if len(text) > MAX_MATCH_TEXT_LENGTH:
        _fail("matches()", f"the text is longer than {MAX_MATCH_TEXT_LENGTH:,} characters")
    budget.current().step(len(text) // MATCHED_CHARACTERS + 1)
    try:
        return patterns.search(regex, text)
    except patterns.PatternError as exc:
        _fail(f"matches(..., {_show(regex)})", str(exc))


# ------------------------------------------------------------------------------------- numbers


def to_int(value: Any) -> int:
    """A whole number from a number (cut towards zero) or from text holding a number."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(f"int({_show(value)})", "not a finite number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            _fail(f"int({_show(value)})", "not a number")
        if not math.isfinite(number):
            _fail(f"int({_show(value)})", "not a finite number")
        return int(number)
    _fail(f"int({_show(value)})", f"expects a number or text, got {_kind(value)}")


def to_float(value: Any) -> float:
    """A decimal number from a number or from text holding a number."""
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            _fail(f"float({_show(value)})", "the number is too large")
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            _fail(f"float({_show(value)})", "not a number")
    else:
        _fail(f"float({_show(value)})", f"expects a number or text, got {_kind(value)}")
    if not math.isfinite(number):
        _fail(f"float({_show(value)})", "not a finite number")
    return number


def to_str(value: Any) -> str:
    """``value`` as text."""
    try:
        return budget.text(value, "str()")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        _fail("str()", str(exc))


def round_half_up(x: float, n: int = 0) -> float | int:
    """``x`` rounded to ``n`` decimals, halves away from zero (2.5 → 3); a whole number when ``n`` ≤ 0."""
    if not _is_number(x):
        _fail(f"round({_show(x)})", f"expects a number, got {_kind(x)}")
    digits = _whole("round", n, "the number of decimals")
    if isinstance(x, float) and not math.isfinite(x):
        _fail(f"round({_show(x)})", "not a finite number")
    exact = Decimal(repr(x)) if isinstance(x, float) else Decimal(x)
    try:
        rounded = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    except InvalidOperation:  # more digits than a float holds: nothing left to round
        rounded = exact
    return int(rounded) if digits <= 0 else float(rounded)


def _extreme(name: str, pick: Callable[..., Any], values: tuple[Any, ...]) -> Any:
    items: Any = values
    if len(values) == 1:
        (only,) = values
        if not isinstance(only, list | tuple | set | frozenset | Mapping):
            _fail(f"{name}({_show(only)})", f"expects a list or several values, got {_kind(only)}")
        items = only
    if not items:
        _fail(f"{name}()", "no values")
    budget.current().charge_bulk(items if isinstance(items, list | tuple) else list(items))
    try:
        return pick(items)
    except TypeError:
        kinds = sorted({_kind(item) for item in items})
        _fail(f"{name}()", f"cannot compare {' and '.join(kinds)}")


def minimum(*values: Any) -> Any:
    """The smallest of a list, or of the arguments."""
    return _extreme("min", min, values)


def maximum(*values: Any) -> Any:
    """The largest of a list, or of the arguments."""
    return _extreme("max", max, values)


def drawing_from(source: Random) -> dict[str, Callable[..., Any]]:
    """``random_int()`` and ``uuid()`` drawing from ``source``: a turn's own, so that a turn can be replayed."""

    def random_int(a: int, b: int) -> int:
        """A random whole number from ``a`` to ``b``, both included."""
        low = _whole("random_int", a, "the lowest value")
        high = _whole("random_int", b, "the highest value")
        if low > high:
            _fail(f"random_int({low}, {high})", "the lowest value is above the highest")
        return source.randint(low, high)

    def uuid() -> str:
        """A new random UUID (version 4) as text."""
        return str(_uuid.UUID(bytes=source.randbytes(16), version=4))

    return {"random_int": random_int, "uuid": uuid}


# ------------------------------------------------------------------------------------- JSON


def json_get(obj: Any, path: str) -> Any:
    """The value at a JSON path (``a.b[0].c``) inside ``obj``, or None when there is nothing there.

    ``obj`` may also be JSON text, which is parsed first.
    """
    _text("json_get", path, "the path")
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except ValueError:
            _fail(f"json_get({_show(obj)}, ...)", "the text is not valid JSON")
    try:
        return jsonpath.lookup(obj, path)
    except jsonpath.PathNotFound:
        return None
    except jsonpath.InvalidPath as exc:
        _fail(f"json_get(..., {_show(path)})", str(exc))


# Functions the engine rebinds for each turn (its clock, its token issuer, its randomness); these defaults serve
# the checks, and draw from the operating system's cryptographically strong randomness.
TURN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "generate_token": _outside_conversation,
    "now": now,
    "today": today,
    **drawing_from(SystemRandom()),
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    **TURN_FUNCTIONS,
    "format_date": format_date,
    "add_days": add_days,
    "len": length,
    "lower": lower,
    "upper": upper,
    "strip": strip,
    "replace": replace,
    "split": split,
    "join": join,
    "contains": contains,
    "int": to_int,
    "float": to_float,
    "str": to_str,
    "round": round_half_up,
    "min": minimum,
    "max": maximum,
    "json_get": json_get,
    "matches": matches,
}


def _as_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as a template filter: like Jinja's own filters, it lets an undefined value through."""

    @functools.wraps(function)
    def applied(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, Undefined):
            return value
        return function(value, *args, **kwargs)

    return applied


# Jinja already has lower, upper, replace, join, int, float, round, min and max filters; these add the rest.
_FILTERING: dict[str, Callable[..., Any]] = {
    "strip": strip,
    "split": split,
    "contains": contains,
    "matches": matches,
    "format_date": format_date,
    "add_days": add_days,
    "json_get": json_get,
}
FILTERS: dict[str, Callable[..., Any]] = {name: _as_filter(function) for name, function in _FILTERING.items()}
