"""The sealed ballot box: while a ballot is open, whoever holds the database (a dump, a backup,
a DBA) can neither count the votes nor join a ballot to its practice; after close the key
holders' shares open it, and everything downstream counts the opened box."""

import io
import os
import shutil
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from nacl.public import PrivateKey, SealedBox
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url

from app import clock, proof, sealed_box, tally_key
from app.db import session_scope
from app.models import Ballot, BallotBoxEntry, RollEntry, SealedBallot
from tests import factories

OPTIONS = ["For", "Against", "Abstain"]
CAST = ["For"] * 4 + ["Against"] * 3 + ["Abstain"]


def _open(client: TestClient, secretariat: dict[str, str], **kwargs: Any) -> int:
    return factories.open_ballot(client, secretariat, **kwargs)


def _vote(client: TestClient, choices: list[str]) -> list[str]:
    """Practice i votes choices[i] on both questions; the receipt codes they were given."""
    links, receipts = factories.sent_links(), []
    for i, option in enumerate(choices):
        vote = {"choices": {"delegated": option, "constitution": option}}
        response = client.post(f"/api/v1/vote/{links[f'G{83001 + i}'][-1]}", json=vote)
        assert response.status_code == 200, response.text
        receipts.append(response.json()["receipt_code"])
    return receipts


