"""The words of each message, as they reach the maildir (the embedded transport)."""

import mailbox
from email.message import Message

from fastapi.testclient import TestClient

from app import config, mail, outbox
from app.models import Role
from tests import factories

VOTE = {"choices": {"delegated": "For", "constitution": "Against"}}


def _delivered(subject_starts: str) -> list[Message]:
    outbox.deliver_pending()
    maildir = config.get_settings().maildir
    assert maildir is not None
    return [
        m
        for m in mailbox.Maildir(maildir, create=False)
        if str(m["Subject"]).startswith(subject_starts)
    ]


def test_invitation_names_the_practice_and_closing_time_but_keeps_the_link_out_of_the_subject(
    client: TestClient, frozen_clock: object
) -> None:
    factories.open_ballot(client, factories.staff_headers(client, Role.secretariat))
    messages = _delivered("Vote now")
    assert len(messages) == 9
    message = next(m for m in messages if "g83001" in str(m["To"]))
    text = mail.plain_text(message)
    token = factories.token_for("G83001")
    assert f"http://testserver/vote/{token}" in text
    assert token not in str(message["Subject"])
    assert "NHS Test Vale CCG" in str(message["Subject"])
    assert "Practice 1 (G83001)" in text
    assert "5:00pm on Friday 25 November 2016" in text
    assert "Apply for delegated commissioning from 1 April 2017?" in text
    assert "do not forward" in text
    html_part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    html = html_part.get_payload(decode=True)
    assert isinstance(html, bytes)
    assert f'<a href="http://testserver/vote/{token}">' in html.decode()
    assert len({m["Message-ID"] for m in messages}) == 9
    assert all(str(m["Message-ID"]).endswith("@localhost>") for m in messages)  # MAIL_FROM's


def test_extension_is_told_to_every_address_without_a_link(
    client: TestClient, frozen_clock: object
) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.open_ballot(client, secretariat)
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/extend",
        json={"closes_at": "2016-11-28T17:00:00+00:00", "reason": "Half-term in one locality."},
        headers=secretariat,
    )
    assert response.status_code == 200
    notices = _delivered("Voting extended")
    assert len(notices) == 9
    text = mail.plain_text(notices[0])
    assert "Half-term in one locality." in text
    assert "5:00pm on Monday 28 November 2016" in text
    assert "/vote/" not in text


def test_confirmation_goes_to_every_address_with_neither_receipt_nor_choice(
    client: TestClient, frozen_clock: object
) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.draft_ballot(client, secretariat)
    rows = factories.roll(9, emails_per_practice=3)
    client.put(f"/api/v1/ballots/{ballot_id}/roll", json=rows, headers=secretariat)
    factories.approve(client, ballot_id)
    client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    token = factories.token_for("G83001")
    submitted = {**VOTE, "voter_name": "Pat Lee", "voter_role": "Practice manager"}
    receipt = client.post(f"/api/v1/vote/{token}", json=submitted).json()["receipt_code"]
    confirmations = _delivered("Vote recorded")
    assert sorted(str(m["To"]) for m in confirmations) == sorted(rows[0]["emails"])
    for message in confirmations:
        whole = message.as_string()
        text = mail.plain_text(message)
        assert "12:00pm on Thursday 10 November 2016" in text
        assert "It was submitted by Pat Lee, Practice manager" in text
        assert receipt not in whole
        assert receipt.replace("-", "") not in whole
        assert "Against" not in whole
        assert "/vote/" not in whole
    # The trail's head as the confirmation left: a copy outside the server.
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=secretariat).json()
    head = trail["entries"][-1]
    assert head["action"] == "voted"
    text = mail.plain_text(confirmations[0])
    assert f"entry {head['seq']}, with hash" in text
    assert head["hash"] in text


def test_at_close_every_address_hears_whether_its_practice_is_recorded_as_voted(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["Against"])
    closed = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    assert closed.status_code == 409  # eight practices have not voted yet
    factories.close_and_publish(client, secretariat, ballot_id)
    notices = {str(m["To"]): mail.plain_text(m) for m in _delivered("Voting has closed")}
    assert len(notices) == 9
    voted = notices["contact0.g83001@practice.example"]
    assert "A vote for Practice 1 (G83001) is recorded" in voted
    assert "Against" not in voted
    assert (
        "No vote is recorded for Practice 2 (G83002)" in notices["contact0.g83002@practice.example"]
    )
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=secretariat).json()
    hashes = {e["hash"] for e in trail["entries"]}
    quoted = [h for h in hashes if h in voted]
    assert len(quoted) == 1  # the head as the notice left: a copy kept outside the server
