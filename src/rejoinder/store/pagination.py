"""Opaque keyset cursors: the sort key of a page's edge row, for the page beside it to start after."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from rejoinder.store.errors import InvalidCursor

_HELP = "invalid cursor: pass the next_cursor of a previous page unchanged"

CursorValue = str | int | datetime
R = TypeVar("R")


def check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return limit


def encode_cursor(*values: CursorValue) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *kinds: type[CursorValue]) -> list[Any]:
    """The values :func:`encode_cursor` put in ``cursor``, checked to be of ``kinds``; else :class:`InvalidCursor`."""
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(_HELP) from None
    if not isinstance(plain, list) or len(plain) != len(kinds):
        raise InvalidCursor(_HELP)
    return [_decode_value(value, kind) for value, kind in zip(plain, kinds, strict=True)]


def _decode_value(value: Any, kind: type[CursorValue]) -> CursorValue:
    if kind is datetime and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidCursor(_HELP) from None
        if moment.tzinfo is not None:
            return moment
    elif isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise InvalidCursor(_HELP)


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page of a keyset-paged list, newest first, with the cursors of the pages on either side (None at an
    end)."""

    items: list[R]
    next_cursor: str | None
    previous_cursor: str | None


# A cursor names a row of the list and which way to read from it: the rows after it (older) or before it (newer).
_AFTER = "after"
_BEFORE = "before"


@dataclass(frozen=True)
class Keyset:
    """Paging a list ordered newest first by ``columns`` (unique together), both ways, without OFFSET: a page
    starts at the key of the row a cursor names, so rows added or removed meanwhile never shift a page."""

    columns: tuple[sa.ColumnElement[Any], ...]
    kinds: tuple[type[CursorValue], ...]

    def select(
        self, statement: sa.Select[Any], cursor: str | None, limit: int
    ) -> tuple[sa.Select[Any], bool]:
        """``statement`` limited to the page ``cursor`` names (one row more than ``limit``, to know whether there
        are more), and whether it reads backwards (towards newer rows)."""
        limit = check_limit(limit)
        if cursor is None:
            return statement.order_by(*(c.desc() for c in self.columns)).limit(limit + 1), False
        direction, *key = decode_cursor(cursor, str, *self.kinds)
        if direction not in (_AFTER, _BEFORE):
            raise InvalidCursor(_HELP)
        backward = direction == _BEFORE
        here = sa.tuple_(*self.columns)
        bound = sa.tuple_(*(sa.literal(value, c.type) for value, c in zip(key, self.columns, strict=True)))
        if backward:
            statement = statement.where(here > bound).order_by(*(c.asc() for c in self.columns))
        else:
            statement = statement.where(here < bound).order_by(*(c.desc() for c in self.columns))
        return statement.limit(limit + 1), backward

    def page(
        self,
        rows: Sequence[R],
        key: Callable[[R], tuple[CursorValue, ...]],
        *,
        cursor: str | None,
        backward: bool,
        limit: int,
    ) -> Page[R]:
        """The page of ``rows`` read by :meth:`select`, newest first, with its neighbours' cursors."""
        more = len(rows) > limit
        items = list(rows[:limit])
        if backward:
            items.reverse()
        newer = more if backward else cursor is not None
        older = cursor is not None if backward else more
        return Page(
            items=items,
            next_cursor=encode_cursor(_AFTER, *key(items[-1])) if older and items else None,
            previous_cursor=encode_cursor(_BEFORE, *key(items[0])) if newer and items else None,
        )
