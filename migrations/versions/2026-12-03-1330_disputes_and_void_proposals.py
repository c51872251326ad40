"""disputes and two-party voiding: each ballot's disputes, and proposals to void it

Revision ID: 9d3e5f7a1b20
Revises: 7c2d4e6f8a10
Create Date: 2026-12-03 13:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models import UTCDateTime

revision: str = "9d3e5f7a1b20"
down_revision: str | None = "7c2d4e6f8a10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "withdrawn_at IS NULL AND confirmed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "dispute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("ods_code", sa.String(length=6), nullable=True),
        sa.Column("raised_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=True),
        sa.Column("claims_not_voted", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('secretariat', 'voter_link')", name=op.f("ck_dispute_channel")
        ),
        sa.CheckConstraint("length(text) BETWEEN 1 AND 2000", name=op.f("ck_dispute_text_length")),
        sa.CheckConstraint(
            "(channel = 'voter_link' AND ods_code IS NOT NULL AND recorded_by IS NULL) OR "
            "(channel = 'secretariat' AND recorded_by IS NOT NULL)",
            name=op.f("ck_dispute_channel_source"),
        ),
        sa.ForeignKeyConstraint(
            ["ballot_id"], ["ballot.id"], name=op.f("fk_dispute_ballot_id_ballot")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispute")),
    )
    op.create_index(op.f("ix_dispute_ballot_id"), "dispute", ["ballot_id"], unique=False)
    op.create_table(
        "void_proposal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=100), nullable=False),
        sa.Column("proposed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_by", sa.String(length=100), nullable=True),
        sa.Column("withdrawn_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("confirmed_by", sa.String(length=100), nullable=True),
        sa.Column("confirmed_at", UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "withdrawn_at IS NULL OR confirmed_at IS NULL",
            name=op.f("ck_void_proposal_withdrawn_or_confirmed"),
        ),
        sa.ForeignKeyConstraint(
            ["ballot_id"], ["ballot.id"], name=op.f("fk_void_proposal_ballot_id_ballot")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_void_proposal")),
    )
    op.create_index(
        op.f("ix_void_proposal_ballot_id"), "void_proposal", ["ballot_id"], unique=False
    )
    # At most one proposal pending per ballot, whichever server handles the request.
    op.create_index(
        "uq_void_proposal_pending",
        "void_proposal",
        ["ballot_id"],
        unique=True,
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index("uq_void_proposal_pending", table_name="void_proposal")
    op.drop_index(op.f("ix_void_proposal_ballot_id"), table_name="void_proposal")
    op.drop_table("void_proposal")
    op.drop_index(op.f("ix_dispute_ballot_id"), table_name="dispute")
    op.drop_table("dispute")
