"""What the service relies on from its database, checked at start and on /readyz."""

import logging
from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.db import alembic_config

log = logging.getLogger("mandate.health")

# The settings a receipt's durability rests on, and the value each must have.
_POSTGRES = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
_SQLITE = {"journal_mode": "wal", "synchronous": "2"}  # 2 is FULL


class SchemaBehind(RuntimeError):
    pass


@dataclass(frozen=True)
class Durability:
    settings: dict[str, str]
    problems: list[str]


def durability(engine: Engine) -> Durability:
    wanted = _SQLITE if engine.dialect.name == "sqlite" else _POSTGRES
    found = {}
    with engine.connect() as connection:
        for name in wanted:
            query = f"PRAGMA {name}" if engine.dialect.name == "sqlite" else f"SHOW {name}"
            found[name] = str(connection.execute(text(query)).scalar()).lower()
    problems = [
        f"{name} is {value}, not {wanted[name]}"
        for name, value in found.items()
        if value != wanted[name]
    ]
    return Durability(found, problems)


def schema(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's migration revision, the newest revision this code knows)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head


def self_check(engine: Engine) -> None:
    """Log what durability rests on, and refuse a database whose schema is behind the code."""
    found = durability(engine)
    described = ", ".join(f"{k}={v}" for k, v in found.settings.items())
    if found.problems:
        log.warning("durability at risk on %s: %s", engine.dialect.name, "; ".join(found.problems))
    else:
        log.info("durability settings on %s: %s", engine.dialect.name, described)
    current, head = schema(engine)
    if current != head:
        raise SchemaBehind(
            f"The database schema is at {current or 'nothing'} but this version needs {head}: "
            "run `mandate migrate` first."
        )
    log.info("database schema at %s (current)", current)
