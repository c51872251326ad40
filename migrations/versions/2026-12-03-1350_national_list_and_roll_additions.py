"""the national list of GP practices (ODS epraccur), add-only roll corrections, address changes

Revision ID: 3b8e1f2a9c47
Revises: a7e3c91d5b24
Create Date: 2026-12-03 13:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models import UTCDateTime

revision: str = "3b8e1f2a9c47"
down_revision: str | None = "a7e3c91d5b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


KINDS = (
    "kind IN ('invitation', 'new_link', 'reminder', 'confirmation', 'extension', 'notice', "
    "'closed', 'published', 'digest'{})"
)


def upgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_outbox_message_kind"), KINDS.format(", 'addresses_changed'")
        )
    op.create_table(
        "national_list_import",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imported_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("practices", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_national_list_import")),
    )
    op.create_table(
        "national_practice",
        sa.Column("ods_code", sa.String(length=10), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("postcode", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=1), nullable=False),
        sa.Column("commissioner_code", sa.String(length=10), nullable=False),
        sa.CheckConstraint(
            "status IN ('A', 'C', 'D', 'P')", name=op.f("ck_national_practice_status")
        ),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["national_list_import.id"],
            name=op.f("fk_national_practice_import_id_national_list_import"),
        ),
        sa.PrimaryKeyConstraint("ods_code", name=op.f("pk_national_practice")),
    )
    op.create_index(
        op.f("ix_national_practice_import_id"), "national_practice", ["import_id"], unique=False
    )
    op.create_table(
        "roll_addition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("ods_code", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("locality", sa.String(length=100), nullable=False),
        sa.Column("list_size", sa.Integer(), nullable=False),
        sa.Column("emails", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=200), nullable=False),
        sa.Column("proposed_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(length=100), nullable=True),
        sa.Column("approved_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("roll_entry_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("list_size > 0", name=op.f("ck_roll_addition_list_size_positive")),
        sa.CheckConstraint(
            "(approved_at IS NULL) = (roll_entry_id IS NULL)",
            name=op.f("ck_roll_addition_approved_has_entry"),
        ),
        sa.ForeignKeyConstraint(
            ["ballot_id"], ["ballot.id"], name=op.f("fk_roll_addition_ballot_id_ballot")
        ),
        sa.ForeignKeyConstraint(
            ["roll_entry_id"],
            ["roll_entry.id"],
            name=op.f("fk_roll_addition_roll_entry_id_roll_entry"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roll_addition")),
        sa.UniqueConstraint("ballot_id", "number", name=op.f("uq_roll_addition_ballot_id_number")),
        sa.UniqueConstraint("roll_entry_id", name=op.f("uq_roll_addition_roll_entry_id")),
    )
    op.create_index(
        op.f("ix_roll_addition_ballot_id"), "roll_addition", ["ballot_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_roll_addition_ballot_id"), table_name="roll_addition")
    op.drop_table("roll_addition")
    op.drop_index(op.f("ix_national_practice_import_id"), table_name="national_practice")
    op.drop_table("national_practice")
    op.drop_table("national_list_import")
    op.execute("DELETE FROM outbox_message WHERE kind = 'addresses_changed'")
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_message_kind"), KINDS.format(""))
