"""indexes of the console's lists: a bot's conversations and tokens, newest first, by keyset

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The id ends the key: a page starts after (updated_at, id) and reads on in the index's order, with no sort.
    op.create_index("ix_conversations_bot_id_updated_at_id", "conversations", ["bot_id", "updated_at", "id"])
    op.drop_index("ix_conversations_bot_id_updated_at", table_name="conversations")
    op.create_index("ix_tokens_bot_id_created_at_id", "tokens", ["bot_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_tokens_bot_id_created_at_id", table_name="tokens")
    op.create_index("ix_conversations_bot_id_updated_at", "conversations", ["bot_id", "updated_at"])
    op.drop_index("ix_conversations_bot_id_updated_at_id", table_name="conversations")
