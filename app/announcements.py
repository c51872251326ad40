"""Announcements that put a copy of the record outside the server: the publication to every
practice, each scrutineer and the LMC, and the scrutineers' daily digest while a ballot is open.

Each is queued in the outbox like any email; what it says is worked out when it is sent.
"""

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import declaration, evidence, outbox, roll
from app.config import get_settings
from app.models import Ballot, DeliveryStatus, MessageKind, OutboxMessage


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
