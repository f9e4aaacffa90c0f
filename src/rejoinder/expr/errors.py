"""What goes wrong with an expression or template: it does not parse, it fails, or it goes over a limit."""

from __future__ import annotations


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
