"""One expression language for skills: Jinja2 in a sandbox.

Bare expressions (``assign`` values, ``if:`` conditions) and ``{{ }}`` templates (message texts, URLs, headers)
share one set of functions. Each source string is compiled once and cached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rejoinder.expr.functions import FUNCTIONS, FILTERS

_CACHE_LIMIT = 4096


class ExpressionError(Exception):
    """An expression or template could not be evaluated (undefined name, bad value, sandbox limit)."""


class ExpressionSyntaxError(ExpressionError):
    """A source string is not a valid expression or template."""

    def __init__(self, message: str, lineno: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


class _Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox: no attribute access to internals, no mutation of values passed in."""


CompiledExpression = Callable[[Mapping[str, Any]], Any]


class Expressions:
    """Compiles, caches and evaluates skill expressions and templates."""

    def __init__(self, extra_functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        functions = {**FUNCTIONS, **(extra_functions or {})}
        self._strict = _Sandbox(undefined=StrictUndefined, autoescape=False)
        self._lenient = _Sandbox(undefined=ChainableUndefined, autoescape=False)
        for env in (self._strict, self._lenient):
            env.globals.update(functions)
            env.filters.update(FILTERS)
        self._expressions: dict[str, Any] = {}
        self._templates: dict[str, Any] = {}

    # ------------------------------------------------------------------ compile

    def compile_expression(self, source: str) -> Any:
        compiled = self._expressions.get(source)
        if compiled is None:
            try:
                compiled = self._strict.compile_expression(source, undefined_to_none=False)
            except TemplateSyntaxError as exc:
                raise ExpressionSyntaxError(f"invalid expression {source!r}: {exc.message}", exc.lineno) from exc
            if len(self._expressions) >= _CACHE_LIMIT:
                self._expressions.clear()
            self._expressions[source] = compiled
        return compiled

    def compile_template(self, source: str) -> Any:
        compiled = self._templates.get(source)
        if compiled is None:
            try:
                compiled = self._lenient.from_string(source)
            except TemplateSyntaxError as exc:
                raise ExpressionSyntaxError(f"invalid template {source!r}: {exc.message}", exc.lineno) from exc
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[source] = compiled
        return compiled

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, source: str, scope: Mapping[str, Any]) -> Any:
        """Evaluate a bare expression. An undefined name is an error, not a silent empty value."""
        compiled = self.compile_expression(source)
        try:
            value = compiled(**scope) if isinstance(scope, dict) else compiled(**dict(scope))
        except UndefinedError as exc:
            raise ExpressionError(f"{source!r}: {exc.message}") from exc
        except SecurityError as exc:
            raise ExpressionError(f"{source!r}: not allowed: {exc}") from exc
        except RecursionError as exc:
            raise ExpressionError(f"{source!r}: recursion too deep") from exc
        except ExpressionError:
            raise
        except (TemplateError, ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise ExpressionError(f"{source!r}: {exc}") from exc
        if isinstance(value, Undefined):
            raise ExpressionError(f"{source!r}: {value._undefined_message}")
        return value

    def render(self, source: str, scope: Mapping[str, Any]) -> str:
        """Render a template; undefined names render as empty text."""
        if "{" not in source:
            return source
        template = self.compile_template(source)
        try:
            return str(template.render(scope))
        except SecurityError as exc:
            raise ExpressionError(f"{source!r}: not allowed: {exc}") from exc
        except RecursionError as exc:
            raise ExpressionError(f"{source!r}: recursion too deep") from exc
        except ExpressionError:
            raise
        except (TemplateError, ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise ExpressionError(f"{source!r}: {exc}") from exc

    # ------------------------------------------------------------------ static checks

    def syntax_error(self, source: str, *, template: bool) -> ExpressionSyntaxError | None:
        """The syntax error in ``source``, or None when it compiles."""
        try:
            if template:
                self.compile_template(source)
            else:
                self.compile_expression(source)
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
