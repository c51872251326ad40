"""Export a ballot to a file and import it into another database, where it carries on.

An open ballot is never exported: it is still taking votes here, and a copy taking votes
elsewhere would let a practice vote twice. A closed ballot travels with its box as it stands:
sealed (ciphertexts only, opened later with the holders' shares wherever it is imported) or
opened (the plaintext box, the ciphertexts already gone).
"""

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, insert, select
from sqlalchemy.orm import Session

from app import ballots, errors
from app.db import Base, table
from app.models import (
    AuditEntry,
    Ballot,
    BallotBoxEntry,
    BallotStatus,
    Document,
    OutboxMessage,
    RollEntry,
    SealedBallot,
    UTCDateTime,
    VotingLink,
)

FORMAT = "mandate-ballot-export/1"
# Per ballot, in the order they can be inserted; each is keyed to the ballot or to a practice.
_BY_BALLOT: tuple[type[Base], ...] = (Document, SealedBallot, BallotBoxEntry, AuditEntry)
# Their ids are random, not assigned by the database, and carry over as they are.
_KEEPS_ID: tuple[type[Base], ...] = (SealedBallot, BallotBoxEntry)


def _plain(model: type[Base], row: Base) -> dict[str, Any]:
    """A row as JSON-ready values, without its own id (the importing database assigns one)."""
    values = {}
    for column in table(model).columns:
        if column.name == "id" and model not in _KEEPS_ID:
            continue
        value = getattr(row, column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        values[column.name] = value
    return values


def _typed(model: type[Base], values: dict[str, Any]) -> dict[str, Any]:
    typed = dict(values)
    for column in table(model).columns:
        value = typed.get(column.name)
        if value is None:
            continue
        if isinstance(column.type, UTCDateTime):
            typed[column.name] = datetime.fromisoformat(value)
        elif isinstance(column.type, LargeBinary):
            typed[column.name] = base64.b64decode(value)
    return typed


def export(session: Session, *, ballot_id: int) -> dict[str, Any]:
    ballot = ballots.get(session, ballot_id)
    if ballot.status == BallotStatus.open:
        raise errors.WrongState(
            f"Ballot {ballot_id} is open, and an open ballot is not exported: it is still taking "
            "votes here, and a copy elsewhere could take a second vote from a practice. Export "
            "it once it has closed."
        )
    practices = []
    for practice in session.scalars(
        select(RollEntry).where(RollEntry.ballot_id == ballot.id).order_by(RollEntry.id)
    ):
        links = session.scalars(
            select(VotingLink)
            .where(VotingLink.roll_entry_id == practice.id)
            .order_by(VotingLink.id)
        )
        messages = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.roll_entry_id == practice.id)
            .order_by(OutboxMessage.id)
        )
        practices.append(
            _plain(RollEntry, practice)
            | {
                "links": [_plain(VotingLink, link) for link in links],
                "messages": [_plain(OutboxMessage, message) for message in messages],
            }
        )
    exported: dict[str, Any] = {"format": FORMAT, "ballot": _plain(Ballot, ballot)}
    for model in _BY_BALLOT:
        key = table(model).name
        order = table(model).primary_key.columns.values()
        rows = session.scalars(
            select(model).where(table(model).c.ballot_id == ballot.id).order_by(*order)
        )
        exported[key] = [_plain(model, row) for row in rows]
    exported["roll_entry"] = practices
    # Messages to people not on the roll (a scrutineer, the LMC contact).
    exported["outbox_message"] = [
        _plain(OutboxMessage, message)
        for message in session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.ballot_id == ballot.id, OutboxMessage.roll_entry_id.is_(None))
            .order_by(OutboxMessage.id)
        )
    ]
    return exported


def import_ballot(session: Session, data: Any) -> int:
    """Recreate an exported ballot here; its links, trail and box carry on as they were."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise errors.InvalidInput(f"This is not a Mandate ballot export ({FORMAT}).")
    try:
        return _insert(session, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"The export is incomplete or damaged ({exc!r}).") from None


def _insert(session: Session, data: dict[str, Any]) -> int:
    reference = data["ballot"]["reference"]
    if session.scalar(select(Ballot.id).where(Ballot.reference == reference)) is not None:
        raise errors.Conflict(f'A ballot with the reference "{reference}" is already here.')
    ballot_id = session.execute(
        insert(table(Ballot)).returning(table(Ballot).c.id), _typed(Ballot, data["ballot"])
    ).scalar_one()
    for model in _BY_BALLOT:
        for row in data[table(model).name]:
            session.execute(insert(table(model)), _typed(model, row | {"ballot_id": ballot_id}))
    for practice in data["roll_entry"]:
        links, messages = practice.pop("links"), practice.pop("messages")
        practice_id = session.execute(
            insert(table(RollEntry)).returning(table(RollEntry).c.id),
            _typed(RollEntry, practice | {"ballot_id": ballot_id}),
        ).scalar_one()
        for link in links:
            row = link | {"roll_entry_id": practice_id}
            session.execute(insert(table(VotingLink)), _typed(VotingLink, row))
        for message in messages:
            row = message | {"roll_entry_id": practice_id, "ballot_id": ballot_id}
            session.execute(insert(table(OutboxMessage)), _typed(OutboxMessage, row))
    # An export made before messages could go to people off the roll has none.
    for message in data.get("outbox_message", []):
        row = message | {"roll_entry_id": None, "ballot_id": ballot_id}
        session.execute(insert(table(OutboxMessage)), _typed(OutboxMessage, row))
    return int(ballot_id)
