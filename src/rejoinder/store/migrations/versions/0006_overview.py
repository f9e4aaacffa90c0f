"""the console's Overview: hourly turn statistics, and indexes to count conversations and resumes by hour

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LATENCY_COLUMNS = (
    "latency_le_25ms",
    "latency_le_50ms",
    "latency_le_100ms",
    "latency_le_250ms",
    "latency_le_500ms",
    "latency_le_1000ms",
    "latency_le_2500ms",
    "latency_le_5000ms",
    "latency_le_10000ms",
    "latency_over",
)


def upgrade() -> None:
    op.create_table(
        "turn_stats",
        sa.Column("bot_id", sa.String(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("turns", sa.BigInteger(), nullable=False),
        sa.Column("integrate_failures", sa.BigInteger(), nullable=False),
        sa.Column("rate_limited_resumes", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _LATENCY_COLUMNS),
        sa.PrimaryKeyConstraint("bot_id", "hour", name="pk_turn_stats"),
    )
    op.create_index("ix_conversations_bot_id_created_at", "conversations", ["bot_id", "created_at"])
    op.create_index("ix_audit_events_bot_id_kind_at", "audit_events", ["bot_id", "kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_bot_id_kind_at", table_name="audit_events")
    op.drop_index("ix_conversations_bot_id_created_at", table_name="conversations")
    op.drop_table("turn_stats")