def _dump(engine: Engine, tmp_path: Path) -> bytes:
    """Everything someone who copies the database gets, as bytes."""
    url = make_url(str(engine.url))
    if engine.dialect.name == "sqlite":
        # The database file and its write-ahead log: what a copy of the directory holds.
        assert url.database is not None
        found = b""
        for suffix in ("", "-wal"):
            source = Path(url.database + suffix)
            if source.exists():
                tmp_path.mkdir(exist_ok=True)
                copy = tmp_path / f"copy{suffix}"
                shutil.copyfile(source, copy)
                found += copy.read_bytes()
        return found
    bindir = subprocess.run(
        ["pg_config", "--bindir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dumped = subprocess.run(
        [
            str(Path(bindir) / "pg_dump"), "-h", str(url.host), "-p", str(url.port),
            "-U", str(url.username), "--data-only", str(url.database),
        ],
        capture_output=True, check=True, env=os.environ | {"PGCONNECT_TIMEOUT": "10"},
    )  # fmt: skip
    return dumped.stdout


def _close(client: TestClient, secretariat: dict[str, str], ballot_id: int) -> dict[str, str]:
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    secretariat = factories.staff_headers(client)
    response = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    assert response.status_code == 200, response.text
    return secretariat


def _state(engine: Engine, ballot_id: int) -> tuple[Any, ...]:
    """Everything an opening would change: the sealed and the plain box, the ballot, the trail."""
    with engine.connect() as connection:
        sealed = connection.execute(
            select(SealedBallot.id, SealedBallot.ciphertext).order_by(SealedBallot.id)
        ).all()
        plain = connection.scalar(select(func.count()).select_from(BallotBoxEntry))
        ballot = connection.execute(
            select(Ballot.status, Ballot.box_opened_at, Ballot.result).where(Ballot.id == ballot_id)
        ).one()
        trail = connection.scalar(text("SELECT count(*) FROM audit_entry"))
    return tuple(sealed), plain, tuple(ballot), trail


def _tally_open(
    client: TestClient, headers: dict[str, str], ballot_id: int, shares: list[dict[str, Any]]
) -> Any:
    return client.post(
        f"/api/v1/ballots/{ballot_id}/tally-open", json={"shares": shares}, headers=headers
    )


def test_a_dump_taken_while_the_ballot_is_open_holds_no_choice_receipt_or_count(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine,
    tmp_path: Path,
) -> None:  # fmt: skip
    if db.dialect.name == "sqlite":
        # Earlier tests' published boxes, deleted between tests, leave their pages in the file
        # and its log; a deployment's own published ballots are public. Start from this ballot.
        raw = db.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.execute("VACUUM")
            cursor.close()
        finally:
            raw.close()
    _open(client, secretariat)
    before = _dump(db, tmp_path / "before")
    receipts = _vote(client, CAST)
    during = _dump(db, tmp_path / "during")
    for receipt in receipts:
        for form in (receipt, receipt.replace("-", ""), proof.sha256_hex(receipt.encode())):
            assert form.encode() not in during, form
    # An option is written no more often than before anyone voted (in the definition), and
    # never as a choice: nothing in the dump grows with the votes, so there is nothing to count.
    for option in OPTIONS:
        assert during.count(option.encode()) <= before.count(option.encode()), option
        for question in ("delegated", "constitution"):
            for spacing in ("", " "):
                choice = f'"{question}":{spacing}"{option}"'.encode()
                assert choice not in during, choice
    with session_scope() as session:
        sizes = session.scalars(select(func.length(SealedBallot.ciphertext))).all()
    assert len(sizes) == len(CAST)
    assert len(set(sizes)) == 1  # every ballot seals to one size, whatever it says


def test_the_sealed_box_joined_to_the_turnout_register_gives_only_ciphertexts(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    receipts = _vote(client, CAST)
    columns = {c["name"] for c in inspect(db).get_columns("sealed_ballot")}
    assert columns == {"id", "ballot_id", "ciphertext"}
    with db.connect() as connection:
        joins = {
            "by column": "SELECT s.* FROM sealed_ballot s JOIN roll_entry r "
            "ON r.ballot_id = s.ballot_id WHERE r.voted_at IS NOT NULL",
            "by storage order": (
                "SELECT s.* FROM sealed_ballot s ORDER BY s.ctid"
                if db.dialect.name == "postgresql"
                else "SELECT s.* FROM sealed_ballot s"
            ),
        }
        if db.dialect.name == "postgresql":
            # The turnout update and the sealed insert share a transaction, so its id.
            joins["by xmin"] = (
                "SELECT s.*, r.ods_code FROM sealed_ballot s JOIN roll_entry r ON r.xmin = s.xmin"
            )
        for how, sql in joins.items():
            rows = connection.execute(text(sql)).mappings().all()
            assert rows, how
            if how == "by xmin":
                assert len({r["ods_code"] for r in rows}) == len(CAST)  # the link is there...
            for row in rows:
                ciphertext = bytes(row["ciphertext"])
                assert not any(r.encode() in ciphertext for r in receipts), how
                assert not any(o.encode() in ciphertext for o in OPTIONS), how
                # ...and what it links to opens only with the tally key.
                assert tally_key.unseal(PrivateKey.generate(), ciphertext) is None, how
    secretariat = _close(client, secretariat, ballot_id)
    factories.open_box(client, secretariat, ballot_id)
    with db.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(SealedBallot)) == 0
        stored = connection.scalars(select(BallotBoxEntry.receipt_code)).all()
        assert sorted(stored) == sorted(receipts)
        if db.dialect.name == "postgresql":
            # Written in one statement after close, in receipt order: no casting order, and no
            # transaction shared with any practice's vote.
            in_storage = connection.scalars(
                text("SELECT receipt_code FROM ballot_box_entry ORDER BY ctid")
            ).all()
            assert in_storage == sorted(receipts)
            assert (
                connection.scalar(text("SELECT count(DISTINCT xmin::text) FROM ballot_box_entry"))
                == 1
            )
            assert not connection.scalar(
                text(
                    "SELECT count(*) FROM ballot_box_entry b JOIN roll_entry r "
                    "ON r.xmin = b.xmin WHERE r.voted_at IS NOT NULL"
                )
            )


def test_opening_with_too_few_shares_or_a_wrong_key_is_refused_and_changes_nothing(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    _vote(client, CAST)
    secretariat = _close(client, secretariat, ballot_id)
    before = _state(db, ballot_id)
    _, other_shares = tally_key.new_key(holders=3, threshold=2)
    forged = factories.share_files(1, 2)
    forged[1]["halves"] = factories.share_files(3)[0]["halves"]  # index 2, another's numbers
    attempts = {
        "one share": (factories.share_files(2), "2 different key holders' shares are needed"),
        "the same share twice": (factories.share_files(1, 1), "2 different key holders"),
        "another key's shares": (
            [s.as_json() for s in other_shares[:2]],
            "belongs to another tally key than this ballot's",
        ),
        "a damaged share": (forged, "do not give the private key of this ballot's tally key"),
        "no shares": ([], "shares are needed"),
        "not a share": ([{"format": "something else"}], "Share 1 cannot be read"),
    }
    for what, (shares, said) in attempts.items():
        response = _tally_open(client, secretariat, ballot_id, shares)
        assert response.status_code == 422, (what, response.text)
        assert said in response.json()["detail"], what
        assert "Nothing was opened" in response.json()["detail"] or what == "not a share"
        assert _state(db, ballot_id) == before, what
    published = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert published.status_code == 409


@pytest.mark.parametrize("shares", [(1, 2), (2, 3), (3, 1)])
def test_any_two_of_three_shares_open_the_box_and_the_count_is_the_votes_cast(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine,
    shares: tuple[int, int],
) -> None:  # fmt: skip
    ballot_id = _open(client, secretariat)
    receipts = _vote(client, CAST)
    secretariat = _close(client, secretariat, ballot_id)
    still_sealed = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert still_sealed.status_code == 409
    assert still_sealed.json()["error"] == "BoxStillSealed"
    assert "still sealed: the key holders open it first" in still_sealed.json()["detail"]
    opened = _tally_open(client, secretariat, ballot_id, factories.share_files(*shares))
    assert opened.status_code == 200, opened.text
    assert opened.json()["box_opened_at"] is not None
    again = _tally_open(client, secretariat, ballot_id, factories.share_files(*shares))
    assert again.status_code == 409
    assert "it can be opened only once" in again.json()["detail"]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(SealedBallot)) == 0
    factories.countersign(client, ballot_id)
    published = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert published.status_code == 200, published.text
    result = client.get(f"/api/v1/ballots/{ballot_id}/results").json()
    assert result["ballots_cast"] == len(CAST)
    for question in result["questions"]:
        counted = {option: c["practices"] for option, c in question["counts"].items()}
        assert counted == {o: CAST.count(o) for o in OPTIONS}
    box = client.get(f"/api/v1/ballots/{ballot_id}/ballot-box").json()
    assert box["receipts"] == sorted(receipts)
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=secretariat).json()
    closed = next(e for e in trail["entries"] if e["action"] == "closed")["payload"]
    box_opened = next(e for e in trail["entries"] if e["action"] == "box_opened")["payload"]
    assert closed["ballots_cast"] == box_opened["ballots_opened"] == len(CAST)
    assert "ballot_box_root" not in closed  # nothing known of the plain box at close
    assert box_opened["sealed_sha256"] == closed["sealed_sha256"]
    publication = next(e for e in trail["entries"] if e["action"] == "published")["payload"]
    assert publication["ballot_box_root"] == box_opened["ballot_box_root"]
    assert not any(r in str(trail) for r in receipts)


