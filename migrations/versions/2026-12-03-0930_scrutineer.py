"""scrutineer and notice: the role, each ballot's approval and countersignature, the notice

Revision ID: 7c2d4e6f8a10
Revises: 5e41ed0b0c58
Create Date: 2026-12-03 09:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.models import UTCDateTime

revision: str = "7c2d4e6f8a10"
down_revision: str | None = "5e41ed0b0c58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = "role IN ('admin', 'secretariat', 'auditor'{})"
KINDS = "kind IN ('invitation', 'new_link', 'reminder', 'confirmation', 'extension', {}'closed')"


def upgrade() -> None:
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_constraint(op.f("ck_staff_user_role"), type_="check")
        batch.create_check_constraint(op.f("ck_staff_user_role"), ROLES.format(", 'scrutineer'"))
    with op.batch_alter_table("ballot") as batch:
        batch.add_column(sa.Column("notice_sent_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("approved_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("approved_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("countersigned_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("countersigned_at", UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("countersigned_hash", sa.String(length=64), nullable=True))

    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_message_kind"), KINDS.format("'notice', "))


def downgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_message_kind"), KINDS.format(""))
    with op.batch_alter_table("ballot") as batch:
        for column in (
            "countersigned_hash", "countersigned_at", "countersigned_by",
            "approved_hash", "approved_at", "approved_by", "notice_sent_at",
        ):  # fmt: skip
            batch.drop_column(column)
    with op.batch_alter_table("staff_user") as batch:
        batch.drop_constraint(op.f("ck_staff_user_role"), type_="check")
        batch.create_check_constraint(op.f("ck_staff_user_role"), ROLES.format(""))
