"""Roll import: every problem reported at once, nothing imported on error."""

import pytest
from fastapi.testclient import TestClient

from app import errors, roll
from app.models import Role
from tests import factories

HEADER = "ods_code,name,locality,list_size,emails\n"


def test_csv_roll_with_several_addresses() -> None:
    rows = roll.parse_csv(HEADER + "g83001,Riverside Surgery,North,9000,a@x.example; b@x.example\n")
    assert rows[0].ods_code == "G83001"
    assert [str(e) for e in rows[0].emails] == ["a@x.example", "b@x.example"]


def test_csv_problems_are_all_reported_with_their_line() -> None:
    text = HEADER + (
        "G83001,Riverside,North,9000,a@x.example\n"
        "G8300,Short code,North,9000,b@x.example\n"
        "G83003,Bad email,North,9000,not-an-address\n"
        "G83004,Empty list,North,0,c@x.example\n"
    )
    with pytest.raises(errors.InvalidInput) as raised:
        roll.parse_csv(text)
    locs = [p["loc"] for p in raised.value.problems or []]
    assert locs == [
        "line 3 (G8300).ods_code",
        "line 4 (G83003).emails[0]",
        "line 5 (G83004).list_size",
    ]


def test_duplicate_practice_is_refused() -> None:
    text = HEADER + "G83001,A,North,9000,a@x.example\nG83001,B,North,9000,b@x.example\n"
    with pytest.raises(errors.InvalidInput) as raised:
        roll.parse_csv(text)
    assert raised.value.problems == [{"loc": "G83001", "problem": "listed more than once"}]


def test_missing_header_says_what_is_expected() -> None:
    with pytest.raises(errors.InvalidInput) as raised:
        roll.parse_csv("code,name\nG83001,A\n")
    assert "ods_code,name,locality,list_size,emails" in raised.value.detail


def test_roll_upload_as_csv_file(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    ballot_id = client.post("/api/v1/ballots", json=factories.definition(), headers=headers).json()[
        "id"
    ]
    csv_text = HEADER + "G83001,Riverside,North,9000,a@x.example\n"
    response = client.put(
        f"/api/v1/ballots/{ballot_id}/roll",
        files={"file": ("roll.csv", csv_text, "text/csv")},
        headers=headers,
    )
    assert response.status_code == 200
    assert [p["ods_code"] for p in response.json()] == ["G83001"]


def test_bad_roll_changes_nothing(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.draft_ballot(client, headers, practices=4)
    bad = factories.roll(2)
    bad[1]["emails"] = ["nope"]
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=bad, headers=headers)
    assert response.status_code == 422
    assert response.json()["problems"][0]["loc"] == "roll[1].emails[0]"
    kept = client.get(f"/api/v1/ballots/{ballot_id}/roll", headers=headers).json()
    assert len(kept) == 4


def test_roll_body_must_be_json_or_csv(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    ballot_id = client.post("/api/v1/ballots", json=factories.definition(), headers=headers).json()[
        "id"
    ]
    response = client.put(
        f"/api/v1/ballots/{ballot_id}/roll",
        content=b"<xml/>",
        headers={**headers, "content-type": "application/xml"},
    )
    assert response.status_code == 422
    assert "Send the roll as JSON" in response.json()["detail"]