def test_a_ciphertext_that_does_not_open_is_reported_and_nothing_is_dropped(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    _vote(client, CAST[:3])
    # Someone with the database slips in a ballot sealed to another key before the close.
    stranger = SealedBox(PrivateKey.generate().public_key).encrypt(b'{"choices": {}}')
    with session_scope() as session:
        session.add(SealedBallot(id="f" * 32, ballot_id=ballot_id, ciphertext=stranger))
    secretariat = _close(client, secretariat, ballot_id)
    before = _state(db, ballot_id)
    response = _tally_open(client, secretariat, ballot_id, factories.share_files(1, 2))
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert "1 of 4 sealed ballots do not open with this ballot's key" in detail
    assert "f" * 32 in detail
    assert "nothing was opened or dropped" in detail
    assert response.json()["problems"] == [{"loc": "sealed_ballot", "problem": "f" * 32}]
    assert _state(db, ballot_id) == before


def test_a_sealed_ballot_swapped_after_close_stops_the_opening(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    _vote(client, CAST[:3])
    secretariat = _close(client, secretariat, ballot_id)
    # A properly sealed ballot (anyone can seal to the public key), swapped in after close.
    forged = tally_key.seal(
        factories.TALLY_KEY,
        {"choices": {"delegated": "For", "constitution": "For"}, "locality": "North",
         "receipt_code": "FAKE-FAKE-FAKE-FAKE-FAKE", "votes": 1},
        size=1024,
    )  # fmt: skip
    with session_scope() as session:
        first = session.scalars(select(SealedBallot.id).order_by(SealedBallot.id)).first()
        session.execute(
            update(SealedBallot).where(SealedBallot.id == first).values(ciphertext=forged)
        )
    before = _state(db, ballot_id)
    response = _tally_open(client, secretariat, ballot_id, factories.share_files(1, 2))
    assert response.status_code == 409
    assert "not the one fixed at close" in response.json()["detail"]
    assert _state(db, ballot_id) == before


def test_the_box_of_an_open_ballot_cannot_be_opened(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    _vote(client, CAST[:2])
    before = _state(db, ballot_id)
    response = _tally_open(client, secretariat, ballot_id, factories.share_files(1, 2))
    assert response.status_code == 409
    assert "only a closed ballot can have its ballot box opened" in response.json()["detail"]
    assert _state(db, ballot_id) == before


def test_a_ballot_without_a_tally_key_cannot_open(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, with_tally_key=False)
    problems = client.get(f"/api/v1/ballots/{ballot_id}/problems", headers=secretariat).json()
    assert "no_tally_key" in [p["code"] for p in problems if p["blocking"]]
    factories.approve(client, ballot_id)
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert response.status_code == 409
    assert "The ballot has no tally key" in response.json()["detail"]
    factories.set_tally_key(client, secretariat, ballot_id)
    factories.approve(client, ballot_id)  # setting the key withdrew the approval
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert response.status_code == 200, response.text


def test_the_tally_key_is_frozen_with_the_definition_and_kept_by_an_edit(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    for bad in ("not base64!", "c2hvcnQ="):
        response = client.put(
            f"/api/v1/ballots/{ballot_id}/tally-key", json={"public_key": bad}, headers=secretariat
        )
        assert response.status_code == 422
        assert "tally public key" in response.json()["detail"]
    edited = client.put(
        f"/api/v1/ballots/{ballot_id}", json=factories.definition(title="Renamed"),
        headers=secretariat,
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    assert edited.json()["tally_key"]["public_key"] == factories.TALLY_KEY
    assert edited.json()["tally_key"]["holders"] == factories.TALLY_HOLDERS
    factories.approve(client, ballot_id)
    opened = client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert opened.status_code == 200
    response = client.put(
        f"/api/v1/ballots/{ballot_id}/tally-key",
        json={"public_key": tally_key.new_key(holders=3, threshold=2)[0]},
        headers=secretariat,
    )
    assert response.status_code == 409
    assert "only a draft ballot can have its tally key set" in response.json()["detail"]


def test_the_declaration_says_the_box_was_sealed_who_held_the_key_and_when_it_was_opened(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=secretariat)
    assert response.status_code == 200
    html = zipfile.ZipFile(io.BytesIO(response.content)).read("declaration.html").decode()
    assert "Sealed: each ballot was encrypted when cast to a tally key" in html
    assert "Returning officer, Scrutineer, Audit committee chair (2 of 3 needed)" in html
    assert "opened with their shares at" in html


def test_shares_any_two_of_three_give_the_key_back() -> None:
    public, shares = tally_key.new_key(holders=3, threshold=2)
    for pair in ((0, 1), (1, 2), (0, 2)):
        chosen = [tally_key.parse_share(shares[i].as_json()) for i in pair]
        private = tally_key.combine(chosen, public_key=public)
        assert tally_key.unseal(private, tally_key.seal(public, _paper(), size=512)) == _paper()


def _paper() -> dict[str, Any]:
    return {"choices": {"q": "For"}, "locality": "North", "receipt_code": "R", "votes": 2}


def test_a_cast_after_a_restart_seals_to_the_key_in_the_frozen_definition(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = _open(client, secretariat)
    sealed_box._frozen_sealers.clear()
    _vote(client, CAST[:1])
    with session_scope() as session:
        (ciphertext,) = session.scalars(select(SealedBallot.ciphertext)).all()
        practice = session.scalars(
            select(RollEntry).where(
                RollEntry.ballot_id == ballot_id, RollEntry.voted_at.is_not(None)
            )
        ).one()
    paper = tally_key.unseal(factories.TALLY_PRIVATE, ciphertext)
    assert paper is not None
    assert paper["locality"] == practice.locality
    assert paper["votes"] == practice.votes
