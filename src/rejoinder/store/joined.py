"""A row read together with the conversation it belongs to, in one statement (a session's, a token's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from rejoinder.store.records import ConversationRecord
from rejoinder.store.tables import conversations

_CONVERSATION_FIELDS = list(ConversationRecord.__dataclass_fields__)
# The tables joined share column names (id, bot_id, created_at…): the conversation's get this prefix.
_PREFIX = "conv_"


def with_conversation(
    table: sa.Table, fields: Sequence[str], where: sa.ColumnElement[bool]
) -> sa.Select[Any]:
    """``fields`` of the ``table`` row matching ``where``, and its conversation's columns (NULL once erased)."""
    return (
        sa.select(
            *(table.c[name] for name in fields),
            *(conversations.c[name].label(_PREFIX + name) for name in _CONVERSATION_FIELDS),
        )
        .select_from(table.outerjoin(conversations, conversations.c.id == table.c.conversation_id))
        .where(where)
    )


def split_conversation(
    row: Mapping[str, Any], fields: Sequence[str]
) -> tuple[dict[str, Any], ConversationRecord | None]:
    """A row of :func:`with_conversation`: the own ``fields``, and the conversation if there is one."""
    own = {name: row[name] for name in fields}
    if row[_PREFIX + "id"] is None:
        return own, None
    return own, ConversationRecord(**{name: row[_PREFIX + name] for name in _CONVERSATION_FIELDS})
