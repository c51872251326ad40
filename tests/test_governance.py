"""The independent scrutineer: approval of exactly what is frozen, countersignature of the count."""

import base64
import hashlib
import io
import mailbox
import re
import zipfile
from datetime import timedelta
from email.message import Message

from fastapi.testclient import TestClient

from app import clock, config, mail, outbox, staff
from app.db import session_scope
from app.models import Role
from tests import factories


def _problems(client: TestClient, headers: dict[str, str], ballot_id: int) -> dict[str, str]:
    response = client.get(f"/api/v1/ballots/{ballot_id}/problems", headers=headers)
    assert response.status_code == 200
    return {p["code"]: p["message"] for p in response.json() if p["blocking"]}


def _status(client: TestClient, headers: dict[str, str], ballot_id: int) -> str:
    status: str = client.get(f"/api/v1/ballots/{ballot_id}", headers=headers).json()["status"]
    return status


def _open(client: TestClient, headers: dict[str, str], ballot_id: int) -> int:
    body = {"acknowledge_warnings": True}
    response = client.post(f"/api/v1/ballots/{ballot_id}/open", json=body, headers=headers)
    return response.status_code


def _trail(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[str]:
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=headers).json()
    return [e["action"] for e in trail["entries"]]


def test_a_ballot_cannot_open_without_the_scrutineers_approval(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    assert "not approved" in _problems(client, secretariat, ballot_id)["not_approved"]
    assert _open(client, secretariat, ballot_id) == 409
    assert _status(client, secretariat, ballot_id) == "draft"
    factories.approve(client, ballot_id)
    assert "not_approved" not in _problems(client, secretariat, ballot_id)
    assert _open(client, secretariat, ballot_id) == 200


def test_a_ballot_naming_no_scrutineer_cannot_open(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, governance={})
    assert "No scrutineer is named" in _problems(client, secretariat, ballot_id)["not_approved"]
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    frozen = client.get(f"/api/v1/ballots/{ballot_id}/approval", headers=scrutineer).json()
    approval = {"frozen_hash": frozen["frozen_hash"]}
    url = f"/api/v1/ballots/{ballot_id}/approval"
    assert client.post(url, json=approval, headers=scrutineer).status_code == 403


def test_the_approval_shows_what_will_be_frozen_and_the_key_that_will_sign(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    frozen = client.get(f"/api/v1/ballots/{ballot_id}/approval", headers=scrutineer).json()
    assert frozen["practices"] == 9
    assert [q["id"] for q in frozen["questions"]] == ["delegated", "constitution"]
    assert frozen["constitution_ref"] == "Constitution 6.6.2"
    key = client.get("/api/v1/signing-key").json()["current"]
    assert frozen["signing_key"]["fingerprint"] == key["fingerprint"]
    assert frozen["approval_stands"] is False
    factories.approve(client, ballot_id)
    assert _open(client, secretariat, ballot_id) == 200
    ballot = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat).json()
    assert ballot["frozen_hash"] == frozen["frozen_hash"]  # what was approved is what froze
    after = client.get(f"/api/v1/ballots/{ballot_id}/approval", headers=scrutineer).json()
    assert after["approval_stands"] is True
    assert after["approved_by"] == factories.SCRUTINEER


def test_replacing_the_roll_after_approval_withdraws_it(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    factories.approve(client, ballot_id)
    changed = factories.roll(9)
    changed[3]["list_size"] += 1
    url = f"/api/v1/ballots/{ballot_id}/roll"
    assert client.put(url, json=changed, headers=secretariat).status_code == 200
    assert "approval_withdrawn" in _trail(client, secretariat, ballot_id)
    assert "approve it again" not in _problems(client, secretariat, ballot_id)["not_approved"]
    assert _open(client, secretariat, ballot_id) == 409
    factories.approve(client, ballot_id)
    assert _open(client, secretariat, ballot_id) == 200


def test_editing_the_ballot_after_approval_withdraws_it(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    factories.approve(client, ballot_id)
    edited = factories.definition(title="Delegated commissioning (revised)")
    url = f"/api/v1/ballots/{ballot_id}"
    assert client.put(url, json=edited, headers=secretariat).status_code == 200
    assert _trail(client, secretariat, ballot_id)[-1] == "approval_withdrawn"
    assert _open(client, secretariat, ballot_id) == 409


def test_an_approval_of_what_the_scrutineer_did_not_see_is_refused(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    url = f"/api/v1/ballots/{ballot_id}/approval"
    seen = client.get(url, headers=scrutineer).json()["frozen_hash"]
    # The secretariat changes the roll after the scrutineer read it, before they approve.
    changed = factories.roll(8)
    assert client.put(f"{url[:-9]}/roll", json=changed, headers=secretariat).status_code == 200
    refused = client.post(url, json={"frozen_hash": seen}, headers=scrutineer)
    assert refused.status_code == 409
    assert "has changed since you reviewed it" in refused.json()["detail"]
    assert client.get(url, headers=scrutineer).json()["approved_by"] is None


def test_only_a_scrutineer_the_ballot_names_may_approve(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    with session_scope() as session:
        staff.create(
            session, username="other-lmc", password=factories.PASSWORD, role=Role.scrutineer
        )
    other = {"Authorization": "Bearer " + _sign_in(client, "other-lmc")}
    url = f"/api/v1/ballots/{ballot_id}/approval"
    frozen = {"frozen_hash": client.get(url, headers=secretariat).json()["frozen_hash"]}
    assert client.post(url, json=frozen, headers=other).status_code == 403
    assert client.post(url, json=frozen, headers=secretariat).status_code == 403
    assert client.get(url, headers=secretariat).json()["approved_by"] is None


def _sign_in(client: TestClient, username: str) -> str:
    form = {"username": username, "password": factories.PASSWORD}
    response = client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def test_a_scrutineer_sees_turnout_but_cannot_open_close_edit_or_count_early(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    draft = factories.draft_ballot(client, secretariat, reference="DRAFT-2016")
    factories.approve(client, draft)
    assert _open(client, scrutineer, draft) == 403
    edited = factories.definition(reference="DRAFT-2016", title="Changed")
    assert (
        client.put(f"/api/v1/ballots/{draft}", json=edited, headers=scrutineer).status_code == 403
    )
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["For", "Against"])
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=scrutineer)
    assert turnout.status_code == 200
    early = client.get(f"/api/v1/ballots/{ballot_id}/countersignature", headers=scrutineer)
    assert early.status_code == 409
    assert "Against" not in early.text
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    for step in ("close", "publish", "reminders"):
        response = client.post(f"/api/v1/ballots/{ballot_id}/{step}", headers=scrutineer)
        assert response.status_code == 403, step


def test_publishing_needs_the_scrutineers_countersignature_of_the_count(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["For", "For", "Against"])
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    secretariat = factories.staff_headers(client, Role.secretariat)
    assert client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat).is_success
    factories.open_box(client, secretariat, ballot_id)
    refused = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert refused.status_code == 409
    assert "not countersigned" in refused.json()["detail"]
    assert _status(client, secretariat, ballot_id) == "closed"

    scrutineer = factories.staff_headers(client, Role.scrutineer)
    url = f"/api/v1/ballots/{ballot_id}/countersignature"
    count = client.get(url, headers=scrutineer).json()
    assert count["ballots_cast"] == count["practices_voted"] == 3
    [delegated, _] = count["result"]["questions"]
    assert delegated["counts"]["For"]["practices"] == 2
    wrong = client.post(url, json={"count_hash": "0" * 64}, headers=scrutineer)
    assert wrong.status_code == 409
    assert client.post(url, json={"count_hash": count["count_hash"]}, headers=scrutineer).is_success
    assert client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat).is_success
    actions = _trail(client, secretariat, ballot_id)
    assert actions[-2:] == ["count_countersigned", "published"]


def test_the_declaration_says_who_approved_and_who_countersigned(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    auditor = factories.staff_headers(client, Role.auditor)
    bundle = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor)
    assert bundle.status_code == 200
    html = zipfile.ZipFile(io.BytesIO(bundle.content)).read("declaration.html").decode()
    approved = (
        "Approved before opening by the scrutineer, Sam Okafor, LMC (account scrutineer-user)"
    )
    assert approved in html
    assert "Count verified and countersigned by the scrutineer" in html


# --- notice of ballot ------------------------------------------------------------------------

PAPER = b"%PDF-1.4\n% The proposal.\n"
DOCUMENT = {
    "title": "The proposal",
    "file": "proposal.pdf",
    "content_base64": base64.b64encode(PAPER).decode(),
}


def _notices() -> list[Message]:
    outbox.deliver_pending()
    maildir = config.get_settings().maildir
    assert maildir is not None
    return [
        m
        for m in mailbox.Maildir(maildir, create=False)
        if str(m["Subject"]).startswith("Notice of ballot")
    ]


def test_the_notice_tells_every_address_what_when_who_and_from_whom_but_carries_no_link(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, documents=[DOCUMENT])
    rows = factories.roll(9, emails_per_practice=2)
    client.put(f"/api/v1/ballots/{ballot_id}/roll", json=rows, headers=secretariat)
    sent = client.post(f"/api/v1/ballots/{ballot_id}/notice", headers=secretariat)
    assert sent.status_code == 200, sent.text
    assert sent.json()["practices"] == 9
    notices = _notices()
    assert sorted(str(m["To"]) for m in notices) == sorted(a for r in rows for a in r["emails"])
    text = mail.plain_text(next(m for m in notices if "g83001" in str(m["To"])))
    assert "Apply for delegated commissioning from 1 April 2017?" in text
    assert hashlib.sha256(PAPER).hexdigest() in text
    assert "9:00am on Monday 7 November 2016" in text
    assert "Sam Okafor, LMC" in text
    assert config.get_settings().mail_from in text
    assert "contact0.g83001@practice.example, contact1.g83001@practice.example" in text
    assert "/vote/" not in text
    assert "notice_queued" in _trail(client, secretariat, ballot_id)
    assert factories.sent_links() == {}  # nothing that can vote


def test_a_notice_period_blocks_opening_until_it_has_passed(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    sent_at = factories.OPENS - timedelta(days=10)
    clock.freeze(sent_at)
    secretariat = factories.staff_headers(client, Role.secretariat)
    governance = {"scrutineer_accounts": [factories.SCRUTINEER], "notice_days": 14}
    ballot_id = factories.draft_ballot(client, secretariat, governance=governance)
    factories.approve(client, ballot_id)
    assert "send the notice first" in _problems(client, secretariat, ballot_id)["notice_period"]
    assert client.post(f"/api/v1/ballots/{ballot_id}/notice", headers=secretariat).is_success
    clock.freeze(sent_at + timedelta(days=13, hours=23))
    secretariat = factories.staff_headers(client, Role.secretariat)
    waiting = _problems(client, secretariat, ballot_id)["notice_period"]
    assert "the ballot can open from 9:00am on Friday 11 November 2016" in waiting
    assert _open(client, secretariat, ballot_id) == 409
    clock.freeze(sent_at + timedelta(days=14))
    secretariat = factories.staff_headers(client, Role.secretariat)
    assert _open(client, secretariat, ballot_id) == 200


def test_a_notice_goes_only_before_opening(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    refused = client.post(f"/api/v1/ballots/{ballot_id}/notice", headers=secretariat)
    assert refused.status_code == 409
    assert "the notice goes before it opens" in refused.json()["detail"]


# --- the papers-only link and the invitation -------------------------------------------------

PAPERS_LINK = re.compile(r"http://testserver(/papers/[A-Za-z0-9_.-]+)")


def test_the_invitation_carries_a_papers_link_that_cannot_vote(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat, documents=[DOCUMENT])
    factories.sent_links()
    maildir = config.get_settings().maildir
    assert maildir is not None
    invitation = next(m for m in mailbox.Maildir(maildir, create=False) if "g83001" in str(m["To"]))
    text = mail.plain_text(invitation)
    found = PAPERS_LINK.search(text)
    assert found is not None
    papers = found.group(1)
    key = client.get("/api/v1/signing-key").json()["current"]["fingerprint"]
    assert key in " ".join(text.split())
    assert hashlib.sha256(PAPER).hexdigest() in text
    assert "This practice's voting links went to: contact0.g83001@practice.example." in text

    page = client.get(papers)
    assert page.status_code == 200
    assert "Apply for delegated commissioning from 1 April 2017?" in page.text
    assert "<form" not in page.text
    assert "/vote/" not in page.text
    assert client.get(f"{papers}/documents/0").content == PAPER
    signed = papers.removeprefix("/papers/")
    assert client.get(f"/vote/{signed}").status_code == 404
    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    assert client.post(f"/api/v1/vote/{signed}", json=vote).status_code == 404
    tampered = client.get(papers[:-2] + ("AA" if not papers.endswith("AA") else "BB"))
    assert tampered.status_code == 404
    assert "not valid" in tampered.text
    other = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat)
    assert other.json()["status"] == "open"  # nothing the papers pages did changed it
