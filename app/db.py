"""Engine, session and the declarative base."""

import contextlib
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from typing import Any, cast

import anyio
import anyio.to_thread
from fastapi import Request
from sqlalchemy import MetaData, Table, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str) -> Engine:
    """An engine whose log lines and errors never carry a statement's values (hide_parameters):
    they can be receipt codes, choices or hashes of secrets."""
    lock_timeout_ms = get_settings().database_lock_timeout_ms
    if url.startswith("sqlite"):
        return _sqlite_engine(url, lock_timeout_ms)
    # A lock wait that ends in lock_timeout is refused as busy (409), never left hanging.
    return create_engine(
        url,
        pool_size=20,
        max_overflow=20,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args={"options": f"-c lock_timeout={lock_timeout_ms}"},
    )


def _sqlite_engine(url: str, lock_timeout_ms: int) -> Engine:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        pool_size=20,
        max_overflow=20,
        hide_parameters=True,
        connect_args={"timeout": lock_timeout_ms / 1000},
    )

    # pysqlite opens transactions lazily and as DEFERRED, so two writers can both read and then
    # one fails to upgrade its lock. SQLAlchemy's documented recipe: let us emit BEGIN ourselves,
    # and make it IMMEDIATE so a write transaction holds the write lock from its first statement.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a vote that was answered with a receipt survives power loss, not just a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten, not left in free pages: the ciphertexts removed when a
        # box is opened, and anything else deleted, cannot be read back from a copy of the file.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={lock_timeout_ms}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with get_sessionmaker()() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Commits and rollbacks get threads of their own, so a request holding locks can always finish
# even when every worker thread is busy waiting for those locks.
_finishing = anyio.CapacityLimiter(64)
# Requests using PostgreSQL at once, per process: well under the 40 worker threads, so a request
# holding a row lock always finds a thread for its next step while others wait for that lock.
POSTGRES_TURNS = 16


def database_turn() -> anyio.Semaphore:
    """How many requests of this process may use the database at once."""
    # SQLite has one writer, and every transaction here begins IMMEDIATE, so one at a time.
    # Waiting for a turn here costs no worker thread; waiting on a lock inside the database
    # does, and a request holding the lock could then starve for a thread to finish in.
    sqlite = get_settings().database_url.startswith("sqlite")
    return anyio.Semaphore(1 if sqlite else POSTGRES_TURNS)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request, committed before the response is sent."""
    async with request.app.state.database_turn:
        scope = session_scope()
        session = scope.__enter__()  # no I/O yet: the first statement begins the transaction
        try:
            yield session
        except BaseException as exc:
            await anyio.to_thread.run_sync(
                scope.__exit__, type(exc), exc, exc.__traceback__, limiter=_finishing
            )
            raise
        if request.app.state.database_is_sqlite:
            # SQLite serves one request at a time here, and handing its commit (one fsync) to
            # a worker thread and back costs the voters more than the commit itself.
            scope.__exit__(None, None, None)
        else:
            await anyio.to_thread.run_sync(scope.__exit__, None, None, None, limiter=_finishing)


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def alembic_config(url: str | None = None) -> Any:
    """Alembic's configuration for this checkout, optionally pointed at another database."""
    from pathlib import Path

    from alembic.config import Config

    config = Config(str(Path(__file__).resolve().parent.parent / "alembic.ini"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str | None = None) -> None:
    """Bring the database up to the newest schema."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def table(model: type[Base]) -> Table:
    """A model's table, for the few hot statements written in Core rather than through the ORM."""
    return cast(Table, model.__table__)
