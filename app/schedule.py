"""Transitions that happen by themselves when their time comes, once, whichever server sees
them first: voting starts at `opens_at`, the ballot closes at `closes_at`, and while it is open
its scrutineers get one digest a day. The trail names the actor `system`."""

import logging

import anyio
import anyio.to_thread
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app import announcements, audit, ballots, clock, errors, proof
from app.config import get_settings
from app.db import session_scope
from app.models import AuditEntry, Ballot, BallotStatus

log = logging.getLogger("mandate.schedule")

STARTED = "voting_started"


def _due(session: Session) -> tuple[list[int], list[int]]:
    """(open ballots whose voting has started unrecorded, open ballots past their close)."""
    now = clock.now()
    started = ~exists().where(AuditEntry.ballot_id == Ballot.id, AuditEntry.action == STARTED)
    to_start = session.scalars(
        select(Ballot.id).where(Ballot.status == BallotStatus.open, Ballot.opens_at <= now, started)
    )
    to_close = session.scalars(
        select(Ballot.id).where(Ballot.status == BallotStatus.open, Ballot.closes_at <= now)
    )
    return list(to_start), list(to_close)


def _record_start(session: Session, ballot_id: int) -> bool:
    # The row lock (SQLite: the one writer) makes a second server wait, then find it done.
    ballot = ballots.get(session, ballot_id, lock="update")
    done = session.scalar(
        select(AuditEntry.id).where(AuditEntry.ballot_id == ballot_id, AuditEntry.action == STARTED)
    )
    if ballot.status != BallotStatus.open or done is not None:
        return False
    audit.append(
        session, ballot=ballot, actor=audit.SYSTEM, action=STARTED,
        opens_at=proof.instant(ballot.opens_at),
    )  # fmt: skip
    return True


def run_due() -> list[str]:
    """Carry out every transition whose time has come; what was done, as sentences."""
    with session_scope() as session:
        to_start, to_close = _due(session)
    done = []
    for ballot_id in to_start:
        with session_scope() as session:
            if _record_start(session, ballot_id):
                done.append(f"ballot {ballot_id}: voting started")
    for ballot_id in to_close:
        try:
            with session_scope() as session:
                ballots.close_ballot(session, ballot_id=ballot_id, actor=audit.SYSTEM)
            done.append(f"ballot {ballot_id}: closed at its closing time")
        except errors.WrongState:
            pass  # another server closed it first
    # After the closes, so a ballot closing now gets no digest.
    done.extend(announcements.queue_digests())
    return done


async def run_scheduler(turn: anyio.Semaphore) -> None:
    """Look for due transitions every SCHEDULE_INTERVAL_SECONDS while the server runs."""
    interval = get_settings().schedule_interval_seconds
    while True:
        try:
            async with turn:
                done = await anyio.to_thread.run_sync(run_due)
            for sentence in done:
                log.info("%s", sentence)
        except Exception:  # the schedule must outlive a database hiccup
            log.exception("scheduled transitions failed; trying again shortly")
        await anyio.sleep(interval)
