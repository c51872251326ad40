"""Ballot definitions and the lifecycle, through the staff API."""

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import clock, definitions, errors
from app.models import Role
from tests import factories

EXAMPLE = Path(__file__).resolve().parent.parent / "ballots" / "delegated-commissioning-2016.toml"
VOTE = {"choices": {"delegated": "For", "constitution": "For"}}


def test_example_ballot_file_loads_with_its_documents() -> None:
    definition = definitions.read_ballot_file(EXAMPLE)
    assert definition.organisation.ods_code == "99X"
    assert [q.id for q in definition.questions] == ["delegated", "constitution"]
    assert definition.questions[0].options == ["For", "Against", "Abstain"]
    assert definition.documents[0].content_base64
    assert definition.opens_at.tzinfo is not None
    assert [c.body for c in definition.consultations][:1] == ["LMC"]


def test_bad_ballot_file_lists_every_problem_with_its_location(tmp_path: Path) -> None:
    bad = (
        EXAMPLE.read_text()
        .replace(
            'text = "Do you approve', 'options = ["For", "Against", "For"]\ntext = "Do you approve'
        )
        .replace('ods_code = "99X"', 'ods_code = "not a code"')
    )
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    (tmp_path / "delegated-commissioning-proposal.md").write_text("proposal")
    with pytest.raises(errors.InvalidInput) as raised:
        definitions.read_ballot_file(path)
    problems = {p["loc"]: p["problem"] for p in raised.value.problems or []}
    assert problems["questions[1].options"] == 'duplicate option "For"'
    assert "organisation.ods_code" in problems


def test_definition_refuses_close_before_open(
    client: TestClient, secretariat: dict[str, str]
) -> None:
    body = factories.definition(closes_at=factories.OPENS.isoformat())
    response = client.post("/api/v1/ballots", json=body, headers=secretariat)
    assert response.status_code == 422
    assert "closes_at must be after opens_at" in response.text
    assert client.get("/api/v1/ballots", headers=secretariat).json() == []


def test_duplicate_reference_is_a_conflict(client: TestClient, secretariat: dict[str, str]) -> None:
    assert (
        client.post("/api/v1/ballots", json=factories.definition(), headers=secretariat).status_code
        == 201
    )
    again = client.post("/api/v1/ballots", json=factories.definition(), headers=secretariat)
    assert again.status_code == 409
    assert "already has the reference" in again.json()["detail"]


def test_documents_are_pinned_by_sha256(client: TestClient, secretariat: dict[str, str]) -> None:
    import base64
    import hashlib

    content = b"# The proposal\n"
    doc = {
        "title": "Proposal",
        "file": "proposal.md",
        "content_base64": base64.b64encode(content).decode(),
    }
    response = client.post(
        "/api/v1/ballots", json=factories.definition(documents=[doc]), headers=secretariat
    )
    assert response.status_code == 201
    assert response.json()["documents"] == [
        {"title": "Proposal", "file": "proposal.md", "sha256": hashlib.sha256(content).hexdigest()}
    ]
    wrong = {**doc, "sha256": "0" * 64}
    refused = client.post(
        "/api/v1/ballots",
        json=factories.definition(reference="OTHER-1", documents=[wrong]),
        headers=secretariat,
    )
    assert refused.status_code == 422
    assert "documents[0].sha256" in refused.text


def test_only_a_draft_can_be_edited(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    edited = factories.definition(title="Delegated commissioning (revised)")
    assert (
        client.put(f"/api/v1/ballots/{ballot_id}", json=edited, headers=secretariat).status_code
        == 200
    )
    factories.approve(client, ballot_id)
    client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    refused = client.put(
        f"/api/v1/ballots/{ballot_id}", json=factories.definition(), headers=secretariat
    )
    assert refused.status_code == 409
    assert "only a draft ballot can edit it" in refused.json()["detail"]
    roll = client.put(
        f"/api/v1/ballots/{ballot_id}/roll", json=factories.roll(3), headers=secretariat
    )
    assert roll.status_code == 409
    assert (
        client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat)
        .json()["title"]
        .endswith("(revised)")
    )


