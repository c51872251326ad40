"""Abuse limits: sign-in attempts per account and per address; links per address and per link."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from app import config, limits
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


def _rows(engine: Engine) -> dict[str, int]:
    """Rows per table, but the limits' own counters."""
    with engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in inspect(engine).get_table_names()
            if table != "rate_limit"
        }


def test_every_link_that_cannot_vote_gets_the_same_answer_and_adds_no_row(
    client: TestClient, db: Engine, secretariat: dict[str, str], ballot_id: int
) -> None:
    replaced = factories.token_for("G83002")
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/voters/G83002/reissue", headers=secretariat
    )
    assert response.status_code == 200
    valid = factories.token_for("G83003")
    one_changed = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    links = {
        "unknown": "x" * len(valid),
        "replaced": replaced,
        "one character changed": one_changed,
    }
    before = _rows(db)
    for page in ("/vote/{}", "/vote/{}/choices", "/api/v1/vote/{}"):
        answers = {name: client.get(page.format(token)) for name, token in links.items()}
        shapes = {(r.status_code, r.text.replace(links[n], "")) for n, r in answers.items()}
        assert len(shapes) == 1, (page, shapes)
        assert {r.status_code for r in answers.values()} == {404}
    posts = {n: client.post(f"/api/v1/vote/{t}", json={"choices": {}}) for n, t in links.items()}
    assert len({(r.status_code, r.text) for r in posts.values()}) == 1
    assert _rows(db) == before
    assert client.get(f"/api/v1/vote/{valid}").status_code == 200


def test_guessing_links_from_one_address_is_throttled_but_valid_links_still_work(
    client: TestClient, ballot_id: int
) -> None:
    statuses = [client.get(f"/vote/guess-{n:04d}").status_code for n in range(31)]
    assert statuses[:30] == [404] * 30
    refused = client.get("/api/v1/vote/guess-9999")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    assert "Too many attempts to open voting links" in refused.json()["detail"]
    # The same address, shared by a whole NHS network, still reaches and casts with valid links.
    token = factories.token_for("G83001")
    assert client.get(f"/vote/{token}").status_code == 200
    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    assert client.post(f"/api/v1/vote/{token}", json=vote).status_code == 200


def test_each_link_has_its_own_allowance_of_attempts(client: TestClient, ballot_id: int) -> None:
    token, other = factories.token_for("G83001"), factories.token_for("G83002")
    allowance = limits.LINK_ATTEMPTS.attempts
    assert {client.get(f"/api/v1/vote/{token}").status_code for _ in range(allowance)} == {200}
    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    refused = client.post(f"/api/v1/vote/{token}", json=vote)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many attempts to use this voting link" in refused.json()["detail"]
    assert client.get(f"/vote/{token}").status_code == 429  # pages and API count together
    assert client.post(f"/api/v1/vote/{other}", json=vote).status_code == 200


def test_a_link_counted_in_the_database_is_still_refused_after_its_allowance(
    client: TestClient, ballot_id: int, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In memory the count runs on the event loop; in the database it must still be counted
    # (off the loop) and refuse the link once its allowance is spent.
    monkeypatch.setattr(config.get_settings(), "rate_limit_store", "database")
    assert not limits.counts_in_memory()
    token = factories.token_for("G83003")
    allowance = limits.LINK_ATTEMPTS.attempts
    assert {client.get(f"/api/v1/vote/{token}").status_code for _ in range(allowance)} == {200}
    refused = client.post(f"/api/v1/vote/{token}", json={"choices": {}})
    assert refused.status_code == 429
    with db.connect() as connection:
        counted = connection.execute(text("SELECT max(attempts) FROM rate_limit")).scalar_one()
    assert counted == allowance + 1
