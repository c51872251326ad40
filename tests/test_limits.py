"""Abuse limits: sign-in attempts per account and per address, counted alone or together."""

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app import limits
from app.models import Role
from tests import factories


def _sign_in(client: TestClient, username: str, password: str) -> int:
    form = {"username": username, "password": password}
    return client.post("/api/v1/auth/token", data=form).status_code


def test_a_password_guesser_is_throttled_on_the_account_and_says_when_to_retry(
    client: TestClient, frozen_clock: object
) -> None:
    # The clock stands still, so the attempts cannot straddle the end of a window.
    factories.staff_headers(client, Role.secretariat)  # one good sign-in
    statuses = [_sign_in(client, "secretariat-user", f"wrong guess {n:04d}") for n in range(9)]
    assert statuses == [401] * 9
    refused = client.post(
        "/api/v1/auth/token",
        data={"username": "secretariat-user", "password": factories.PASSWORD},
    )
    assert refused.status_code == 429  # even the right password, until the window passes
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    assert "Too many attempts to sign in" in refused.json()["detail"]
    assert _sign_in(client, "auditor-user", "wrong guess 0000") == 401  # another account


def test_one_address_is_throttled_across_accounts(client: TestClient, frozen_clock: object) -> None:
    statuses = [_sign_in(client, f"someone-{n}", "wrong guess 0000") for n in range(31)]
    assert statuses[:30] == [401] * 30
    assert statuses[30] == 429


def test_servers_counting_in_the_database_count_together(db: Engine) -> None:
    first, second = limits.DatabaseStore(db), limits.DatabaseStore(db)
    assert [first.hit("k", 600), second.hit("k", 600), first.hit("k", 600)] == [1, 2, 3]
    assert second.hit("k", 900) == 1  # a new window starts afresh
    assert first.hit("other", 600) == 1
