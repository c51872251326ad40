"""Voting by link: read the ballot, cast exactly once, and the receipt."""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app import audit, ballots, clock, crypto, definitions, errors, outbox
from app.models import (
    Ballot,
    BallotBoxEntry,
    BallotStatus,
    MessageKind,
    RollEntry,
    VotingLink,
)


class Phase(StrEnum):
    """What a voter can do with a link right now."""

    not_yet_open = "not_yet_open"
    open = "open"
    closed = "closed"
    published = "published"
    voided = "voided"


class BallotNotOpen(errors.Conflict):
    pass


class BallotClosed(errors.Conflict):
    pass


def resolve(session: Session, token: str) -> VotingLink:
    """The link behind a token; a GET through here never consumes anything."""
    link = session.scalar(
        select(VotingLink).where(VotingLink.token_hash == crypto.token_hash(token))
    )
    if link is None:
        raise errors.LinkInvalid(
            "This voting link is not recognised. Check that you used the whole link from the "
            "email, or ask your CCG to send the practice a new one."
        )
    if link.revoked_at is not None:
        raise errors.LinkRevoked(
            "This link has been replaced by a newer one. Use the link in the most recent "
            "email about this ballot, or ask your CCG to send a new one."
        )
    return link


def phase(ballot: Ballot) -> Phase:
    if ballot.status == BallotStatus.open:
        now = clock.now()
        if now < ballot.opens_at:
            return Phase.not_yet_open
        return Phase.open if now < ballot.closes_at else Phase.closed
    if ballot.status == BallotStatus.draft:
        return Phase.not_yet_open
    return Phase(ballot.status)


@dataclass(frozen=True)
class VoterView:
    ballot: Ballot
    practice: RollEntry
    phase: Phase
    questions: list[definitions.Question]
    abstain_means: str


def view(session: Session, *, link: VotingLink) -> VoterView:
    ballot = ballots.get(session, link.roll_entry.ballot_id)
    rules = ballots.rules_of(ballot)
    return VoterView(
        ballot=ballot,
        practice=link.roll_entry,
        phase=phase(ballot),
        questions=ballots.questions_of(ballot),
        abstain_means=rules.describe_abstain(rules.for_question(None)),
    )


def check_choices(
    questions: list[definitions.Question], choices: Mapping[str, str]
) -> dict[str, str]:
    """Every question answered with one of its options; problems name the question only."""
    # The error must not echo what was chosen, so it names the question and its options.
    known = {q.id: q for q in questions}
    problems = [
        {"loc": f"choices.{qid}", "problem": "there is no such question on this ballot"}
        for qid in choices
        if qid not in known
    ]
    for question in questions:
        if question.id not in choices:
            problems.append(
                {
                    "loc": f"choices.{question.id}",
                    "problem": "answer this question (Abstain is an answer)",
                }
            )
        elif choices[question.id] not in question.options:
            problems.append(
                {
                    "loc": f"choices.{question.id}",
                    "problem": "not one of the options: " + ", ".join(question.options),
                }
            )
    if problems:
        raise errors.InvalidInput(
            "The vote was not recorded: " + errors.describe_problems(problems), problems=problems
        )
    return {q.id: choices[q.id] for q in questions}


def cast(
    session: Session,
    *,
    token: str,
    choices: Mapping[str, str],
    voter_name: str | None = None,
    voter_role: str | None = None,
) -> str:
    """Record the practice's one vote and return its receipt code."""
    practice = resolve(session, token).roll_entry
    # FOR SHARE: closing takes the row FOR UPDATE, so no cast can commit after a close.
    ballot = ballots.get(session, practice.ballot_id, lock="share")
    current = phase(ballot)
    if current is Phase.not_yet_open:
        raise BallotNotOpen(f"Voting opens at {clock.london(ballot.opens_at)}.")
    if current is not Phase.open:
        raise BallotClosed(f"Voting on this ballot closed at {clock.london(ballot.closes_at)}.")
    recorded = check_choices(ballots.questions_of(ballot), choices)
    # The database decides who was first: only one UPDATE can find voted_at still empty.
    consumed = session.execute(
        update(RollEntry)
        .where(RollEntry.id == practice.id, RollEntry.voted_at.is_(None))
        .values(
            voted_at=clock.now(),
            voted_by_name=(voter_name or "").strip()[:200] or None,
            voted_by_role=(voter_role or "").strip()[:200] or None,
        )
        .execution_options(synchronize_session=False)
    )
    if consumed.rowcount != 1:  # type: ignore[attr-defined]
        raise errors.AlreadyVoted(
            "This practice has already voted; a practice's vote cannot be changed."
        )
    # Every address of the practice hears that a vote was recorded for it (never the receipt
    # or the choices), so a vote cast in its name without its knowledge comes to light.
    outbox.enqueue(session, kind=MessageKind.confirmation, ballot=ballot, practice=practice)
    receipt_code = crypto.new_receipt_code()
    session.execute(
        insert(BallotBoxEntry).values(
            id=secrets.token_hex(16),
            ballot_id=ballot.id,
            receipt_code=receipt_code,
            choices=recorded,
            locality=practice.locality,
            votes=practice.votes or 1,
        )
    )
    # Last, because appends to the chain take turns until commit. That the practice voted is
    # all the trail learns: nothing here points to the ballot-box entry.
    audit.append(
        session, ballot=ballot, actor=audit.VOTER, action="voted", ods_code=practice.ods_code
    )
    return receipt_code
