"""Voting by link: read the ballot, cast exactly once, and the receipt."""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from app import audit, ballots, clock, crypto, definitions, errors, outbox, sealed_box, tally_key
from app.db import table
from app.models import (
    Ballot,
    BallotStatus,
    MessageKind,
    RollEntry,
    SealedBallot,
    VotingLink,
)

_roll = table(RollEntry)
# Built once, because they run in every cast.
_CONSUME = (
    update(_roll)
    .where(_roll.c.id == bindparam("practice_id"), _roll.c.voted_at.is_(None))
    .values(
        voted_at=bindparam("voted_at"),
        voted_by_name=bindparam("voted_by_name"),
        voted_by_role=bindparam("voted_by_role"),
    )
)
_INTO_BOX = insert(table(SealedBallot))
_link, _ballot = table(VotingLink), table(Ballot)
# The link, its practice and its ballot in one statement, read FOR SHARE OF the ballot: closing
# takes that row FOR UPDATE, so no cast can commit after a close. (SQLite needs no row locks:
# every transaction there begins IMMEDIATE.)
_FOR_CAST = (
    select(
        _link.c.revoked_at,
        _roll.c.id, _roll.c.ods_code, _roll.c.locality, _roll.c.votes, _roll.c.emails,
        _ballot.c.id, _ballot.c.status, _ballot.c.opens_at, _ballot.c.closes_at,
        _ballot.c.frozen_hash, _ballot.c.title, _ballot.c.organisation_name,
    )
    .join(_roll, _roll.c.id == _link.c.roll_entry_id)
    .join(_ballot, _ballot.c.id == _roll.c.ballot_id)
    .where(_link.c.token_hash == bindparam("token_hash"))
    .with_for_update(read=True, of=_ballot)
)  # fmt: skip


@dataclass(frozen=True)
class _Practice:
    """What a cast needs of the practice, without loading it through the ORM."""

    id: int
    ods_code: str
    locality: str
    votes: int | None
    emails: list[str]


@dataclass(frozen=True)
class _Ballot:
    id: int
    status: str
    opens_at: datetime
    closes_at: datetime
    frozen_hash: str | None
    title: str
    organisation_name: str


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
    if link is None or link.revoked_at is not None:
        # A replaced link answers exactly as an unknown one, so a guesser learns nothing.
        raise errors.LinkInvalid(
            "This voting link is not valid. It may be incomplete, or it may have been replaced "
            "by a newer link: use the link in the most recent email about this ballot, or ask "
            "your CCG to send the practice a new one."
        )
    return link


class Scheduled(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def opens_at(self) -> datetime: ...
    @property
    def closes_at(self) -> datetime: ...


def phase(ballot: Scheduled) -> Phase:
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
    # The hot statements go to the session's connection (the same transaction): there are no
    # ORM objects for the session to flush or track here, and its execute() costs more than
    # the statement itself on SQLite.
    connection = session.connection()
    found = connection.execute(_FOR_CAST, {"token_hash": crypto.token_hash(token)}).first()
    if found is None or found.revoked_at is not None:
        resolve(session, token)  # raises the one answer for a link that cannot vote
    assert found is not None  # noqa: S101  (resolve has raised otherwise)
    practice, ballot = _Practice(*found[1:6]), _Ballot(*found[6:13])
    current = phase(ballot)
    if current is Phase.not_yet_open:
        raise BallotNotOpen(f"Voting opens at {clock.london(ballot.opens_at)}.")
    if current is not Phase.open:
        raise BallotClosed(f"Voting on this ballot closed at {clock.london(ballot.closes_at)}.")
    questions = ballots.cached_questions(ballot.frozen_hash)
    sealer = sealed_box.cached_sealer(ballot.frozen_hash)
    if questions is None or sealer is None:
        frozen = ballots.get(session, ballot.id)
        questions, sealer = ballots.questions_of(frozen), sealed_box.sealer_of(frozen)
    recorded = check_choices(questions, choices)
    # The database decides who was first: only one UPDATE can find voted_at still empty.
    consumed = connection.execute(
        _CONSUME,
        {
            "practice_id": practice.id,
            "voted_at": clock.now(),
            "voted_by_name": (voter_name or "").strip()[:200] or None,
            "voted_by_role": (voter_role or "").strip()[:200] or None,
        },
    )
    if consumed.rowcount != 1:
        raise errors.AlreadyVoted(
            "This practice has already voted; a practice's vote cannot be changed."
        )
    # Every address of the practice hears that a vote was recorded for it (never the receipt
    # or the choices), so a vote cast in its name without its knowledge comes to light.
    outbox.enqueue(session, kind=MessageKind.confirmation, ballot=ballot, practice=practice)
    receipt_code = crypto.new_receipt_code()
    # Sealed to the tally key: until the holders open the box after close, the database holds
    # nothing to count and nothing a receipt could be looked up by.
    paper = {
        "choices": recorded,
        "receipt_code": receipt_code,
        "locality": practice.locality,
        "votes": practice.votes or 1,
    }
    connection.execute(
        _INTO_BOX,
        {
            "id": secrets.token_hex(16),
            "ballot_id": ballot.id,
            "ciphertext": tally_key.seal(sealer.public_key, paper, size=sealer.size),
        },
    )
    # Last, because appends to the chain take turns until commit. That the practice voted is
    # all the trail learns: nothing here points to the ballot-box entry.
    audit.append(
        session, ballot=ballot.id, actor=audit.VOTER, action="voted", ods_code=practice.ods_code
    )
    return receipt_code
