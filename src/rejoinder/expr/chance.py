"""The running turn's source of randomness, for the sandbox's ``random`` filter (``{{ items | random }}``).

``random_int()`` and ``uuid()`` reach a turn bound to its source in the turn's scope (see
:func:`rejoinder.expr.functions.drawing_from`). A filter belongs to the sandbox, which every turn shares, so it
finds the turn's source in a context variable set for the turn instead, as the turn's budget is found: a turn
run again with the same source picks the same items. Outside a turn (the skill checks) it draws from the
operating system's cryptographically strong randomness.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from random import Random, SystemRandom
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import Context

_STRONG = SystemRandom()
_SOURCE: ContextVar[Random | None] = ContextVar("rejoinder_expr_random", default=None)


@contextmanager
def drawing(source: Random) -> Iterator[Random]:
    """Makes ``source`` the one the ``random`` filter draws from inside the block."""
    token = _SOURCE.set(source)
    try:
        yield source
    finally:
        _SOURCE.reset(token)


@pass_context
def random_filter(context: Context, seq: Sequence[Any]) -> Any:
    """An item of ``seq`` picked by the running turn's source; undefined when ``seq`` is empty (as Jinja's)."""
    try:
        return (_SOURCE.get() or _STRONG).choice(seq)
    except IndexError:
        return context.environment.undefined("No random item, sequence was empty.")
