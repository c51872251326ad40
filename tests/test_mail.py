"""Invitations: standard .eml files in the maildir, the link in the body only."""

import mailbox

from fastapi.testclient import TestClient

from app import config
from app.models import Role
from tests import factories


def test_invitation_names_the_practice_and_closing_time_but_keeps_the_link_out_of_the_subject(
    client: TestClient, frozen_clock: object
) -> None:
    factories.open_ballot(client, factories.staff_headers(client, Role.secretariat))
    maildir = config.get_settings().maildir
    assert maildir is not None
    messages = list(mailbox.Maildir(maildir, create=False))
    assert len(messages) == 9
    message = next(m for m in messages if "g83001" in str(m["To"]))
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    token = factories.token_for("G83001")
    assert f"http://testserver/vote/{token}" in text
    assert token not in str(message["Subject"])
    assert "NHS Test Vale CCG" in str(message["Subject"])
    assert "Practice 1 (G83001)" in text
    assert "5:00pm on Friday 25 November 2016" in text
    assert "Apply for delegated commissioning from 1 April 2017?" in text
    assert message["Message-ID"]
    assert len({m["Message-ID"] for m in messages}) == 9


def test_extension_is_told_to_every_address(client: TestClient, frozen_clock: object) -> None:
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.open_ballot(client, secretariat)
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/extend",
        json={"closes_at": "2016-11-28T17:00:00+00:00", "reason": "Half-term in one locality."},
        headers=secretariat,
    )
    assert response.status_code == 200
    maildir = config.get_settings().maildir
    assert maildir is not None
    notices = [
        m
        for m in mailbox.Maildir(maildir, create=False)
        if str(m["Subject"]).startswith("Voting extended")
    ]
    assert len(notices) == 9
    body = notices[0].get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "Half-term in one locality." in body.decode()
    assert "/vote/" not in body.decode()
