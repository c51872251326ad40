"""The independent scrutineer: approves exactly what will be frozen, countersigns the count.

The approval is bound to the hash of the ballot as it would be frozen at open (definition,
documents, roll with each practice's votes); any later change gives another hash, so the approval
no longer stands and the change is written to the trail as withdrawing it. The countersignature
is bound to the hash of the count the scrutineer verified: the ballot box root, the number of
ballots and the result. Neither lets a scrutineer change anything else.
"""

from typing import Any

from sqlalchemy.orm import Session

from app import audit, clock, counting, errors, national_list, proof, roll, signing
from app.models import Ballot, BallotStatus, Role, StaffUser


def frozen_hash(session: Session, *, ballot: Ballot) -> str:
    """SHA-256 over the definition, the documents' digests and the roll, as frozen at open."""
    rules = counting.Rules.model_validate(ballot.definition["rules"])
    frozen = {
        "definition": ballot.definition,
        "documents": [d["sha256"] for d in ballot.definition["documents"]],
        "roll": roll.canonical(session, ballot=ballot, votes_for=rules.votes_for),
    }
    return proof.sha256_hex(proof.canonical_json(frozen))


def scrutineers(ballot: Ballot) -> list[str]:
    accounts: list[str] = ballot.definition.get("governance", {}).get("scrutineer_accounts", [])
    return accounts


def require_named(ballot: Ballot, user: StaffUser) -> None:
    if user.role != Role.scrutineer or user.username not in scrutineers(ballot):
        named = ", ".join(scrutineers(ballot)) or "nobody yet"
        raise errors.Forbidden(
            f"Only a scrutineer this ballot names ({named}) may do this; you are signed in as "
            f"{user.username}."
        )


def what_is_frozen(session: Session, *, ballot: Ballot) -> dict[str, Any]:
    """What the scrutineer reviews and approves, with the service's key, and the approval."""
    key = signing.public_b64()
    current = frozen_hash(session, ballot=ballot) if ballot.status == BallotStatus.draft else None
    definition = ballot.definition
    return {
        "frozen_hash": current or ballot.frozen_hash,
        "definition_sha256": proof.sha256_hex(proof.canonical_json(definition)),
        "roll_sha256": roll.roll_hash(session, ballot=ballot),
        "practices": len(roll.entries(session, ballot=ballot)),
        "questions": definition["questions"],
        "rules": definition["rules"],
        "constitution_ref": definition["rules"].get("constitution_ref"),
        "documents": [{"file": d["file"], "sha256": d["sha256"]} for d in definition["documents"]],
        "signing_key": {"public_key": key, "fingerprint": proof.key_fingerprint(key)},
        "scrutineers": scrutineers(ballot),
        "roll_check": national_list.check(session, ballot=ballot).as_record(),
        "approved_by": ballot.approved_by,
        "approved_at": ballot.approved_at,
        "approval_stands": ballot.approved_hash is not None
        and ballot.approved_hash in (current, ballot.frozen_hash),
    }


def approve(session: Session, *, ballot: Ballot, user: StaffUser, frozen: str) -> Ballot:
    """Approve the draft whose frozen hash the scrutineer reviewed, and nothing else."""
    require_named(ballot, user)
    if ballot.status != BallotStatus.draft:
        raise errors.WrongState(f"The ballot is {ballot.status}; only a draft can be approved.")
    current = frozen_hash(session, ballot=ballot)
    if frozen != current:
        raise errors.Conflict(
            "The ballot has changed since you reviewed it (its frozen hash is now "
            f"{current}): review it again and approve that."
        )
    key = signing.public_b64()
    ballot.approved_by, ballot.approved_at, ballot.approved_hash = (
        user.username,
        clock.now(),
        current,
    )
    audit.append(
        session, ballot=ballot, actor=f"staff:{user.username}", action="approved",
        frozen_hash=current, signing_key_fingerprint=proof.key_fingerprint(key),
        roll_check=national_list.check(session, ballot=ballot).as_record(),
    )  # fmt: skip
    return ballot


def withdraw_approval(session: Session, *, ballot: Ballot, actor: str, because: str) -> None:
    """A change after approval: the approval no longer stands, and the trail says why."""
    if ballot.approved_hash is None:
        return
    audit.append(
        session, ballot=ballot, actor=actor, action="approval_withdrawn",
        approved_by=ballot.approved_by, because=because,
    )  # fmt: skip
    ballot.approved_by = ballot.approved_at = ballot.approved_hash = None


def approval_problem(session: Session, *, ballot: Ballot) -> str | None:
    """Why the ballot may not open yet as far as its scrutineer goes, or None."""
    if not scrutineers(ballot):
        return (
            "No scrutineer is named: set governance.scrutineer_accounts to the staff account of "
            "the independent scrutineer (an LMC officer or the lay chair)."
        )
    if ballot.approved_hash is None:
        return "The scrutineer has not approved the ballot: they review and approve it first."
    if ballot.approved_hash != frozen_hash(session, ballot=ballot):
        return "The ballot changed after the scrutineer approved it: they must approve it again."
    return None


def countersign(
    session: Session, *, ballot: Ballot, user: StaffUser, given: str, current: str
) -> Ballot:
    """Record the scrutineer's countersignature of the count they verified."""
    require_named(ballot, user)
    if ballot.status != BallotStatus.closed:
        raise errors.WrongState(
            f"The ballot is {ballot.status}; the count is countersigned after close and before "
            "publication."
        )
    if given != current:
        raise errors.Conflict(
            f"The count is not the one you verified (its hash is {current}): fetch it again."
        )
    ballot.countersigned_by, ballot.countersigned_at, ballot.countersigned_hash = (
        user.username,
        clock.now(),
        current,
    )
    audit.append(
        session, ballot=ballot, actor=f"staff:{user.username}", action="count_countersigned",
        count_hash=current,
    )  # fmt: skip
    return ballot


def require_countersigned(ballot: Ballot, *, current: str) -> None:
    if ballot.countersigned_hash is None:
        raise errors.Conflict(
            "The scrutineer has not countersigned the count: they verify it after close "
            "(GET …/countersignature) and countersign it before the result can be published."
        )
    if ballot.countersigned_hash != current:
        raise errors.Conflict(
            "The count differs from the one the scrutineer countersigned, so the result cannot "
            "be published; the returning officer and the scrutineer should investigate."
        )
