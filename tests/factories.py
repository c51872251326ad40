"""Plain functions that build test data through the same paths the product uses."""

import hashlib
import mailbox
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pyotp
from fastapi.testclient import TestClient
from nacl.public import PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import ballots, clock, config, mail, outbox, staff, tally_key
from app.db import session_scope
from app.models import Role, SealedBallot
from bench import ballot as bench_ballot

OPENS = datetime(2016, 11, 7, 9, 0, tzinfo=UTC)
CLOSES = datetime(2016, 11, 25, 17, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
LOCALITIES = ("North", "Central", "South")
SCRUTINEER = "scrutineer-user"  # as staff_headers names the scrutineer's account
# One tally key for the test run: its public key is set on every ballot a test opens, and two
# of its three shares open the box after close.
# Fixed, so a scripted ballot's definition (which names the key) is the same in every process.
TALLY_PRIVATE = PrivateKey(hashlib.sha256(b"mandate tests: tally key").digest())
TALLY_KEY, TALLY_SHARES = tally_key.split(TALLY_PRIVATE, holders=3, threshold=2)
TALLY_HOLDERS = ["Returning officer", "Scrutineer", "Audit committee chair"]


def definition(**overrides: Any) -> dict[str, Any]:
    """A small valid ballot definition, as the API takes it."""
    data: dict[str, Any] = {
        "reference": "TEST-2016-L3",
        "title": "Delegated commissioning",
        "organisation": {"name": "NHS Test Vale CCG", "ods_code": "99Z"},
        "opens_at": OPENS.isoformat(),
        "closes_at": CLOSES.isoformat(),
        "questions": [
            {"id": "delegated", "text": "Apply for delegated commissioning from 1 April 2017?"},
            {"id": "constitution", "text": "Approve the constitution amendments?"},
        ],
        "rules": {"preset": "simple_majority", "constitution_ref": "Constitution 6.6.2"},
        "consultations": [{"date": "2016-09-14", "body": "LMC", "summary": "LMC consulted."}],
        "governance": {"scrutineer": "Sam Okafor, LMC", "scrutineer_accounts": [SCRUTINEER]},
    }
    data.update(overrides)
    return data


def roll(n: int = 9, *, emails_per_practice: int = 1) -> list[dict[str, Any]]:
    """n practices spread over three localities (at least three per locality when n ≥ 9)."""
    return [
        {
            "ods_code": f"G{83001 + i:05d}",
            "name": f"Practice {i + 1}",
            "locality": LOCALITIES[i % len(LOCALITIES)],
            "list_size": 5000 + i,
            "emails": [
                f"contact{k}.g{83001 + i}@practice.example" for k in range(emails_per_practice)
            ],
        }
        for i in range(n)
    ]


def staff_headers(client: httpx.Client, role: Role = Role.secretariat) -> dict[str, str]:
    """Create an account with this role and sign it in; an admin also sets up two-factor
    sign-in through the API, as every admin must before using it."""
    username = f"{role.value}-user"
    with session_scope() as session:
        user = next((u for u in staff.list_all(session) if u.username == username), None)
        if user is None:
            user = staff.create(session, username=username, password=PASSWORD, role=role)
        elif user.totp_confirmed_at is not None:
            # Tests often freeze the clock, so signing in again would replay the last code.
            user.totp_last_step = None
        enrolled = user.totp_confirmed_at is not None
    form = {"username": username, "password": PASSWORD}
    if enrolled:
        form["otp"] = totp_code(username)
    response = client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    if role == Role.admin and not enrolled:
        enrol_totp(client, headers, username=username)
    return headers


# The TOTP secret of each account a test enrolled, by username.
_totp_secrets: dict[str, str] = {}


def enrol_totp(client: httpx.Client, headers: dict[str, str], *, username: str) -> str:
    """Set up two-factor sign-in through the API, as a person would; returns the secret."""
    started = client.post("/api/v1/auth/totp", headers=headers)
    assert started.status_code == 200, started.text
    uri: str = started.json()["otpauth_uri"]
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    _totp_secrets[username] = secret
    code = pyotp.TOTP(secret).at(clock.now())
    confirmed = client.post("/api/v1/auth/totp/confirm", json={"code": code}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return secret


def totp_code(username: str) -> str:
    """The authenticator's code for an account enrolled by enrol_totp, by the app's clock."""
    return pyotp.TOTP(_totp_secrets[username]).at(clock.now())


def draft_ballot(
    client: TestClient,
    headers: dict[str, str],
    *,
    practices: int = 9,
    with_tally_key: bool = True,
    **overrides: Any,
) -> int:
    """A draft with a roll and, unless told otherwise, the test tally key set."""
    response = client.post("/api/v1/ballots", json=definition(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    ballot_id: int = response.json()["id"]
    response = client.put(
        f"/api/v1/ballots/{ballot_id}/roll", json=roll(practices), headers=headers
    )
    assert response.status_code == 200, response.text
    if with_tally_key:
        set_tally_key(client, headers, ballot_id)
    return ballot_id


def approve(client: httpx.Client, ballot_id: int) -> None:
    """The scrutineer approves the draft as it stands, having read what will be frozen."""
    scrutineer = staff_headers(client, Role.scrutineer)
    frozen = client.get(f"/api/v1/ballots/{ballot_id}/approval", headers=scrutineer)
    assert frozen.status_code == 200, frozen.text
    body = {"frozen_hash": frozen.json()["frozen_hash"]}
    response = client.post(f"/api/v1/ballots/{ballot_id}/approval", json=body, headers=scrutineer)
    assert response.status_code == 200, response.text


def countersign(client: TestClient, ballot_id: int) -> None:
    """The scrutineer countersigns the count of a closed ballot, having fetched it."""
    scrutineer = staff_headers(client, Role.scrutineer)
    count = client.get(f"/api/v1/ballots/{ballot_id}/countersignature", headers=scrutineer)
    assert count.status_code == 200, count.text
    body = {"count_hash": count.json()["count_hash"]}
    url = f"/api/v1/ballots/{ballot_id}/countersignature"
    response = client.post(url, json=body, headers=scrutineer)
    assert response.status_code == 200, response.text


def approve_in_db(ballot_id: int) -> None:
    """The ballot's scrutineer approves it, without HTTP (for tests of the CLI)."""
    with session_scope() as session:
        bench_ballot.approve(session, ballots.get(session, ballot_id))


def countersign_in_db(ballot_id: int) -> None:
    with session_scope() as session:
        bench_ballot.countersign(session, ballots.get(session, ballot_id))


def set_tally_key(
    client: TestClient, headers: dict[str, str], ballot_id: int, public_key: str = TALLY_KEY
) -> None:
    body = {"public_key": public_key, "holders": TALLY_HOLDERS, "threshold": 2}
    response = client.put(f"/api/v1/ballots/{ballot_id}/tally-key", json=body, headers=headers)
    assert response.status_code == 200, response.text


def share_files(*indexes: int) -> list[dict[str, Any]]:
    """The shares of the test key with these indexes (1 to 3), as the holders' files hold them."""
    return [TALLY_SHARES[i - 1].as_json() for i in indexes]


def open_box(
    client: TestClient, headers: dict[str, str], ballot_id: int, *, shares: tuple[int, ...] = (1, 3)
) -> None:
    """The key holders open the sealed box of a closed ballot."""
    body = {"shares": share_files(*shares)}
    response = client.post(f"/api/v1/ballots/{ballot_id}/tally-open", json=body, headers=headers)
    assert response.status_code == 200, response.text


def sealed_receipt_codes(session: Session, ballot_id: int) -> list[str]:
    """The receipt codes inside a ballot's sealed box, opened with the test's tally key."""
    codes = []
    for ciphertext in session.scalars(
        select(SealedBallot.ciphertext).where(SealedBallot.ballot_id == ballot_id)
    ):
        paper = tally_key.unseal(TALLY_PRIVATE, ciphertext)
        assert paper is not None
        codes.append(paper["receipt_code"])
    return codes


def open_ballot(client: TestClient, headers: dict[str, str], **kwargs: Any) -> int:
    ballot_id = draft_ballot(client, headers, **kwargs)
    approve(client, ballot_id)
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/open", json={"acknowledge_warnings": True}, headers=headers
    )
    assert response.status_code == 200, response.text
    return ballot_id


def sent_links() -> dict[str, list[str]]:
    """Voting tokens that have arrived, by the ODS code in the recipient's address."""
    outbox.deliver_pending()  # what `mandate serve` does in the background
    maildir = config.get_settings().maildir
    assert maildir is not None
    if not maildir.exists():
        return {}
    links: dict[str, list[str]] = defaultdict(list)
    for message in mailbox.Maildir(maildir, create=False):
        found = re.search(r"/vote/([A-Za-z0-9_-]+)", mail.plain_text(message))
        code = re.search(r"\.([a-z]\d{5})@", str(message["To"]))
        if found and code:
            links[code.group(1).upper()].append(found.group(1))
    return links


def token_for(ods_code: str) -> str:
    return sent_links()[ods_code][-1]


def cast_votes(client: TestClient, choices: list[str]) -> None:
    """Practice i votes choices[i] on the first question and For on the second."""
    links = sent_links()
    for i, option in enumerate(choices):
        token = links[f"G{83001 + i}"][-1]
        vote = {"choices": {"delegated": option, "constitution": "For"}}
        response = client.post(f"/api/v1/vote/{token}", json=vote)
        assert response.status_code == 200, response.text


def close_and_publish(client: TestClient, headers: dict[str, str], ballot_id: int) -> None:
    clock.freeze(CLOSES + timedelta(seconds=1))
    response = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=headers)
    assert response.status_code == 200, response.text
    open_box(client, headers, ballot_id)
    countersign(client, ballot_id)
    response = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=headers)
    assert response.status_code == 200, response.text


def published_ballot(
    client: TestClient,
    headers: dict[str, str],
    *,
    choices: tuple[str, ...] = ("For",) * 5 + ("Against",) * 2 + ("Abstain",),
    **kwargs: Any,
) -> int:
    """A ballot of nine practices, voted (eight of them), closed and published."""
    ballot_id = open_ballot(client, headers, **kwargs)
    cast_votes(client, list(choices))
    close_and_publish(client, headers, ballot_id)
    return ballot_id
