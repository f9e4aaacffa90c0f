"""skill versions and bot versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 05:10:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "skill_versions",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("bot_id", sa.String(), nullable=False),
        sa.Column("skill_id", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("definition", _json(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("media_type", sa.String(), nullable=True),
        sa.Column("bot_version", sa.String(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_skill_versions"),
        sa.UniqueConstraint(
            "bot_id", "skill_id", "version", name="uq_skill_versions_bot_id_skill_id_version"
        ),
    )
    op.create_index("ix_skill_versions_bot_id_id", "skill_versions", ["bot_id", "id"])
    op.create_table(
        "bot_versions",
        sa.Column("bot_id", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("skills", _json(), nullable=False),
        sa.Column("created_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "version", name="pk_bot_versions"),
    )


def downgrade() -> None:
    op.drop_table("bot_versions")
    op.drop_index("ix_skill_versions_bot_id_id", table_name="skill_versions")
    op.drop_table("skill_versions")
