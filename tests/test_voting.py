"""Casting through the voter API: once per practice, every question, nothing leaked."""

import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from app import clock, config
from app import db as database
from app.main import create_app
from tests import factories

VOTE = {"choices": {"delegated": "For", "constitution": "Abstain"}}


def test_get_shows_the_ballot_and_never_consumes_the_link(
    client: TestClient, ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    for _ in range(3):
        response = client.get(f"/api/v1/vote/{token}")
        assert response.status_code == 200
        body = response.json()
        assert body["practice"] == {"ods_code": "G83001", "name": "Practice 1"}
        assert body["has_voted"] is False
        assert [q["id"] for q in body["questions"]] == ["delegated", "constitution"]
        assert body["questions"][0]["options"] == ["For", "Against", "Abstain"]
    assert client.post(f"/api/v1/vote/{token}", json=VOTE).status_code == 200


def test_cast_returns_a_readable_receipt(client: TestClient, ballot_id: int) -> None:
    response = client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=VOTE)
    assert response.status_code == 200
    code = response.json()["receipt_code"]
    assert len(code) == 24
    assert code.count("-") == 4
    assert not set(code.replace("-", "")) & set("ILOU")


def test_second_vote_is_refused_without_revealing_the_first(
    client: TestClient, ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    assert client.post(f"/api/v1/vote/{token}", json=VOTE).status_code == 200
    again = client.post(
        f"/api/v1/vote/{token}", json={"choices": {"delegated": "Against", "constitution": "For"}}
    )
    assert again.status_code == 409
    assert again.json()["error"] == "AlreadyVoted"
    assert "already voted" in again.json()["detail"]
    assert "For" not in again.text
    assert "Abstain" not in again.text
    status = client.get(f"/api/v1/vote/{token}").json()
    assert status["has_voted"] is True


def test_any_link_of_the_practice_votes_once(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot = factories.draft_ballot(client, secretariat)
    two_addresses = factories.roll(9, emails_per_practice=2)
    assert (
        client.put(
            f"/api/v1/ballots/{ballot}/roll", json=two_addresses, headers=secretariat
        ).status_code
        == 200
    )
    factories.approve(client, ballot)
    client.post(
        f"/api/v1/ballots/{ballot}/open", json={"acknowledge_warnings": True}, headers=secretariat
    )
    first, second = factories.sent_links()["G83001"]
    assert client.post(f"/api/v1/vote/{first}", json=VOTE).status_code == 200
    assert client.post(f"/api/v1/vote/{second}", json=VOTE).status_code == 409


def test_every_question_needs_an_answer(client: TestClient, ballot_id: int) -> None:
    token = factories.token_for("G83001")
    response = client.post(f"/api/v1/vote/{token}", json={"choices": {"delegated": "For"}})
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"loc": "choices.constitution", "problem": "answer this question (Abstain is an answer)"}
    ]
    assert client.get(f"/api/v1/vote/{token}").json()["has_voted"] is False


