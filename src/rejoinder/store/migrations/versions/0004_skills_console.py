"""who made each skill change; each conversation's bot version in a column, indexed to count by it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEX = "ix_conversations_bot_id_bot_version_status"


def upgrade() -> None:
    # Changes made before this migration name nobody: the column stays empty for them.
    op.add_column("skill_versions", sa.Column("changed_by", sa.String(), nullable=True))
    op.add_column("conversations", sa.Column("bot_version", sa.String(), nullable=True))
    # Conversations begun before: their state has said their bot version all along.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE conversations SET bot_version = state ->> 'bot_version' "
            "WHERE jsonb_typeof(state -> 'bot_version') = 'string'"
        )
    else:
        op.execute(
            "UPDATE conversations SET bot_version = json_extract(state, '$.bot_version') "
            "WHERE json_type(state, '$.bot_version') = 'text'"
        )
    op.create_index(_INDEX, "conversations", ["bot_id", "bot_version", "status"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("bot_version")
    with op.batch_alter_table("skill_versions") as batch:
        batch.drop_column("changed_by")
