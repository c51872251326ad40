"""staff sessions and two-factor

Revision ID: 43b2f5d06417
Revises: 7f79e7a78b00
Create Date: 2026-11-24 12:07:35.694109+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models

revision: str = "43b2f5d06417"
down_revision: str | None = "7f79e7a78b00"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOTP_CHECK = "ck_staff_user_totp_confirmed_has_secret"
TOTP_CHECK_SQL = "totp_confirmed_at IS NULL OR totp_secret_encrypted IS NOT NULL"


def upgrade() -> None:
    # Sessions that exist already were last seen, as far as anyone knows, when they began.
    with op.batch_alter_table("staff_session", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_seen_at", app.models.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE staff_session SET last_seen_at = created_at")
    with op.batch_alter_table("staff_session", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen_at", existing_type=app.models.UTCDateTime(timezone=True), nullable=False
        )

    # Columns are added in place rather than by copying the table (SQLite's batch mode): the
    # copy would drop staff_user under the staff_session rows, which foreign keys refuse.
    op.add_column("staff_user", sa.Column("totp_secret_encrypted", sa.String(200), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds no constraint to an existing table, but takes one on a new column.
        op.execute(
            "ALTER TABLE staff_user ADD COLUMN totp_confirmed_at DATETIME "
            f"CONSTRAINT {TOTP_CHECK} CHECK ({TOTP_CHECK_SQL})"
        )
    else:
        op.add_column(
            "staff_user",
            sa.Column("totp_confirmed_at", app.models.UTCDateTime(timezone=True), nullable=True),
        )
        op.create_check_constraint(op.f(TOTP_CHECK), "staff_user", TOTP_CHECK_SQL)
    op.add_column("staff_user", sa.Column("totp_last_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(TOTP_CHECK), "staff_user", type_="check")
    # On SQLite the check goes with the column it was declared on, which is dropped first.
    op.drop_column("staff_user", "totp_confirmed_at")
    op.drop_column("staff_user", "totp_last_step")
    op.drop_column("staff_user", "totp_secret_encrypted")

    with op.batch_alter_table("staff_session", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
