"""Database, app and clock fixtures: every test that touches the database runs on SQLite and on
PostgreSQL (`pytest --db=postgresql`), against the migrated schema."""

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from sqlalchemy import text
from sqlalchemy.engine import Engine

from app import clock, config, limits, signing
from app import db as database
from app.main import create_app
from app.models import Role
from tests import browser as browser_tests
from tests import factories
from tests.pgserver import running_postgres

# Test rolls use the reserved .example domain (RFC 2606) as well as NHSmail's; set here, before
# any settings are read, so parser tests without a database see it too.
os.environ["ALLOWED_EMAIL_DOMAINS"] = "nhs.net,example"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db", choices=("sqlite", "postgresql"), default="sqlite", help="database to test on"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database under test: {config.getoption('--db')}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "db" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


def _reset_caches() -> None:
    config.get_settings.cache_clear()
    signing.service_key.cache_clear()
    database.get_engine.cache_clear()
    database.get_sessionmaker.cache_clear()


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("data")
    kind = request.config.getoption("--db")
    if kind == "postgresql":
        with running_postgres() as url:
            yield from _configured(url, data_dir)
    else:
        yield from _configured(f"sqlite:///{data_dir / 'mandate.db'}", data_dir)


def _configured(url: str, data_dir: Path) -> Iterator[str]:
    os.environ.update(
        DATABASE_URL=url,
        DATA_DIR=str(data_dir),
        MAILDIR=str(data_dir / "mail"),
        MANDATE_ENV="test",
        MAIL_SEND_IN_SERVER="false",
        SCHEDULE_IN_SERVER="false",
        SECRET_KEY="test-secret-key-that-is-long-enough-for-hmac",
        BASE_URL="http://testserver",
    )
    _reset_caches()
    database.migrate(url)
    yield url
    database.get_engine().dispose()
    _reset_caches()


@pytest.fixture
def engine(database_url: str) -> Engine:
    return database.get_engine()


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """A clean, migrated database for one test."""
    yield engine
    tables = [t.name for t in reversed(database.Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608
    if engine is not database.get_engine():
        engine.dispose()  # a test swapped the engine for one with other settings
    maildir = config.get_settings().maildir
    if maildir is not None:
        shutil.rmtree(maildir, ignore_errors=True)


@pytest.fixture
def client(db: Engine) -> Iterator[TestClient]:
    limits.forget()  # every test starts with its allowance of attempts
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def frozen_clock() -> Iterator[datetime]:
    """Pin the clock inside the example ballot's voting period; tests move it with clock.freeze."""
    at = datetime(2016, 11, 10, 12, 0, tzinfo=UTC)
    clock.freeze(at)
    yield at
    clock.freeze(None)


@pytest.fixture
def secretariat(client: TestClient) -> dict[str, str]:
    return factories.staff_headers(client, Role.secretariat)


@pytest.fixture
def ballot_id(client: TestClient, secretariat: dict[str, str], frozen_clock: object) -> int:
    """An open ballot of nine practices, inside its voting period."""
    return factories.open_ballot(client, secretariat)


@pytest.fixture
def server(db: object, tmp_path: Path) -> Iterator[browser_tests.Server]:
    """`mandate serve` on a free loopback port, against the test database."""
    with browser_tests.serving(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with browser_tests.launched() as chromium:
        yield chromium
