"""Opaque keyset cursors: the sort key of a page's last row, for the next page to start after."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from rejoinder.store.errors import InvalidCursor

_HELP = "invalid cursor: pass the next_cursor of a previous page unchanged"

CursorValue = str | int | datetime


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
