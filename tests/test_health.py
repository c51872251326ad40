"""Start-up self-check, liveness and readiness, and a database that goes away."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from app import config, health
from app import db as database
from app.main import create_app

# The revision before the newest: a database a newer release has not migrated yet.
OLDER = "8508f8a6591d"


@pytest.fixture
def database_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the app at another database for one test, then back."""
    yield
    monkeypatch.undo()
    database.get_engine().dispose()
    config.get_settings.cache_clear()
    database.get_engine.cache_clear()
    database.get_sessionmaker.cache_clear()


def _use(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    database.get_engine().dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    config.get_settings.cache_clear()
    database.get_engine.cache_clear()
    database.get_sessionmaker.cache_clear()


def test_liveness_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["schema"] == health.schema(database.get_engine())[1]


def test_start_up_logs_the_durability_settings(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mandate.health"), TestClient(create_app()):
        pass
    logged = caplog.text
    if db.dialect.name == "sqlite":
        assert "journal_mode=wal, synchronous=2" in logged
    else:
        assert "fsync=on, synchronous_commit=on, full_page_writes=on" in logged
    assert "(current)" in logged


def test_a_database_without_the_durability_it_needs_is_reported(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    found = health.durability(engine)
    assert "journal_mode is delete, not wal" in found.problems
    engine.dispose()


def test_a_database_whose_schema_is_behind_is_refused(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_at: None
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(database.alembic_config(url), OLDER)
    _use(monkeypatch, url)
    app = create_app()
    with pytest.raises(health.SchemaBehind, match="run `mandate migrate` first"), TestClient(app):
        pass
    not_ready = TestClient(app).get("/readyz")  # without the start-up, which would refuse
    assert not_ready.status_code == 503
    assert not_ready.json()["schema"] == OLDER


def test_an_unreachable_database_answers_503_not_500(
    db: Engine, monkeypatch: pytest.MonkeyPatch, database_at: None
) -> None:
    _use(monkeypatch, "postgresql+psycopg://mandate@127.0.0.1:1/mandate")
    app = TestClient(create_app())  # no start-up: its self-check would refuse to start
    response = app.get("/api/v1/ballots/1/results")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"] == "DatabaseUnavailable"
    assert app.get("/readyz").status_code == 503
    assert app.get("/healthz").status_code == 200
