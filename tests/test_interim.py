"""No interim results (Council of Europe standard 24): before close, nobody, admin included,
sees a count, a choice or a receipt anywhere; staff who ask are refused and recorded."""

import re

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.models import Role
from tests import factories

VOTE = {"choices": {"delegated": "Against", "constitution": "Abstain"}}


def _gets() -> list[str]:
    paths = create_app().openapi()["paths"]
    return sorted(p for p, methods in paths.items() if "get" in methods)


@pytest.mark.parametrize("role", list(Role))
def test_before_close_no_role_sees_a_count_a_choice_or_a_receipt(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, role: Role
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    links = factories.sent_links()
    receipts = [
        client.post(f"/api/v1/vote/{links[code][0]}", json=VOTE).json()["receipt_code"]
        for code in ("G83001", "G83002", "G83003")
    ]
    headers = factories.staff_headers(client, role)
    seen = []
    for path in _gets():
        url = path.replace("{ballot_id}", str(ballot_id)).replace("{token}", links["G83004"][0])
        url = re.sub(r"\{[a-z_]+\}", "1", url)
        response = client.get(url, headers=headers)
        assert response.status_code < 500, (url, response.status_code)
        body = response.text
        seen.append(url)
        assert not any(code in body for code in receipts), url
        assert '"counts"' not in body, url
        assert '"choices"' not in body, url
        assert '"ballots_cast"' not in body, url
    assert any("/evidence" in url for url in seen)
    refused = client.get(f"/api/v1/ballots/{ballot_id}/receipt", headers=headers)
    assert refused.status_code == 409
    assert "recorded in the ballot's audit trail" in refused.json()["detail"]


def test_a_refused_request_for_results_is_written_to_the_trail(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    auditor = factories.staff_headers(client, Role.auditor)
    for what in ("receipt", "evidence"):
        response = client.get(f"/api/v1/ballots/{ballot_id}/{what}", headers=auditor)
        assert response.status_code == 409
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=auditor).json()
    refusals = [e for e in trail["entries"] if e["action"] == "refused_before_result"]
    assert [(e["actor"], e["payload"]["asked_for"]) for e in refusals] == [
        ("staff:auditor-user", "tally receipt"),
        ("staff:auditor-user", "evidence bundle"),
    ]
    assert trail["intact"] is True
