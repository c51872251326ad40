from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from app.db import Base


def test_models_and_migrations_agree(db: Engine) -> None:
    with db.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_ballot_box_cannot_be_joined_to_a_practice(db: Engine) -> None:
    inspector = inspect(db)
    columns = {c["name"] for c in inspector.get_columns("ballot_box_entry")}
    assert columns == {"id", "ballot_id", "receipt_code", "choices", "locality", "votes"}
    foreign = {fk["referred_table"] for fk in inspector.get_foreign_keys("ballot_box_entry")}
    assert foreign == {"ballot"}
    # No time of casting, no practice, no link: the key is random, not a sequence.
    assert not any("_at" in c or "practice" in c or "link" in c or "roll" in c for c in columns)
    assert [
        c["type"].python_type
        for c in inspector.get_columns("ballot_box_entry")
        if c["name"] == "id"
    ] == [str]


def test_ballot_box_storage_order_is_not_casting_order(db: Engine) -> None:
    with db.connect() as connection:
        if db.dialect.name == "sqlite":
            sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ballot_box_entry'"
            ).scalar_one()
            assert "WITHOUT ROWID" in sql.upper()
        else:
            default = connection.exec_driver_sql(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'ballot_box_entry' AND column_name = 'id'"
            ).scalar_one()
            assert default is None  # no sequence: the key is random


def test_durability_settings(db: Engine) -> None:
    with db.connect() as connection:
        if db.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
        else:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                assert connection.exec_driver_sql(f"SHOW {setting}").scalar_one() == "on"
