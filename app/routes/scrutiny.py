"""The scrutineer's approval before opening and countersignature before publication."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, StringConstraints

from app import ballots, definitions, errors, proof, scrutiny
from app.deps import AnyStaff, Scrutineer, SessionDep
from app.models import BallotStatus, StaffUser

router = APIRouter(prefix="/api/v1/ballots/{ballot_id}", tags=["scrutiny"])

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class FrozenOut(BaseModel):
    """Exactly what opening will freeze, the key that will sign the result, and the approval."""

    frozen_hash: str | None
    definition_sha256: str
    roll_sha256: str
    practices: int
    questions: list[dict[str, Any]]
    rules: dict[str, Any]
    constitution_ref: str | None
    documents: list[dict[str, str]]
    signing_key: dict[str, str]
    scrutineers: list[str]
    # The roll against the national list: flags and missing members the approval covers.
    roll_check: dict[str, Any]
    approved_by: str | None
    approved_at: datetime | None
    approval_stands: bool


class ApprovalIn(definitions.Schema):
    """The frozen hash the scrutineer reviewed: an approval of anything else is refused."""

    frozen_hash: Sha256


class CountOut(BaseModel):
    """The count to verify: the box as committed at close, its ballots, and the result."""

    ballot_box_root: str
    ballots_cast: int
    practices_voted: int
    result: dict[str, Any]
    ballot_box: dict[str, Any]
    count_hash: str
    countersigned_by: str | None
    countersigned_at: datetime | None


class CountersignatureIn(definitions.Schema):
    count_hash: Sha256


@router.get("/approval")
def read_approval(ballot_id: int, _user: AnyStaff, session: SessionDep) -> FrozenOut:
    ballot = ballots.get(session, ballot_id)
    return FrozenOut(**scrutiny.what_is_frozen(session, ballot=ballot))


@router.post("/approval")
def approve(ballot_id: int, body: ApprovalIn, user: Scrutineer, session: SessionDep) -> FrozenOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    scrutiny.approve(session, ballot=ballot, user=user, frozen=body.frozen_hash)
    return FrozenOut(**scrutiny.what_is_frozen(session, ballot=ballot))


def count_to_verify(
    session: SessionDep, ballot_id: int, user: StaffUser, lock: str | None
) -> CountOut:
    """The count as the scrutineer verifies it, once the box is open: never before close."""
    ballot = ballots.get(session, ballot_id, lock=lock)
    scrutiny.require_named(ballot, user)
    if ballot.status not in (BallotStatus.closed, BallotStatus.published):
        # No interim result, for the scrutineer either.
        raise errors.WrongState(
            f"The ballot is {ballot.status}; the count can be verified once it has closed."
        )
    if ballot.box_opened_at is None:
        raise errors.WrongState(
            "The ballot box is still sealed: the key holders open it (tally-open) before the "
            "count can be verified."
        )
    root, cast = ballots.box_commitment(session, ballot=ballot)
    result = ballots.count(session, ballot=ballot)
    box = proof.published_box(ballot.receipt_mode, ballots.box_entries(session, ballot=ballot))
    return CountOut(
        ballot_box_root=root,
        ballots_cast=cast,
        practices_voted=ballots.turnout_figures(session, ballot=ballot)[1],
        result=result,
        ballot_box=box,
        count_hash=proof.count_hash(ballot_box_root=root, ballots_cast=cast, result=result),
        countersigned_by=ballot.countersigned_by,
        countersigned_at=ballot.countersigned_at,
    )


@router.get("/countersignature")
def read_count(ballot_id: int, user: Scrutineer, session: SessionDep) -> CountOut:
    return count_to_verify(session, ballot_id, user, lock=None)


@router.post("/countersignature")
def countersign(
    ballot_id: int, body: CountersignatureIn, user: Scrutineer, session: SessionDep
) -> CountOut:
    current = count_to_verify(session, ballot_id, user, lock="update")
    ballot = ballots.get(session, ballot_id)
    scrutiny.countersign(
        session, ballot=ballot, user=user, given=body.count_hash, current=current.count_hash
    )
    return current.model_copy(
        update={"countersigned_by": ballot.countersigned_by,
                "countersigned_at": ballot.countersigned_at}
    )  # fmt: skip
