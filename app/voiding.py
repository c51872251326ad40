"""Voiding a ballot takes two people: the secretariat proposes it with a reason, and a
scrutineer the ballot names confirms that same proposal. Either may withdraw it while pending.
Nothing else about the ballot changes; the trail records every step."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit, ballots, clock, errors, scrutiny, staff
from app.models import Ballot, BallotStatus, Role, StaffUser, VoidProposal


def pending(session: Session, *, ballot: Ballot) -> VoidProposal | None:
    return session.scalar(
        select(VoidProposal).where(
            VoidProposal.ballot_id == ballot.id,
            VoidProposal.withdrawn_at.is_(None),
            VoidProposal.confirmed_at.is_(None),
        )
    )


def _not_void(ballot: Ballot) -> None:
    if ballot.status == BallotStatus.voided:
        raise errors.WrongState(f"Ballot {ballot.id} is already void.")


def propose(session: Session, *, ballot_id: int, reason: str, user: StaffUser) -> VoidProposal:
    """The secretariat's proposal to void the ballot; it changes nothing until confirmed."""
    ballot = ballots.get(session, ballot_id, lock="update")
    _not_void(ballot)
    if not reason.strip():
        raise errors.InvalidInput(
            "Give the reason the ballot is void; it is shown with the result."
        )
    existing = pending(session, ballot=ballot)
    if existing is not None:
        raise errors.Conflict(
            f"A proposal to void ballot {ballot.id} is already waiting for the scrutineer "
            f"(proposal {existing.id}, by {existing.proposed_by}); withdraw it first to give "
            "another reason."
        )
    proposal = VoidProposal(
        ballot_id=ballot.id,
        reason=reason.strip(),
        proposed_by=user.username,
        proposed_at=clock.now(),
    )
    session.add(proposal)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=staff.actor(user), action="void_proposed",
        proposal_id=proposal.id, status=ballot.status, reason=proposal.reason,
    )  # fmt: skip
    return proposal


def _the_pending(session: Session, ballot: Ballot, proposal_id: int) -> VoidProposal:
    found = pending(session, ballot=ballot)
    if found is None:
        raise errors.Conflict(f"No proposal to void ballot {ballot.id} is waiting.")
    if found.id != proposal_id:
        raise errors.Conflict(
            f"Proposal {proposal_id} is not the one waiting (proposal {found.id}, reason: "
            f"{found.reason}): read that one and confirm or withdraw it."
        )
    return found


def confirm(session: Session, *, ballot_id: int, proposal_id: int, user: StaffUser) -> Ballot:
    """A named scrutineer confirms the pending proposal they read: only now is the ballot void."""
    ballot = ballots.get(session, ballot_id, lock="update")
    scrutiny.require_named(ballot, user)
    _not_void(ballot)
    proposal = _the_pending(session, ballot, proposal_id)
    if proposal.proposed_by == user.username:  # roles keep them apart; this says it plainly
        raise errors.Forbidden("A proposal to void is confirmed by someone other than its author.")
    now = clock.now()
    proposal.confirmed_by, proposal.confirmed_at = user.username, now
    audit.append(
        session, ballot=ballot, actor=staff.actor(user), action="voided",
        proposal_id=proposal.id, status_was=ballot.status, reason=proposal.reason,
        proposed_by=proposal.proposed_by, confirmed_by=user.username,
    )  # fmt: skip
    ballot.status = BallotStatus.voided
    ballot.voided_at = now
    ballot.void_reason = proposal.reason
    session.flush()
    return ballot


def withdraw(
    session: Session, *, ballot_id: int, proposal_id: int, user: StaffUser
) -> VoidProposal:
    """The secretariat or a named scrutineer withdraws the pending proposal."""
    ballot = ballots.get(session, ballot_id, lock="update")
    if user.role != Role.secretariat:
        scrutiny.require_named(ballot, user)
    proposal = _the_pending(session, ballot, proposal_id)
    proposal.withdrawn_by, proposal.withdrawn_at = user.username, clock.now()
    session.flush()
    audit.append(
        session, ballot=ballot, actor=staff.actor(user), action="void_withdrawn",
        proposal_id=proposal.id,
    )  # fmt: skip
    return proposal


def confirmed(session: Session, *, ballot: Ballot) -> VoidProposal | None:
    """The proposal that made the ballot void, if it is."""
    return session.scalar(
        select(VoidProposal).where(
            VoidProposal.ballot_id == ballot.id, VoidProposal.confirmed_at.is_not(None)
        )
    )
