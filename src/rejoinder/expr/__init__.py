"""Jinja2-sandboxed expressions and templates, the function library and JSON paths."""

from rejoinder.expr.environment import CompiledExpression, Expressions, is_template
from rejoinder.expr.errors import ExpressionError, ExpressionSyntaxError, LimitExceeded
from rejoinder.expr.functions import FILTERS, FUNCTIONS, TURN_FUNCTIONS, FunctionError
from rejoinder.expr.jsonpath import InvalidPath, PathNotFound, lookup

__all__ = [
    "FILTERS",
    "FUNCTIONS",
    "TURN_FUNCTIONS",
    "CompiledExpression",
    "ExpressionError",
    "ExpressionSyntaxError",
    "Expressions",
    "FunctionError",
    "InvalidPath",
    "LimitExceeded",
    "PathNotFound",
    "is_template",
    "lookup",
]
