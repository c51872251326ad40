"""Announcements that put a copy of the record outside the server: the publication to every
practice, each scrutineer and the LMC, and the scrutineers' daily digest while a ballot is open.

Each is queued in the outbox like any email; what it says is worked out when it is sent.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import audit, ballots, clock, declaration, errors, evidence, outbox, roll
from app.config import get_settings
from app.db import session_scope
from app.models import Ballot, BallotStatus, DeliveryStatus, MessageKind, OutboxMessage

DIGEST_QUEUED = "digest_queued"


def scrutineer_addresses(ballot: Ballot) -> list[str]:
    """The addresses the definition gives for the ballot's scrutineers, in account order."""
    governance = ballot.definition.get("governance") or {}
    emails: dict[str, str] = governance.get("scrutineer_emails") or {}
    return [emails[a] for a in governance.get("scrutineer_accounts") or [] if a in emails]


def _off_the_roll(ballot: Ballot) -> list[str]:
    """Each scrutineer and the LMC contact, once each (one person may be both)."""
    lmc = (ballot.definition.get("governance") or {}).get("lmc_contact_email")
    addresses = [*scrutineer_addresses(ballot), *([lmc] if lmc else [])]
    return list(dict.fromkeys(a.lower() for a in addresses))


def queue_publication(session: Session, *, ballot: Ballot) -> None:
    """Tell every address on the roll, each scrutineer and the LMC that the result is out."""
    for practice in roll.entries(session, ballot=ballot):
        outbox.enqueue(session, kind=MessageKind.published, ballot=ballot, practice=practice)
    others = _off_the_roll(ballot)
    if others:
        outbox.enqueue(
            session, kind=MessageKind.published, ballot=ballot, practice=None, addresses=others
        )


def bundle_url(ballot: Ballot) -> str:
    return f"{get_settings().base_url}/api/v1/ballots/{ballot.id}/evidence"


def results_url(ballot: Ballot) -> str:
    return f"{get_settings().base_url}/api/v1/ballots/{ballot.id}/results"


def published_facts(session: Session, *, ballot: Ballot) -> dict[str, Any]:
    """The declaration as the bundle states it, and which practices voted (never how)."""
    practices = roll.entries(session, ballot=ballot)
    return {
        "declaration": declaration.contents(evidence.declaration_facts(session, ballot=ballot)),
        "voted": [(p.name, p.ods_code) for p in practices if p.voted_at is not None],
        "not_voted": sum(1 for p in practices if p.voted_at is None),
        "bundle_url": bundle_url(ballot),
        "results_url": results_url(ballot),
        "verify_command": declaration.VERIFY_COMMAND,
    }


def failed_deliveries(session: Session, *, ballot: Ballot) -> int:
    """Messages of the ballot the mail server refused for good."""
    return int(
        session.scalar(
            select(func.count()).where(
                OutboxMessage.ballot_id == ballot.id,
                OutboxMessage.status == DeliveryStatus.failed,
            )
        )
        or 0
    )


def london_day(at: datetime | None = None) -> date:
    """The day in England, which is what "once a day" means to the scrutineer."""
    return (at or clock.now()).astimezone(clock.LONDON).date()


def queue_digest(session: Session, *, ballot_id: int, actor: str) -> bool:
    """Queue today's digest to the ballot's scrutineers; False if today's is already queued."""
    # The row lock (SQLite: the one writer) makes a second server wait, then find it done.
    ballot = ballots.get(session, ballot_id, lock="update")
    if ballot.status != BallotStatus.open:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}: the scrutineers' digest goes only while "
            "it is open."
        )
    addresses = scrutineer_addresses(ballot)
    if not addresses:
        raise NoScrutineerAddress(
            f"Ballot {ballot.id} gives no scrutineer an email address, so there is nobody to "
            "send the digest to: its definition's governance section lists them in "
            "scrutineer_emails."
        )
    today = london_day().isoformat()
    if _last_digest_day(session, ballot) == today:
        return False
    # In the trail, so the record shows the scrutineers were kept informed, and when.
    audit.append(
        session, ballot=ballot, actor=actor, action=DIGEST_QUEUED, day=today,
        recipients=len(addresses),
    )  # fmt: skip
    outbox.enqueue(
        session, kind=MessageKind.digest, ballot=ballot, practice=None, addresses=addresses
    )
    return True


class NoScrutineerAddress(errors.Conflict):
    pass


def _last_digest_day(session: Session, ballot: Ballot) -> str | None:
    last = audit.last(session, ballot=ballot, action=DIGEST_QUEUED)
    return str(last.payload.get("day")) if last is not None else None


def queue_digests() -> list[str]:
    """Queue today's digest for every open ballot with a scrutineer's address; what was done."""
    today = london_day().isoformat()
    # Looked at without a lock, so the scheduler's every pass does not hold up the casts that
    # share the ballot's row; only a ballot still owed today's digest is locked to queue it.
    with session_scope() as session:
        wanted = [
            b.id
            for b in session.scalars(select(Ballot).where(Ballot.status == BallotStatus.open))
            if scrutineer_addresses(b) and _last_digest_day(session, b) != today
        ]
    done = []
    for ballot_id in sorted(wanted):
        try:
            with session_scope() as session:
                if queue_digest(session, ballot_id=ballot_id, actor=audit.SYSTEM):
                    done.append(f"ballot {ballot_id}: scrutineers' digest queued")
        except errors.WrongState:
            pass  # closed since it was listed
    return done


def digest_facts(session: Session, *, ballot: Ballot) -> dict[str, Any]:
    """Turnout so far (how many, never how) and the mail the server refused, as it is now."""
    eligible, voted = ballots.turnout_figures(session, ballot=ballot)
    return {
        "eligible": eligible,
        "voted": voted,
        "turnout": declaration.percent(voted, eligible),
        "failed": failed_deliveries(session, ballot=ballot),
        "day": london_day(),
    }
