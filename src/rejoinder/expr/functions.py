"""The function library skills call from expressions and templates (SKILLS.md, "Function library")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any


def now() -> datetime:
    return datetime.now(UTC)


def today() -> date:
    return now().date()


def _outside_conversation(*_: Any, **__: Any) -> str:
    from rejoinder.expr.environment import ExpressionError

    raise ExpressionError("generate_token() can only be called while a conversation runs")


# Functions the engine rebinds for each turn (its clock, its token issuer); these defaults serve checks and tests.
TURN_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "generate_token": _outside_conversation,
    "now": now,
    "today": today,
}

FUNCTIONS: dict[str, Callable[..., Any]] = {
    **TURN_FUNCTIONS,
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "round": round,
    "min": min,
    "max": max,
}

FILTERS: dict[str, Callable[..., Any]] = {}
