"""announcements: the published and digest messages, and messages to people not on the roll

Revision ID: a7e3c91d5b24
Revises: 9d3e5f7a1b20
Create Date: 2026-12-03 13:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7e3c91d5b24"
down_revision: str | None = "9d3e5f7a1b20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The kind is a string with a CHECK constraint, not a database enum, so a new kind means the
# constraint rewritten: batch mode does it on SQLite (which cannot alter a constraint) by
# copying the table, and on PostgreSQL by DROP and ADD CONSTRAINT.
KINDS = (
    "kind IN ('invitation', 'new_link', 'reminder', 'confirmation', 'extension', 'notice', "
    "'closed'{})"
)


def upgrade() -> None:
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(
            op.f("ck_outbox_message_kind"), KINDS.format(", 'published', 'digest'")
        )
        # A scrutineer or the LMC contact is not a practice on the roll.
        batch.alter_column("roll_entry_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    # The old schema has no place for these messages: they go with it.
    op.execute(
        "DELETE FROM outbox_message WHERE roll_entry_id IS NULL OR kind IN ('published', 'digest')"
    )
    with op.batch_alter_table("outbox_message") as batch:
        batch.alter_column("roll_entry_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint(op.f("ck_outbox_message_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_outbox_message_kind"), KINDS.format(""))
