"""sealed ballot box: ballots sealed to a tally key until the holders open the box

Revision ID: 5e41ed0b0c58
Revises: 047949486580
Create Date: 2026-12-03 09:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e41ed0b0c58"
down_revision: str | None = "047949486580"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A ballot opened before this revision has no tally key and a plaintext box: it could take no
    # more votes, nor be published, afterwards. Upgrade between ballots.
    unfinished = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM ballot WHERE status IN ('open', 'closed')")
    )
    if unfinished:
        raise RuntimeError(
            f"{unfinished} ballot(s) are open or closed but not yet published. Publish or void "
            "them with the current version, then upgrade: ballots opened before sealed ballot "
            "boxes cannot continue under them."
        )
    op.create_table(
        "sealed_ballot",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ballot_id", sa.Integer(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ballot_id"], ["ballot.id"], name=op.f("fk_sealed_ballot_ballot_id_ballot")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealed_ballot")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("ballot") as batch:
        batch.add_column(sa.Column("box_opened_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ballot") as batch:
        batch.drop_column("box_opened_at")
    op.drop_table("sealed_ballot")
