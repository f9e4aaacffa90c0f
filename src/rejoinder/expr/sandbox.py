"""The Jinja2 sandbox skills run in: no internals, no mutation of values passed in, and every hook budgeted.

Each operator, attribute, item and call is charged to the turn's budget and checked against the limits of
:mod:`rejoinder.expr.limits`; an undefined name is an error in a bare expression and empty text in a template.
"""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from rejoinder.expr import budget
from rejoinder.expr.chance import random_filter
from rejoinder.expr.errors import ExpressionError, LimitExceeded
from rejoinder.expr.limits import (
    CALL_STEPS,
    MAX_NESTING,
    NESTED_CALL_STEPS,
    SAFE_FILTERS,
    BudgetedRewrite,
    bounded_concat,
    bounded_range,
    budgeted_filters,
    check_binop,
    check_result,
    check_str_method,
    finalize,
)


class LenientUndefined(ChainableUndefined):
    """Renders as empty text; remembers that ``name.attr`` came from an undefined value (not a bare name)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(self)(obj=self, name=name)

    __getitem__ = __getattr__


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox: no internals, no mutation of values passed in, and the limits of :mod:`rejoinder.expr.limits`."""

    # Every arithmetic operator: each costs a step, and some are checked for the size of their result.
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "**", "%"})

    def __init__(self, undefined: type[Undefined], *, statements: bool = False) -> None:
        # Only sources with {% %} can loop, call macros or buffer output, so only they need the budget hooks.
        super().__init__(undefined=undefined, autoescape=False, finalize=finalize)
        if statements:
            self.concat = bounded_concat  # type: ignore[method-assign]
        self.lenient = not issubclass(undefined, StrictUndefined)
        del self.globals["lipsum"]  # generates unbounded text
        self.globals["range"] = bounded_range
        self.filters.update(SAFE_FILTERS)
        # The turn's source of randomness, not Python's global one; charged for its input as before.
        self.filters["random"] = random_filter
        self.filters = budgeted_filters(self.filters)

    def make_globals(self, d: Any) -> Any:
        # A plain dict, not Jinja's ChainMap: every context copies the globals, and a dict copies fast.
        return {**self.globals, **(d or {})}

    def _generate(self, source: nodes.Template, name: Any, filename: Any, defer_init: bool = False) -> Any:
        BudgetedRewrite().visit(source)
        source.set_environment(self)
        return super()._generate(source, name, filename, defer_init=defer_init)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to {attribute!r} of {type(obj).__name__}")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget.current().step()
        check_binop(operator, left, right)
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
                check_str_method(method.__name__, owner, args, kwargs)
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
        return check_result(result, lambda: f"{getattr(__obj, '__name__', 'the call')}()")

    def _call_undefined(self, obj: Undefined) -> Any:
        if obj._undefined_obj is missing:
            raise ExpressionError(f"unknown function {obj._undefined_name!r}")
        if self.lenient:
            return obj
        raise ExpressionError(obj._undefined_message)