def test_unknown_question_and_option_are_named_not_echoed(
    client: TestClient, ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    choices = {"delegated": "Maybe", "constitution": "For", "merger": "For"}
    response = client.post(f"/api/v1/vote/{token}", json={"choices": choices})
    assert response.status_code == 422
    locs = {p["loc"]: p["problem"] for p in response.json()["problems"]}
    assert locs["choices.merger"] == "there is no such question on this ballot"
    assert locs["choices.delegated"] == "not one of the options: For, Against, Abstain"
    assert "Maybe" not in response.text


def test_malformed_body_gets_a_422_that_does_not_echo_it(
    client: TestClient, ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    response = client.post(f"/api/v1/vote/{token}", json={"choices": ["For-secret-choice"]})
    assert response.status_code == 422
    assert "For-secret-choice" not in response.text
    assert (
        client.post(
            f"/api/v1/vote/{token}",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ).status_code
        == 422
    )


def test_unknown_link_is_a_clear_404(client: TestClient, ballot_id: int) -> None:
    response = client.get("/api/v1/vote/not-a-real-token-at-all")
    assert response.status_code == 404
    assert response.json()["error"] == "LinkInvalid"
    assert client.post("/api/v1/vote/not-a-real-token-at-all", json=VOTE).status_code == 404


def test_no_vote_before_opening_time(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    clock.freeze(factories.OPENS - timedelta(days=2))
    factories.open_ballot(client, secretariat)
    token = factories.token_for("G83001")
    assert client.get(f"/api/v1/vote/{token}").json()["phase"] == "not_yet_open"
    response = client.post(f"/api/v1/vote/{token}", json=VOTE)
    assert response.status_code == 409
    assert "opens at" in response.json()["detail"]
    clock.freeze(factories.OPENS)
    assert client.post(f"/api/v1/vote/{token}", json=VOTE).status_code == 200


def test_no_vote_after_closing_time(client: TestClient, ballot_id: int) -> None:
    token = factories.token_for("G83001")
    clock.freeze(factories.CLOSES)
    response = client.post(f"/api/v1/vote/{token}", json=VOTE)
    assert response.status_code == 409
    assert response.json()["error"] == "BallotClosed"
    assert client.get(f"/api/v1/vote/{token}").json()["phase"] == "closed"


def test_reissue_revokes_the_old_links(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    old = factories.token_for("G83002")
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/voters/G83002/reissue", headers=secretariat
    )
    assert response.status_code == 200
    new = [t for t in factories.sent_links()["G83002"] if t != old]
    assert len(new) == 1
    revoked = client.post(f"/api/v1/vote/{old}", json=VOTE)
    assert revoked.status_code == 404
    assert "replaced by a newer link" in revoked.json()["detail"]
    assert client.post(f"/api/v1/vote/{new[0]}", json=VOTE).status_code == 200


def test_voter_name_goes_to_turnout_never_beside_choices(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    body = {**VOTE, "voter_name": "Pat Jones", "voter_role": "Practice manager"}
    assert (
        client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=body).status_code == 200
    )
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    voted = [p for p in turnout["practices"] if p["voted_at"]]
    assert [(p["ods_code"], p["voted_by_name"], p["voted_by_role"]) for p in voted] == [
        ("G83001", "Pat Jones", "Practice manager")
    ]
    assert "For" not in str(turnout)
    assert "Abstain" not in str(turnout)


def test_tokens_choices_and_receipts_never_reach_the_log(
    client: TestClient, ballot_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = factories.token_for("G83001")
    client.get(f"/api/v1/vote/{token}")
    client.get(f"/vote/{token}")
    receipt = client.post(f"/api/v1/vote/{token}", json=VOTE).json()["receipt_code"]
    client.post(f"/api/v1/vote/{token}", json=VOTE)
    # The test client logs its own requests (the client holds the link); the server must not.
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert "/vote/[link]" in logged
    assert token not in logged
    assert receipt not in logged
    assert "Abstain" not in logged


def test_a_lock_timeout_is_refused_as_busy_and_records_nothing(
    client: TestClient, ballot_id: int, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = factories.token_for("G83001")
    monkeypatch.setenv("DATABASE_LOCK_TIMEOUT_MS", "300")
    _reset_caches()
    try:
        with TestClient(create_app()) as impatient, db.connect() as other:
            # Another transaction holds the ballot row (on SQLite, the whole database).
            with other.begin():
                other.execute(text(_LOCK_BALLOT[db.dialect.name]), {"id": ballot_id})
                response = impatient.post(f"/api/v1/vote/{token}", json=VOTE)
            assert response.status_code == 409
            assert response.json()["error"] == "ServerBusy"
            assert "nothing was recorded" in response.json()["detail"]
            assert response.headers["Retry-After"] == "1"
    finally:
        monkeypatch.delenv("DATABASE_LOCK_TIMEOUT_MS")
        _reset_caches()
    assert client.get(f"/api/v1/vote/{token}").json()["has_voted"] is False
    assert client.post(f"/api/v1/vote/{token}", json=VOTE).status_code == 200


_LOCK_BALLOT = {
    "postgresql": "SELECT id FROM ballot WHERE id = :id FOR UPDATE",
    "sqlite": "UPDATE ballot SET title = title WHERE id = :id",
}


def _reset_caches() -> None:
    database.get_engine().dispose()
    config.get_settings.cache_clear()
    database.get_engine.cache_clear()
    database.get_sessionmaker.cache_clear()


def test_a_cast_takes_one_round_trip_per_thing_it_records(
    client: TestClient, ballot_id: int
) -> None:
    # The cast endpoint's throughput follows its statements: read the link with its ballot,
    # take the practice's one vote, queue the confirmation, seal the ballot, extend the trail.
    assert (
        client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=VOTE).status_code == 200
    )
    engine = database.get_engine()
    # The in-server mail sender may run at the same time on its own connection: keep only
    # the statements on the connection the cast ran on.
    statements: list[tuple[int, str]] = []

    def seen(conn: object, _cursor: object, statement: str, *_args: object) -> None:
        words = statement.split()
        if words[0] in ("INSERT", "DELETE"):
            statements.append((id(conn), f"{words[0]} {words[2]}"))
        elif words[0] == "UPDATE":
            statements.append((id(conn), f"UPDATE {words[1]}"))
        elif words[0] == "SELECT":
            statements.append((id(conn), "SELECT"))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = client.post(f"/api/v1/vote/{factories.token_for('G83002')}", json=VOTE)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200
    cast_on = next(conn for conn, s in statements if s == "UPDATE roll_entry")
    cast = [s for conn, s in statements if conn == cast_on]
    writes = sorted(s for s in cast if not s.startswith("SELECT"))
    assert writes == [
        "INSERT audit_entry",
        "INSERT outbox_message",
        "INSERT sealed_ballot",
        "UPDATE roll_entry",
    ]
    # The link with its ballot, the trail's head, and on PostgreSQL the trail's advisory lock.
    reads = len(cast) - len(writes)
    assert reads == (2 if engine.dialect.name == "sqlite" else 3)
