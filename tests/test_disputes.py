"""Disputes (from the secretariat and from a practice's link), what the declaration says about
them, and voiding, which needs the secretariat and a named scrutineer."""

import hashlib
import io
import json
import re
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import cli, clock, counting, disputes, staff
from app import verify as verification
from app.db import session_scope
from app.models import Dispute, Role
from tests import factories

NOT_VOTED = "A vote was recorded for our practice but we did not vote; nobody here used the link."


def _record(
    client: TestClient, headers: dict[str, str], ballot_id: int, **body: Any
) -> dict[str, Any]:
    body.setdefault("text", NOT_VOTED)
    response = client.post(f"/api/v1/ballots/{ballot_id}/disputes", json=body, headers=headers)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def _listed(client: TestClient, ballot_id: int) -> list[dict[str, Any]]:
    auditor = factories.staff_headers(client, Role.auditor)
    response = client.get(f"/api/v1/ballots/{ballot_id}/disputes", headers=auditor)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def _trail(client: TestClient, ballot_id: int) -> list[dict[str, Any]]:
    auditor = factories.staff_headers(client, Role.auditor)
    entries: list[dict[str, Any]] = client.get(
        f"/api/v1/ballots/{ballot_id}/audit", headers=auditor
    ).json()["entries"]
    return entries


def _bundle(client: TestClient, ballot_id: int) -> zipfile.ZipFile:
    auditor = factories.staff_headers(client, Role.auditor)
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor)
    assert response.status_code == 200, response.text
    return zipfile.ZipFile(io.BytesIO(response.content))


def _declaration(client: TestClient, ballot_id: int) -> str:
    html = _bundle(client, ballot_id).read("declaration.html").decode()
    return " ".join(html.split())


