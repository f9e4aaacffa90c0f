"""Jinja2-sandboxed expressions and templates, and the function library."""

from rejoinder.expr.environment import CompiledExpression, Expressions, ExpressionError, ExpressionSyntaxError

__all__ = ["CompiledExpression", "ExpressionError", "ExpressionSyntaxError", "Expressions"]