def test_open_needs_a_roll(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = client.post(
        "/api/v1/ballots", json=factories.definition(), headers=secretariat
    ).json()["id"]
    response = client.post(f"/api/v1/ballots/{ballot_id}/open", headers=secretariat)
    assert response.status_code == 409
    assert "roll is empty" in response.json()["detail"]


def test_small_locality_groups_must_be_acknowledged(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, practices=7)  # one locality has 2
    factories.approve(client, ballot_id)
    problems = client.get(f"/api/v1/ballots/{ballot_id}/problems", headers=secretariat).json()
    assert [p["code"] for p in problems] == ["small_groups"]
    assert problems[0]["blocking"] is False
    refused = client.post(f"/api/v1/ballots/{ballot_id}/open", headers=secretariat)
    assert refused.status_code == 409
    assert "Acknowledge" in refused.json()["detail"]
    assert factories.sent_links() == {}
    opened = client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert opened.status_code == 200
    assert opened.json()["status"] == "open"
    assert opened.json()["frozen_hash"]


def test_open_issues_one_link_per_address(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    factories.open_ballot(client, secretariat)
    links = factories.sent_links()
    assert sorted(links) == [f"G{83001 + i}" for i in range(9)]
    assert all(len(tokens) == 1 and len(tokens[0]) >= 32 for tokens in links.values())


def test_full_lifecycle_counts_and_publishes(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    choices = ["For"] * 5 + ["Against"] * 2 + ["Abstain"]
    for i, option in enumerate(choices):
        token = factories.token_for(f"G{83001 + i}")
        vote = {"choices": {"delegated": option, "constitution": "For"}}
        assert client.post(f"/api/v1/vote/{token}", json=vote).status_code == 200
    assert client.get(f"/api/v1/ballots/{ballot_id}/results").status_code == 409
    early = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    assert early.status_code == 409
    assert "1 of 9 practices have not voted" in early.json()["detail"]
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    assert (
        client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat).json()["status"]
        == "closed"
    )
    sealed = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert sealed.status_code == 409
    assert "still sealed" in sealed.json()["detail"]
    factories.open_box(client, secretariat, ballot_id)
    factories.countersign(client, ballot_id)
    published = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert published.status_code == 200
    result = client.get(f"/api/v1/ballots/{ballot_id}/results").json()
    assert result["eligible"] == 9
    assert result["ballots_cast"] == 8
    delegated = result["questions"][0]
    assert delegated["question_id"] == "delegated"
    assert delegated["counts"]["For"]["practices"] == 5
    assert delegated["counts"]["Against"]["practices"] == 2
    assert delegated["outcome"] == "carried"
    box = client.get(f"/api/v1/ballots/{ballot_id}/ballot-box").json()
    assert len(box["receipts"]) == 8
    assert box["receipts"] == sorted(box["receipts"])
    assert "receipt_code" not in str(box["ballots"])
    assert (
        client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat).status_code == 409
    )


def test_closing_early_is_allowed_once_everyone_has_voted(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    for code, tokens in factories.sent_links().items():
        assert client.post(f"/api/v1/vote/{tokens[0]}", json=VOTE).status_code == 200, code
    closed = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    assert closed.status_code == 200
    assert (
        client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=VOTE).status_code == 409
    )


def test_close_can_be_extended_once_with_a_reason(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    later = (factories.CLOSES + timedelta(days=3)).isoformat()
    no_reason = client.post(
        f"/api/v1/ballots/{ballot_id}/extend",
        json={"closes_at": later, "reason": " "},
        headers=secretariat,
    )
    assert no_reason.status_code == 422
    extended = client.post(
        f"/api/v1/ballots/{ballot_id}/extend",
        json={"closes_at": later, "reason": "Invitations to one locality were delayed."},
        headers=secretariat,
    )
    assert extended.status_code == 200
    assert extended.json()["close_extended_reason"] == "Invitations to one locality were delayed."
    again = client.post(
        f"/api/v1/ballots/{ballot_id}/extend",
        json={"closes_at": (factories.CLOSES + timedelta(days=9)).isoformat(), "reason": "again"},
        headers=secretariat,
    )
    assert again.status_code == 409
    clock.freeze(factories.CLOSES + timedelta(hours=1))
    assert (
        client.post(f"/api/v1/vote/{factories.token_for('G83001')}", json=VOTE).status_code == 200
    )


def test_wrong_transitions_are_409_with_a_reason(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    for action in ("close", "publish"):
        response = client.post(f"/api/v1/ballots/{ballot_id}/{action}", headers=secretariat)
        assert response.status_code == 409
        assert "is draft" in response.json()["detail"]


def test_published_result_can_be_voided_never_edited(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    clock.freeze(factories.CLOSES)
    client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    factories.open_box(client, secretariat, ballot_id)
    client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert (
        client.put(
            f"/api/v1/ballots/{ballot_id}", json=factories.definition(), headers=secretariat
        ).status_code
        == 409
    )
    proposed = client.post(
        f"/api/v1/ballots/{ballot_id}/void",
        json={"reason": "Roll omitted two practices."},
        headers=secretariat,
    )
    assert proposed.status_code == 201
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    voided = client.post(
        f"/api/v1/ballots/{ballot_id}/void/confirm",
        json={"proposal_id": proposed.json()["id"]},
        headers=scrutineer,
    )
    assert voided.status_code == 200
    assert voided.json()["status"] == "voided"
    assert voided.json()["void_reason"] == "Roll omitted two practices."
    assert (
        client.post(
            f"/api/v1/ballots/{ballot_id}/void", json={"reason": "again"}, headers=secretariat
        ).status_code
        == 409
    )


def test_unknown_ballot_is_404(client: TestClient, secretariat: dict[str, str]) -> None:
    response = client.get("/api/v1/ballots/999", headers=secretariat)
    assert response.status_code == 404
    assert response.json() == {"error": "NotFound", "detail": "There is no ballot 999."}


def test_per_patients_weighting_is_frozen_into_the_roll_at_open(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    rules = {
        "preset": "simple_majority",
        "constitution_ref": "Constitution 6.6.2",
        "weighting": "per_patients",
        "patients_per_vote": 2000,
        "list_size_source": "NHS Digital, Patients Registered at a GP Practice",
        "list_size_date": "2016-10-01",
    }
    ballot_id = factories.draft_ballot(client, secretariat, rules=rules)
    before = client.get(f"/api/v1/ballots/{ballot_id}/roll", headers=secretariat).json()
    assert {p["votes"] for p in before} == {None}
    factories.approve(client, ballot_id)
    client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    after = client.get(f"/api/v1/ballots/{ballot_id}/roll", headers=secretariat).json()
    assert {p["list_size"] // 2000 for p in after} == {p["votes"] for p in after} == {2}
    read = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat).json()
    assert read["rules"]["list_size_source"].startswith("NHS Digital")
    assert read["rules"]["list_size_date"] == "2016-10-01"


def test_per_patients_without_its_source_is_refused(
    client: TestClient, secretariat: dict[str, str]
) -> None:
    rules = {"constitution_ref": "6.6.2", "weighting": "per_patients", "patients_per_vote": 2000}
    response = client.post(
        "/api/v1/ballots", json=factories.definition(rules=rules), headers=secretariat
    )
    assert response.status_code == 422
    assert "list_size_source" in response.json()["detail"]


def test_times_are_shown_in_london() -> None:
    from datetime import UTC, datetime

    assert (
        clock.london(datetime(2016, 11, 25, 17, 0, tzinfo=UTC))
        == "5:00pm on Friday 25 November 2016"
    )
    assert clock.london(datetime(2016, 7, 1, 8, 30, tzinfo=UTC)) == "9:30am on Friday 1 July 2016"
