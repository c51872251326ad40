"""The staff API for disputes: the secretariat records one, any staff member lists them."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, StringConstraints

from app import ballots, definitions, disputes
from app.deps import AnyStaff, Secretariat, SessionDep
from app.models import Dispute, DisputeChannel

router = APIRouter(prefix="/api/v1/ballots/{ballot_id}/disputes", tags=["disputes"])

# One paragraph: running text (line breaks allowed), at most 2,000 characters.
Paragraph = Annotated[definitions.Text, Field(max_length=disputes.MAX_TEXT)]


class DisputeIn(definitions.Schema):
    text: Paragraph
    # The practice it comes from, if one; a challenge may come from the LMC or elsewhere.
    ods_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{3,6}$")] | None = None
    # "A vote was recorded for us but we did not vote."
    claims_not_voted: bool = False


class DisputeOut(BaseModel):
    id: int
    ballot_id: int
    ods_code: str | None
    raised_at: datetime
    text: str
    channel: DisputeChannel
    recorded_by: str | None
    claims_not_voted: bool

    @classmethod
    def of(cls, d: Dispute) -> "DisputeOut":
        return cls(
            id=d.id, ballot_id=d.ballot_id, ods_code=d.ods_code, raised_at=d.raised_at,
            text=d.text, channel=d.channel, recorded_by=d.recorded_by,
            claims_not_voted=d.claims_not_voted,
        )  # fmt: skip


@router.post("", status_code=status.HTTP_201_CREATED)
def record_dispute(
    ballot_id: int, body: DisputeIn, user: Secretariat, session: SessionDep
) -> DisputeOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    return DisputeOut.of(
        disputes.record_by_secretariat(
            session, ballot=ballot, text=body.text, actor=user.username, ods_code=body.ods_code,
            claims_not_voted=body.claims_not_voted,
        )
    )  # fmt: skip


@router.get("")
def list_disputes(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[DisputeOut]:
    ballot = ballots.get(session, ballot_id)
    return [DisputeOut.of(d) for d in disputes.list_for(session, ballot=ballot)]