def _form_token(page: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


# --- recording ---------------------------------------------------------------------------------


def test_the_secretariat_records_a_dispute_and_every_staff_role_lists_it(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    secretariat = factories.staff_headers(client, Role.secretariat)
    recorded = _record(client, secretariat, ballot_id, ods_code="g83001", claims_not_voted=True)
    assert recorded["ods_code"] == "G83001"
    assert recorded["channel"] == "secretariat"
    assert recorded["recorded_by"] == "secretariat-user"
    assert recorded["raised_at"].startswith("2016-11-25T17:00:01")  # the one clock
    other = _record(client, secretariat, ballot_id, text="The LMC says the papers came late.")
    assert other["ods_code"] is None
    assert other["claims_not_voted"] is False
    for role in (Role.auditor, Role.scrutineer, Role.secretariat):
        headers = factories.staff_headers(client, role)
        listed = client.get(f"/api/v1/ballots/{ballot_id}/disputes", headers=headers).json()
        assert [d["id"] for d in listed] == [recorded["id"], other["id"]]
    # The trail holds the text's hash, never the text, which may name people.
    [entry, _] = [e for e in _trail(client, ballot_id) if e["action"] == "dispute_recorded"]
    assert entry["payload"]["text_sha256"] == hashlib.sha256(NOT_VOTED.encode()).hexdigest()
    assert entry["payload"]["ods_code"] == "G83001"
    assert NOT_VOTED not in json.dumps(_trail(client, ballot_id))


def test_a_practice_raises_a_dispute_from_the_page_its_link_reaches(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    before = client.get(f"/vote/{token}")
    assert f"/vote/{token}/dispute" not in before.text  # not before the practice has voted
    assert "form_token" not in client.get(f"/vote/{token}/dispute").text
    factories.cast_votes(client, ["For"])
    status = client.get(f"/vote/{token}")
    assert f'href="/vote/{token}/dispute"' in status.text
    form = client.get(f"/vote/{token}/dispute")
    assert form.status_code == 200
    assert "Do not say how your practice voted" in form.text
    posted = client.post(
        f"/vote/{token}/dispute",
        data={
            "form_token": _form_token(form.text),
            "text": "We voted, but the confirmation named someone who is not a partner.",
        },
    )
    assert posted.status_code == 200, posted.text
    assert "Dispute recorded" in posted.text
    [found] = _listed(client, ballot_id)
    assert found["ods_code"] == "G83001"
    assert found["channel"] == "voter_link"
    assert found["recorded_by"] is None
    assert found["claims_not_voted"] is False


def test_the_page_takes_the_claim_that_a_vote_was_not_the_practices(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    factories.cast_votes(client, ["For"])
    token = factories.token_for("G83001")
    form = client.get(f"/vote/{token}/dispute")
    data = {"form_token": _form_token(form.text), "text": NOT_VOTED, "claims_not_voted": "yes"}
    assert client.post(f"/vote/{token}/dispute", data=data).status_code == 200
    [found] = _listed(client, ballot_id)
    assert found["claims_not_voted"] is True


def test_the_json_twin_records_a_dispute_once_voting_has_closed(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    token = factories.token_for("G83002")
    url = f"/api/v1/vote/{token}/disputes"
    early = client.post(url, json={"text": "The papers came late."})
    assert early.status_code == 409
    assert "once your practice has voted or voting has closed" in early.json()["detail"]
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    raised = client.post(url, json={"text": "The papers came late."})
    assert raised.status_code == 201, raised.text
    assert "recorded" in raised.json()["detail"]
    # A practice with no vote recorded has no vote to call not its own.
    refused = client.post(url, json={"text": NOT_VOTED, "claims_not_voted": True})
    assert refused.status_code == 422
    [found] = _listed(client, ballot_id)
    assert (found["ods_code"], found["channel"]) == ("G83002", "voter_link")


# --- bad input ---------------------------------------------------------------------------------


def test_bad_disputes_are_refused_and_nothing_is_recorded(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    url = f"/api/v1/ballots/{ballot_id}/disputes"
    trail = len(_trail(client, ballot_id))
    bad: list[tuple[Any, int]] = [
        ({"text": ""}, 422),
        ({"text": "   "}, 422),
        ({"text": "x" * 2001}, 422),
        ({"text": "bad\x00byte"}, 422),
        ({"text": "ok", "ods_code": "Z99999"}, 422),  # not on the roll
        ({"text": "ok", "ods_code": "not a code"}, 422),
        ({"text": "ok", "claims_not_voted": True}, 422),  # names no practice
        ({"text": "ok", "claims_not_voted": "perhaps"}, 422),
        ({"text": "ok", "extra": 1}, 422),
        ([], 422),
    ]
    for body, status in bad:
        response = client.post(url, json=body, headers=secretariat)
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
    assert client.post(url, content=b"{", headers=secretariat).status_code in (400, 422)
    assert (
        client.post(
            "/api/v1/ballots/999/disputes", json={"text": "ok"}, headers=secretariat
        ).status_code
        == 404
    )
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    assert client.post(url, json={"text": "ok"}, headers=scrutineer).status_code == 403
    assert client.post(url, json={"text": "ok"}).status_code == 401
    draft = factories.draft_ballot(client, secretariat, reference="DRAFT-2016")
    on_draft = client.post(
        f"/api/v1/ballots/{draft}/disputes", json={"text": "ok"}, headers=secretariat
    )
    assert on_draft.status_code == 409
    assert _listed(client, ballot_id) == []
    assert len(_trail(client, ballot_id)) == trail


def test_bad_disputes_from_a_link_are_refused_and_nothing_is_recorded(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    factories.cast_votes(client, ["For"])
    token = factories.token_for("G83001")
    api = f"/api/v1/vote/{token}/disputes"
    assert client.post(api, json={"text": ""}).status_code == 422
    assert client.post(api, json={"text": "x" * 2001}).status_code == 422
    assert (
        client.post(api, content=b"text=hi", headers={"Content-Type": "text/plain"}).status_code
        == 415
    )
    assert (
        client.post("/api/v1/vote/not-a-real-token/disputes", json={"text": "hi"}).status_code
        == 404
    )
    form = client.get(f"/vote/{token}/dispute")
    empty = client.post(
        f"/vote/{token}/dispute", data={"form_token": _form_token(form.text), "text": " "}
    )
    assert empty.status_code == 422
    assert "nhsuk-error-summary" in empty.text
    long = client.post(
        f"/vote/{token}/dispute",
        data={"form_token": _form_token(form.text), "text": "y" * 2001},
    )
    assert long.status_code == 422
    # No form token, or one made for another form: refused, as every voter form is.
    assert client.post(f"/vote/{token}/dispute", data={"text": "hi"}).status_code == 403
    assert _listed(client, ballot_id) == []


# --- nothing joins a dispute to a ballot ---------------------------------------------------------


def test_nothing_joins_a_dispute_to_a_ballot_box_entry(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    token = factories.token_for("G83001")
    vote = {"choices": {"delegated": "Against", "constitution": "For"}}
    receipt = client.post(f"/api/v1/vote/{token}", json=vote).json()["receipt_code"]
    raised = client.post(f"/api/v1/vote/{token}/disputes", json={"text": NOT_VOTED})
    assert raised.status_code == 201
    assert receipt not in raised.text
    assert "Against" not in raised.text
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    factories.close_and_publish(client, factories.staff_headers(client), ballot_id)

    inspector = inspect(db)
    columns = {c["name"] for c in inspector.get_columns("dispute")}
    assert columns == {
        "id", "ballot_id", "ods_code", "raised_at", "text", "channel", "recorded_by",
        "claims_not_voted",
    }  # fmt: skip
    assert {fk["referred_table"] for fk in inspector.get_foreign_keys("dispute")} == {"ballot"}
    with session_scope() as session:
        [row] = session.scalars(select(Dispute)).all()
        stored = json.dumps({c: str(getattr(row, c)) for c in columns})
    entries = [e for e in _trail(client, ballot_id) if e["action"] == "dispute_recorded"]
    carried = _bundle(client, ballot_id).read("disputes.json").decode()
    for where in (stored, json.dumps(entries), carried):
        assert receipt not in where
        assert "Against" not in where


# --- the declaration ---------------------------------------------------------------------------


def test_the_declaration_lists_disputes_and_a_wide_margin_could_not_change(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    # Q1: 5 For, 2 Against, 1 Abstain; Q2: 8 For. One disputed vote cannot turn either.
    ballot_id = factories.published_ballot(client, secretariat)
    secretariat = factories.staff_headers(client, Role.secretariat)
    _record(client, secretariat, ballot_id, ods_code="G83001", claims_not_voted=True)
    _record(client, secretariat, ballot_id, text="The LMC says the papers came late.")
    text = _declaration(client, ballot_id)
    assert "<h2>Disputes</h2>" in text
    assert "25 November 2016, Practice 1 (G83001): “A vote was recorded for our practice" in text
    assert "Not from one practice: “The LMC says the papers came late.”" in text
    assert "1 dispute says a vote was recorded for a practice that did not cast it" in text
    assert "could not change any outcome" in text
    assert "could change the outcome" not in text
    assert "The other dispute does not affect the count automatically" in text
    pdf = _bundle(client, ballot_id).read("declaration.pdf")
    assert pdf.startswith(b"%PDF")
    # The verifier still passes, and checks the disputes against the trail.
    path = tmp_path / "bundle.zip"
    auditor = factories.staff_headers(client, Role.auditor)
    path.write_bytes(client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor).content)
    key = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    checks = verification.verify(path, key=key)
    assert [c for c in checks if not c.ok] == []
    assert {c.name: c.detail for c in checks}["disputes"].startswith("2 recorded")


def test_a_narrow_margin_could_change_the_outcome(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    # Q1: For 2, Against 1; without one For it is a tie, which is never carried. Q2: 3 For.
    ballot_id = factories.published_ballot(client, secretariat, choices=("For", "For", "Against"))
    secretariat = factories.staff_headers(client, Role.secretariat)
    text = _declaration(client, ballot_id)
    assert "No disputes were recorded." in text
    # A dispute that does not claim a vote was recorded falsely weighs nothing.
    _record(client, secretariat, ballot_id, ods_code="G83002", text="The link came late.")
    assert "none affects the count automatically" in _declaration(client, ballot_id)
    # Nor does the claim from a practice recorded as not voted (it is listed, not weighed).
    _record(client, secretariat, ballot_id, ods_code="G83009", claims_not_voted=True)
    assert "could change" not in _declaration(client, ballot_id)
    _record(client, secretariat, ballot_id, ods_code="G83001", claims_not_voted=True)
    text = _declaration(client, ballot_id)
    assert "could change the outcome of Q1." in text
    assert "Q2" not in text


def test_could_change_lowers_the_quorum_and_weighs_each_side() -> None:
    rules = counting.Rules.model_validate(
        {"constitution_ref": "C 1", "quorum": {"fraction": "1/2"}}
    )
    electors = [counting.Elector("North", 1) for _ in range(8)]

    def papers(*answers: str) -> list[counting.Paper]:
        return [counting.Paper("North", 1, {"q": a}) for a in answers]

    def changed(box: list[counting.Paper], disputed: int) -> list[str]:
        return disputes.could_change(
            rules, questions=[("q", ["For", "Against", "Abstain"], None)], electors=electors,
            papers=box, removed=electors[:disputed],
        )  # fmt: skip

    wide = papers("For", "For", "For", "For", "For", "Against")
    assert changed(wide, 1) == []  # 5 of 8 still meet the quorum; For still leads
    assert changed(wide, 2) == []  # 4 of 8 still meet it, and For 3 to 1 still carries
    assert changed(wide, 3) == ["q"]  # 3 of 8 do not
    exact = papers("For", "For", "For", "Against")  # 4 of 8: the quorum just met
    assert changed(exact, 1) == ["q"]
    # Not carried, and removing Against could carry it: the other side is weighed too.
    losing = papers("For", "Against", "Against", "Abstain", "Abstain", "Abstain")
    assert changed(losing, 1) == []  # For 1 Against 1: still a tie
    assert changed(losing, 2) == ["q"]  # without both Against, For 1 to 0 carries on 4 of 8
    assert changed(papers("For", "Against", "Abstain", "Abstain", "Abstain", "Abstain"), 1) == ["q"]


# --- voiding needs two parties ---------------------------------------------------------------


def _void_url(ballot_id: int, step: str = "") -> str:
    return f"/api/v1/ballots/{ballot_id}/void" + (f"/{step}" if step else "")


def _status(client: TestClient, ballot_id: int) -> str:
    auditor = factories.staff_headers(client, Role.auditor)
    found: str = client.get(f"/api/v1/ballots/{ballot_id}", headers=auditor).json()["status"]
    return found


def test_voiding_needs_the_secretariat_and_a_named_scrutineer(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    secretariat = factories.staff_headers(client, Role.secretariat)
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    reason = {"reason": "The roll left out two member practices."}
    # A scrutineer cannot void alone, nor propose.
    assert client.post(_void_url(ballot_id), json=reason, headers=scrutineer).status_code == 403
    proposed = client.post(_void_url(ballot_id), json=reason, headers=secretariat)
    assert proposed.status_code == 201, proposed.text
    proposal = proposed.json()["id"]
    assert _status(client, ballot_id) == "published"  # a proposal alone changes nothing
    again = client.post(_void_url(ballot_id), json={"reason": "Other."}, headers=secretariat)
    assert again.status_code == 409
    # The secretariat cannot confirm its own proposal.
    body = {"proposal_id": proposal}
    mine = client.post(_void_url(ballot_id, "confirm"), json=body, headers=secretariat)
    assert mine.status_code == 403
    # Nor can a scrutineer this ballot does not name.
    with session_scope() as session:
        staff.create(
            session, username="other-lmc", password=factories.PASSWORD, role=Role.scrutineer
        )
    form = {"username": "other-lmc", "password": factories.PASSWORD}
    other = {
        "Authorization": "Bearer "
        + client.post("/api/v1/auth/token", data=form).json()["access_token"]
    }
    assert client.post(_void_url(ballot_id, "confirm"), json=body, headers=other).status_code == 403
    wrong = client.post(
        _void_url(ballot_id, "confirm"), json={"proposal_id": proposal + 1}, headers=scrutineer
    )
    assert wrong.status_code == 409
    assert _status(client, ballot_id) == "published"
    confirmed = client.post(_void_url(ballot_id, "confirm"), json=body, headers=scrutineer)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "voided"
    assert confirmed.json()["void_reason"] == reason["reason"]
    read = client.get(_void_url(ballot_id), headers=secretariat).json()
    assert (read["proposed_by"], read["confirmed_by"]) == ("secretariat-user", "scrutineer-user")

    trail = _trail(client, ballot_id)
    steps = [e for e in trail if e["action"] in ("void_proposed", "voided")]
    assert [(e["action"], e["actor"]) for e in steps] == [
        ("void_proposed", "staff:secretariat-user"),
        ("voided", "staff:scrutineer-user"),
    ]
    assert steps[1]["payload"]["proposed_by"] == "secretariat-user"
    # A new declaration says it was voided, by whom and why; the bundle still verifies.
    text = _declaration(client, ballot_id)
    assert "This ballot was declared void at 5:00pm on Friday 25 November 2016" in text
    assert "The roll left out two member practices." in text
    assert "secretariat (secretariat-user) proposed it" in text
    assert "scrutineer (scrutineer-user) confirmed it" in text
    assert "have seen and agreed to all proposed arrangements" not in text
    path = tmp_path / "voided.zip"
    auditor = factories.staff_headers(client, Role.auditor)
    path.write_bytes(client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor).content)
    key = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    assert [c for c in verification.verify(path, key=key) if not c.ok] == []
    # Void is final: no further proposal, and nothing is edited.
    assert client.post(_void_url(ballot_id), json=reason, headers=secretariat).status_code == 409


def test_either_party_can_withdraw_a_pending_proposal(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    first = client.post(_void_url(ballot_id), json={"reason": "Wrong papers."}, headers=secretariat)
    body = {"proposal_id": first.json()["id"]}
    withdrawn = client.post(_void_url(ballot_id, "withdraw"), json=body, headers=scrutineer)
    assert withdrawn.status_code == 200
    assert withdrawn.json()["withdrawn_by"] == "scrutineer-user"
    late = client.post(_void_url(ballot_id, "confirm"), json=body, headers=scrutineer)
    assert late.status_code == 409
    second = client.post(_void_url(ballot_id), json={"reason": "Wrong roll."}, headers=secretariat)
    assert second.status_code == 201
    body = {"proposal_id": second.json()["id"]}
    auditor = factories.staff_headers(client, Role.auditor)
    assert (
        client.post(_void_url(ballot_id, "withdraw"), json=body, headers=auditor).status_code == 403
    )
    mine = client.post(_void_url(ballot_id, "withdraw"), json=body, headers=secretariat)
    assert mine.status_code == 200
    assert _status(client, ballot_id) == "open"
    actions = [e["action"] for e in _trail(client, ballot_id)]
    assert actions.count("void_proposed") == 2
    assert actions.count("void_withdrawn") == 2
    assert "voided" not in actions
    bad = client.post(_void_url(ballot_id), json={"reason": ""}, headers=secretariat)
    assert bad.status_code == 422


def test_the_cli_lists_disputes_and_shows_a_pending_void_but_cannot_void(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    _record(client, secretariat, ballot_id, ods_code="G83004", text="The link came late.")
    reason = {"reason": "Wrong papers were sent."}
    assert client.post(_void_url(ballot_id), json=reason, headers=secretariat).status_code == 201
    listed = CliRunner().invoke(cli.app, ["ballot", "disputes", str(ballot_id)])
    assert listed.exit_code == 0, listed.output
    assert "G83004" in listed.output
    assert "secretariat" in listed.output  # how it came in; the console wraps the text
    status = CliRunner().invoke(cli.app, ["ballot", "status", str(ballot_id)])
    assert status.exit_code == 0, status.output
    assert "disputes: 1" in status.output
    assert "void proposed by secretariat-user" in status.output
    assert CliRunner().invoke(cli.app, ["ballot", "void", str(ballot_id)]).exit_code != 0
    assert _status(client, ballot_id) == "open"
