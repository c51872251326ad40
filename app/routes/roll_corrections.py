"""Add-only corrections to the roll of an open ballot, each approved by the scrutineer."""

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, EmailStr, Field

from app import ballots, definitions, roll, roll_corrections, staff
from app.deps import AnyStaff, Scrutineer, Secretariat, SessionDep
from app.models import RollAddition
from app.routes.ballots import PracticeOut

router = APIRouter(prefix="/api/v1/ballots/{ballot_id}", tags=["roll corrections"])


class AdditionIn(roll.RollRow):
    """A practice wrongly left off the roll, and why it should be on it."""

    reason: definitions.Reason


class AddressesIn(definitions.Schema):
    """The practice's addresses as they should now be (they replace the old ones), and why."""

    emails: list[EmailStr] = Field(min_length=1, max_length=10)
    reason: definitions.Reason


class AdditionOut(BaseModel):
    number: int
    ods_code: str
    name: str
    locality: str
    list_size: int
    emails: list[str]
    reason: str
    proposed_by: str
    proposed_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    on_roll: bool

    @classmethod
    def of(cls, a: RollAddition) -> "AdditionOut":
        return cls(
            number=a.number, ods_code=a.ods_code, name=a.name, locality=a.locality,
            list_size=a.list_size, emails=a.emails, reason=a.reason, proposed_by=a.proposed_by,
            proposed_at=a.proposed_at, approved_by=a.approved_by, approved_at=a.approved_at,
            on_roll=a.roll_entry_id is not None,
        )  # fmt: skip


@router.post("/roll/additions", status_code=status.HTTP_201_CREATED)
def propose(
    ballot_id: int, body: AdditionIn, user: Secretariat, session: SessionDep
) -> AdditionOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    row = roll.RollRow.model_validate(body.model_dump(exclude={"reason"}))
    return AdditionOut.of(
        roll_corrections.propose_addition(
            session, ballot=ballot, row=row, reason=body.reason, actor=staff.actor(user)
        )
    )


@router.get("/roll/additions")
def list_additions(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[AdditionOut]:
    ballot = ballots.get(session, ballot_id)
    return [AdditionOut.of(a) for a in roll_corrections.additions(session, ballot=ballot)]


@router.post("/roll/additions/{number}/approve")
def approve(ballot_id: int, number: int, user: Scrutineer, session: SessionDep) -> AdditionOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    return AdditionOut.of(
        roll_corrections.approve_addition(session, ballot=ballot, number=number, user=user)
    )


@router.put("/voters/{ods_code}/addresses")
def change_addresses(
    ballot_id: int, ods_code: str, body: AddressesIn, user: Secretariat, session: SessionDep
) -> PracticeOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    return PracticeOut.of(
        roll_corrections.change_addresses(
            session, ballot=ballot, ods_code=ods_code, emails=[str(e) for e in body.emails],
            reason=body.reason, actor=staff.actor(user),
        )
    )  # fmt: skip
