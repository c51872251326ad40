"""Secrecy: no count, choice or receipt before close for anyone; no secret in the database."""

import re
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from app import ballots, clock
from app.db import session_scope
from app.main import create_app
from app.models import Role
from tests import factories

VOTE = {"choices": {"delegated": "Against", "constitution": "Abstain"}}


def _get_endpoints() -> list[str]:
    paths = create_app().openapi()["paths"]
    return sorted(path for path, methods in paths.items() if "get" in methods)


def _fill(path: str, ballot_id: int, token: str) -> str:
    return (
        path.replace("{ballot_id}", str(ballot_id))
        .replace("{token}", token)
        .replace("{ods_code}", "G83001")
    )


def test_no_endpoint_shows_a_count_choice_or_receipt_before_close(
    client: TestClient, frozen_clock: object
) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.open_ballot(client, secretariat)
    receipts = []
    for code in ("G83001", "G83002", "G83003"):
        response = client.post(f"/api/v1/vote/{factories.token_for(code)}", json=VOTE)
        receipts.append(response.json()["receipt_code"])
    token = factories.token_for("G83001")
    audiences: dict[str, dict[str, str]] = {"anyone": {}}
    audiences.update({role.value: factories.staff_headers(client, role) for role in Role})
    for phase in ("open", "closed"):
        if phase == "closed":
            clock.freeze(factories.CLOSES)
            # Weeks have passed: everyone signs in again.
            secretariat = factories.staff_headers(client, Role.secretariat)
            audiences.update({role.value: factories.staff_headers(client, role) for role in Role})
            assert (
                client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat).status_code
                == 200
            )
        for who, headers in audiences.items():
            for path in _get_endpoints():
                response = client.get(_fill(path, ballot_id, token), headers=headers)
                body = response.text
                assert not any(r in body for r in receipts), (phase, who, path)
                assert '"counts"' not in body, (phase, who, path)
                assert "Against" not in body.replace('"Against",', ""), (phase, who, path)
                if path.endswith(("/results", "/ballot-box")):
                    assert response.status_code == 409, (phase, who, path)


def _all_text(engine: Engine) -> str:
    """Every value in every table, as text."""
    rows: list[Any] = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows += connection.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608
    return "\n".join(str(row) for row in rows)


def test_no_token_or_password_rests_in_the_database(
    client: TestClient, db: Engine, frozen_clock: object
) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    factories.open_ballot(client, secretariat)
    tokens = [t for ts in factories.sent_links().values() for t in ts]
    bearer = secretariat["Authorization"].removeprefix("Bearer ")
    stored = _all_text(db)
    assert tokens
    assert not [t for t in tokens if t in stored]
    assert bearer not in stored
    assert factories.PASSWORD not in stored


def test_close_waits_for_a_cast_in_flight(client: TestClient, frozen_clock: object) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.open_ballot(client, secretariat)
    clock.freeze(factories.CLOSES)
    closed_at: list[float] = []

    def close() -> None:
        with session_scope() as session:
            ballots.close_ballot(session, ballot_id=ballot_id, actor="operator:test")
        closed_at.append(time.monotonic())

    # A cast holds the ballot row FOR SHARE (on SQLite, the write lock) until it commits.
    with session_scope() as casting:
        ballots.get(casting, ballot_id, lock="share")
        closer = threading.Thread(target=close)
        closer.start()
        time.sleep(0.5)
        assert closed_at == []  # the close is still waiting for the cast
        released = time.monotonic()
    closer.join(timeout=30)
    assert closed_at
    assert closed_at[0] >= released


@pytest.mark.parametrize("receipt_mode", ["inclusion_only", "receipt_with_choices"])
def test_published_box_follows_the_receipt_mode(
    client: TestClient, frozen_clock: object, receipt_mode: str
) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.open_ballot(client, secretariat, receipt_mode=receipt_mode)
    receipt = client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=VOTE).json()[
        "receipt_code"
    ]
    clock.freeze(factories.CLOSES)
    secretariat = factories.staff_headers(client, Role.secretariat)
    client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    factories.open_box(client, secretariat, ballot_id)
    factories.countersign(client, ballot_id)
    client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    page = client.get(f"/ballots/{ballot_id}/check").text
    form_token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert form_token is not None
    checked = client.post(
        f"/ballots/{ballot_id}/check",
        data={"receipt_code": receipt, "form_token": form_token.group(1)},
    )
    assert checked.status_code == 200
    assert checked.headers["Cache-Control"] == "no-store"  # a result may show the choices
    box = client.get(f"/api/v1/ballots/{ballot_id}/ballot-box").json()
    if receipt_mode == "inclusion_only":
        assert box["receipts"] == [receipt]
        assert box["ballots"] == [{"choices": VOTE["choices"], "locality": "North", "votes": 1}]
    else:
        assert box["entries"] == [
            {"receipt_code": receipt, "choices": VOTE["choices"], "locality": "North", "votes": 1}
        ]
