"""Corrections to the roll of an open ballot: add-only, each with a reason, each in the trail.

Addresses of a practice already on the roll can be replaced while open, with a reason: every
address, old and new, is told, and the practice's links are re-issued to the new ones only.

A practice wrongly left off the roll is proposed by the secretariat with a reason and goes on
the roll only when a scrutineer the ballot names approves it; its invitation is queued in the
same transaction. Nothing here removes a practice or changes one already on the roll, so the
roll frozen at open stays a subset of the final roll, and the verifier can check that the final
roll is exactly the frozen one plus the approved additions the trail records.
"""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import audit, clock, counting, errors, outbox, roll, scrutiny
from app.models import (
    Ballot,
    BallotStatus,
    MessageKind,
    RollAddition,
    RollEntry,
    StaffUser,
)


def _require_voting(ballot: Ballot, doing: str) -> None:
    if ballot.status != BallotStatus.open or clock.now() >= ballot.closes_at:
        raise errors.WrongState(
            f"Ballot {ballot.id} is not open for voting; {doing} only while it is (before it "
            "opens, replace the roll instead)."
        )


def _on_roll(session: Session, *, ballot: Ballot, ods_code: str) -> RollEntry | None:
    return session.scalar(
        select(RollEntry).where(RollEntry.ballot_id == ballot.id, RollEntry.ods_code == ods_code)
    )


def propose_addition(
    session: Session, *, ballot: Ballot, row: roll.RollRow, reason: str, actor: str
) -> RollAddition:
    """Propose adding a practice left off the roll; a scrutineer must approve it."""
    _require_voting(ballot, "practices are added to the roll")
    problem = roll.domain_problem(row.emails)
    if problem is not None:
        raise errors.InvalidInput(
            f"The practice was not proposed: {problem}.",
            problems=[{"loc": "emails", "problem": problem}],
        )
    if _on_roll(session, ballot=ballot, ods_code=row.ods_code) is not None:
        raise errors.Conflict(
            f"{row.ods_code} is already on the roll of ballot {ballot.id}; corrections while "
            "open only add practices."
        )
    pending = session.scalar(
        select(RollAddition.number).where(
            RollAddition.ballot_id == ballot.id,
            RollAddition.ods_code == row.ods_code,
            RollAddition.approved_at.is_(None),
        )
    )
    if pending is not None:
        raise errors.Conflict(
            f"Addition {pending} already proposes {row.ods_code}; the scrutineer approves that one."
        )
    number = 1 + (
        session.scalar(
            select(func.max(RollAddition.number)).where(RollAddition.ballot_id == ballot.id)
        )
        or 0
    )
    addition = RollAddition(
        ballot_id=ballot.id,
        number=number,
        ods_code=row.ods_code,
        name=row.name,
        locality=row.locality,
        list_size=row.list_size,
        emails=[str(e).lower() for e in row.emails],
        reason=reason.strip(),
        proposed_by=actor,
        proposed_at=clock.now(),
    )
    session.add(addition)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="roll_addition_proposed",
        number=number, ods_code=addition.ods_code, name=addition.name,
        locality=addition.locality, list_size=addition.list_size, emails=addition.emails,
        reason=addition.reason,
    )  # fmt: skip
    return addition


def addition(session: Session, *, ballot: Ballot, number: int) -> RollAddition:
    if not 0 < number < 2**31:  # past the databases' integer: no such addition, not an error
        raise errors.NotFound(f"Ballot {ballot.id} has no proposed addition {number}.")
    found = session.scalar(
        select(RollAddition).where(
            RollAddition.ballot_id == ballot.id, RollAddition.number == number
        )
    )
    if found is None:
        raise errors.NotFound(f"Ballot {ballot.id} has no proposed addition {number}.")
    return found


def additions(session: Session, *, ballot: Ballot) -> list[RollAddition]:
    return list(
        session.scalars(
            select(RollAddition)
            .where(RollAddition.ballot_id == ballot.id)
            .order_by(RollAddition.number)
        )
    )


def approve_addition(
    session: Session, *, ballot: Ballot, number: int, user: StaffUser
) -> RollAddition:
    """A named scrutineer approves a proposed addition: the practice is on the roll and its
    invitation is queued at once."""
    scrutiny.require_named(ballot, user)
    _require_voting(ballot, "additions are approved")
    found = addition(session, ballot=ballot, number=number)
    if found.approved_at is not None:
        raise errors.Conflict(f"Addition {number} was already approved by {found.approved_by}.")
    if _on_roll(session, ballot=ballot, ods_code=found.ods_code) is not None:
        raise errors.Conflict(f"{found.ods_code} is already on the roll of ballot {ballot.id}.")
    rules = counting.Rules.model_validate(ballot.definition["rules"])
    entry = RollEntry(
        ballot_id=ballot.id,
        ods_code=found.ods_code,
        name=found.name,
        locality=found.locality,
        list_size=found.list_size,
        emails=list(found.emails),
        # Weighted by the rule frozen at open, as every other practice was.
        votes=rules.votes_for(found.list_size),
    )
    session.add(entry)
    session.flush()
    found.approved_by, found.approved_at, found.roll_entry_id = (
        user.username,
        clock.now(),
        entry.id,
    )
    session.flush()
    audit.append(
        session, ballot=ballot, actor=f"staff:{user.username}", action="roll_addition_approved",
        number=number, practice=canonical(entry), reason=found.reason,
        proposed_by=found.proposed_by,
    )  # fmt: skip
    outbox.enqueue(session, kind=MessageKind.invitation, ballot=ballot, practice=entry)
    session.flush()
    return found


def change_addresses(
    session: Session, *, ballot: Ballot, ods_code: str, emails: list[str], reason: str, actor: str
) -> RollEntry:
    """Replace a practice's addresses while open, with a reason; every address, old and new,
    is told, and links go only to the addresses now on the roll."""
    _require_voting(ballot, "addresses are changed")
    problem = roll.domain_problem(emails)
    if problem is not None:
        raise errors.InvalidInput(
            f"The addresses were not changed: {problem}.",
            problems=[{"loc": "emails", "problem": problem}],
        )
    practice = roll.entry(session, ballot=ballot, ods_code=ods_code)
    new = list(dict.fromkeys(str(e).lower() for e in emails))
    was = list(practice.emails)
    if new == was:
        raise errors.Conflict(f"Those are already the addresses of {practice.ods_code}.")
    practice.emails = new
    revoked = 0
    if practice.voted_at is None:
        # A link at an address no longer on the roll must not be able to vote.
        revoked = roll.revoke_links(session, practice=practice)
        outbox.cancel_links_queued(
            session, practice=practice, reason="not sent: the practice's addresses changed"
        )
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="addresses_changed",
        ods_code=practice.ods_code, emails_was=was, emails=new, reason=reason.strip(),
        links_revoked=revoked,
    )  # fmt: skip
    if practice.voted_at is None:
        outbox.enqueue(session, kind=MessageKind.new_link, ballot=ballot, practice=practice)
    told = list(dict.fromkeys([*was, *new]))
    outbox.enqueue(
        session, kind=MessageKind.addresses_changed, ballot=ballot, practice=practice,
        addresses=told,
    )  # fmt: skip
    session.flush()
    return practice


def canonical(entry: RollEntry) -> dict[str, Any]:
    """A practice as roll.canonical() gives it, so the verifier can compare it with roll.csv."""
    return {
        "ods_code": entry.ods_code,
        "name": entry.name,
        "locality": entry.locality,
        "list_size": entry.list_size,
        "emails": entry.emails,
        "votes": entry.votes,
    }
