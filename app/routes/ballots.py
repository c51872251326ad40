"""The staff API: ballots, their roll, the lifecycle and turnout."""

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import AwareDatetime, BaseModel, Field

from app import (
    ballots,
    definitions,
    errors,
    outbox,
    roll,
    sealed_box,
    staff,
    tally_key,
    voiding,
)
from app import turnout as turnout_figures
from app.deps import AnyStaff, Scrutineer, Secretariat, SessionDep, VoidParty
from app.models import (
    Ballot,
    BallotStatus,
    DeliveryStatus,
    MessageKind,
    ReceiptMode,
    RollEntry,
    VoidProposal,
)

router = APIRouter(prefix="/api/v1/ballots", tags=["ballots"])


class BallotOut(BaseModel):
    id: int
    reference: str
    title: str
    organisation: dict[str, str]
    status: BallotStatus
    receipt_mode: ReceiptMode
    opens_at: datetime
    closes_at: datetime
    close_extended_reason: str | None
    opened_at: datetime | None
    closed_at: datetime | None
    box_opened_at: datetime | None
    published_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    frozen_hash: str | None
    questions: list[dict[str, Any]]
    rules: dict[str, Any]
    documents: list[dict[str, Any]]
    consultations: list[dict[str, Any]]
    # The public key ballots are sealed to and who holds the private key's shares.
    tally_key: dict[str, Any] | None

    @classmethod
    def of(cls, ballot: Ballot) -> "BallotOut":
        d = ballot.definition
        return cls(
            id=ballot.id,
            reference=ballot.reference,
            title=ballot.title,
            organisation={
                "name": ballot.organisation_name,
                "ods_code": ballot.organisation_ods_code,
            },
            status=ballot.status,
            receipt_mode=ballot.receipt_mode,
            opens_at=ballot.opens_at,
            closes_at=ballot.closes_at,
            close_extended_reason=ballot.close_extended_reason,
            opened_at=ballot.opened_at,
            closed_at=ballot.closed_at,
            box_opened_at=ballot.box_opened_at,
            published_at=ballot.published_at,
            voided_at=ballot.voided_at,
            void_reason=ballot.void_reason,
            frozen_hash=ballot.frozen_hash,
            questions=d["questions"],
            rules=d["rules"],
            documents=d["documents"],
            consultations=d["consultations"],
            tally_key=d.get(ballots.TALLY_KEY),
        )


class PracticeOut(BaseModel):
    ods_code: str
    name: str
    locality: str
    list_size: int
    emails: list[str]
    votes: int | None

    @classmethod
    def of(cls, e: RollEntry) -> "PracticeOut":
        return cls(
            ods_code=e.ods_code,
            name=e.name,
            locality=e.locality,
            list_size=e.list_size,
            emails=e.emails,
            votes=e.votes,
        )


class ProblemOut(BaseModel):
    code: str
    message: str
    blocking: bool


class OpenIn(definitions.Schema):
    acknowledge_warnings: bool = False


class TallyKeyIn(definitions.Schema):
    """The public half of a key made by the holders with `mandate tally-key new`."""

    public_key: str = Field(max_length=100)
    holders: list[str] | None = Field(default=None, max_length=20)
    threshold: int | None = Field(default=None, ge=1, le=255)
    holder_count: int | None = Field(default=None, ge=1, le=255)


class TallyOpenIn(definitions.Schema):
    """The key holders' shares, each the JSON of a file `mandate tally-key new` wrote."""

    shares: list[dict[str, Any]] = Field(max_length=255)


class ExtendIn(definitions.Schema):
    closes_at: AwareDatetime
    reason: definitions.Reason


class VoidIn(definitions.Schema):
    reason: definitions.Reason


class TurnoutPractice(BaseModel):
    ods_code: str
    name: str
    locality: str
    voted_at: datetime | None
    voted_by_name: str | None
    voted_by_role: str | None


class TurnoutOut(BaseModel):
    """Who has voted and when: never how."""

    eligible: int
    voted: int
    by_locality: dict[str, dict[str, int]]
    practices: list[TurnoutPractice]


async def read_roll(request: Request) -> list[roll.RollRow]:
    """A roll from a JSON list, a CSV body (text/csv) or a CSV file upload (field `file`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise errors.InvalidInput("The roll is not valid JSON.") from None
        return roll.parse_json(data)
    if kind == "text/csv":
        raw = await request.body()
    elif kind == "multipart/form-data":
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise errors.InvalidInput("Attach the roll as a CSV file in the form field 'file'.")
            raw = await upload.read()
    else:
        raise errors.InvalidInput(
            "Send the roll as JSON (application/json), CSV (text/csv) or a CSV file upload."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidInput("The CSV file must be saved as UTF-8.") from None
    return roll.parse_csv(text)


RollUpload = Annotated[list[roll.RollRow], Depends(read_roll)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_ballot(
    body: definitions.BallotDefinition, user: Secretariat, session: SessionDep
) -> BallotOut:
    return BallotOut.of(ballots.create(session, definition=body, actor=staff.actor(user)))


@router.get("")
def list_ballots(_user: AnyStaff, session: SessionDep) -> list[BallotOut]:
    return [BallotOut.of(b) for b in ballots.list_all(session)]


@router.get("/{ballot_id}")
def read_ballot(ballot_id: int, _user: AnyStaff, session: SessionDep) -> BallotOut:
    return BallotOut.of(ballots.get(session, ballot_id))


@router.put("/{ballot_id}")
def edit_ballot(
    ballot_id: int, body: definitions.BallotDefinition, user: Secretariat, session: SessionDep
) -> BallotOut:
    ballot = ballots.get(session, ballot_id, lock="update", with_documents=True)
    return BallotOut.of(
        ballots.update(session, ballot=ballot, definition=body, actor=staff.actor(user))
    )


# The route reads the roll itself (JSON, CSV or an upload), so its body is declared here.
_ROLL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": roll.RollRow.model_json_schema()}
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@router.put("/{ballot_id}/roll", openapi_extra=_ROLL_BODY)
def replace_roll(
    ballot_id: int, user: Secretariat, rows: RollUpload, session: SessionDep
) -> list[PracticeOut]:
    ballot = ballots.get(session, ballot_id, lock="update")
    entries = ballots.replace_roll(session, ballot=ballot, rows=rows, actor=staff.actor(user))
    return [PracticeOut.of(e) for e in entries]


@router.get("/{ballot_id}/roll")
def read_roll_entries(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[PracticeOut]:
    ballot = ballots.get(session, ballot_id)
    return [PracticeOut.of(e) for e in roll.entries(session, ballot=ballot)]


@router.get("/{ballot_id}/problems")
def problems(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[ProblemOut]:
    ballot = ballots.get(session, ballot_id)
    return [
        ProblemOut(code=p.code, message=p.message, blocking=p.blocking)
        for p in ballots.problems_before_opening(session, ballot=ballot)
    ]


@router.post("/{ballot_id}/open")
def open_ballot(
    ballot_id: int, user: Secretariat, session: SessionDep, body: OpenIn | None = None
) -> BallotOut:
    acknowledge = body.acknowledge_warnings if body else False
    return BallotOut.of(
        ballots.open_ballot(
            session, ballot_id=ballot_id, acknowledge_warnings=acknowledge,
            actor=staff.actor(user),
        )
    )  # fmt: skip


@router.put("/{ballot_id}/tally-key")
def set_tally_key(
    ballot_id: int, body: TallyKeyIn, user: Secretariat, session: SessionDep
) -> BallotOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    return BallotOut.of(
        sealed_box.set_tally_key(
            session, ballot=ballot, public_key=body.public_key, holders=body.holders,
            threshold=body.threshold, holder_count=body.holder_count, actor=staff.actor(user),
        )
    )  # fmt: skip


@router.post("/{ballot_id}/tally-open")
def open_box(
    ballot_id: int, body: TallyOpenIn, user: Secretariat, session: SessionDep
) -> BallotOut:
    shares = [
        tally_key.parse_share(share, name=f"Share {n}") for n, share in enumerate(body.shares, 1)
    ]
    return BallotOut.of(
        sealed_box.open_box(session, ballot_id=ballot_id, shares=shares, actor=staff.actor(user))
    )


@router.post("/{ballot_id}/extend")
def extend_close(
    ballot_id: int, body: ExtendIn, user: Secretariat, session: SessionDep
) -> BallotOut:
    return BallotOut.of(
        ballots.extend_close(
            session, ballot_id=ballot_id, closes_at=body.closes_at, reason=body.reason,
            actor=staff.actor(user),
        )
    )  # fmt: skip


@router.post("/{ballot_id}/close")
def close_ballot(ballot_id: int, user: Secretariat, session: SessionDep) -> BallotOut:
    return BallotOut.of(ballots.close_ballot(session, ballot_id=ballot_id, actor=staff.actor(user)))


@router.post("/{ballot_id}/publish")
def publish(ballot_id: int, user: Secretariat, session: SessionDep) -> BallotOut:
    return BallotOut.of(ballots.publish(session, ballot_id=ballot_id, actor=staff.actor(user)))


class VoidProposalOut(BaseModel):
    """A proposal to void: pending until a scrutineer confirms it or either party withdraws it."""

    id: int
    reason: str
    proposed_by: str
    proposed_at: datetime
    withdrawn_by: str | None
    withdrawn_at: datetime | None
    confirmed_by: str | None
    confirmed_at: datetime | None

    @classmethod
    def of(cls, p: VoidProposal) -> "VoidProposalOut":
        return cls(
            id=p.id, reason=p.reason, proposed_by=p.proposed_by, proposed_at=p.proposed_at,
            withdrawn_by=p.withdrawn_by, withdrawn_at=p.withdrawn_at,
            confirmed_by=p.confirmed_by, confirmed_at=p.confirmed_at,
        )  # fmt: skip


class VoidProposalIn(definitions.Schema):
    """The proposal read, so a different one put in its place is never confirmed by mistake."""

    proposal_id: int = Field(ge=1, lt=2**31)


@router.get("/{ballot_id}/void")
def read_void_proposal(
    ballot_id: int, _user: AnyStaff, session: SessionDep
) -> VoidProposalOut | None:
    ballot = ballots.get(session, ballot_id)
    found = voiding.pending(session, ballot=ballot) or voiding.confirmed(session, ballot=ballot)
    return VoidProposalOut.of(found) if found is not None else None


@router.post("/{ballot_id}/void", status_code=status.HTTP_201_CREATED)
def propose_void(
    ballot_id: int, body: VoidIn, user: Secretariat, session: SessionDep
) -> VoidProposalOut:
    return VoidProposalOut.of(
        voiding.propose(session, ballot_id=ballot_id, reason=body.reason, user=user)
    )


@router.post("/{ballot_id}/void/confirm")
def confirm_void(
    ballot_id: int, body: VoidProposalIn, user: Scrutineer, session: SessionDep
) -> BallotOut:
    return BallotOut.of(
        voiding.confirm(session, ballot_id=ballot_id, proposal_id=body.proposal_id, user=user)
    )


@router.post("/{ballot_id}/void/withdraw")
def withdraw_void(
    ballot_id: int, body: VoidProposalIn, user: VoidParty, session: SessionDep
) -> VoidProposalOut:
    return VoidProposalOut.of(
        voiding.withdraw(session, ballot_id=ballot_id, proposal_id=body.proposal_id, user=user)
    )


@router.post("/{ballot_id}/voters/{ods_code}/reissue")
def reissue(ballot_id: int, ods_code: str, user: Secretariat, session: SessionDep) -> PracticeOut:
    ballot = ballots.get(session, ballot_id)
    return PracticeOut.of(
        roll.reissue(session, ballot=ballot, ods_code=ods_code, actor=staff.actor(user))
    )


class RemindersOut(BaseModel):
    practices: int
    detail: str


class DeliveryOut(BaseModel):
    """One email and what became of it; never its link or its body."""

    ods_code: str
    practice: str
    to: str
    kind: MessageKind
    subject: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    queued_at: datetime
    sent_at: datetime | None


@router.post("/{ballot_id}/notice")
def send_notice(ballot_id: int, user: Secretariat, session: SessionDep) -> RemindersOut:
    ballot = ballots.get(session, ballot_id, lock="update")
    count = roll.give_notice(session, ballot=ballot, actor=staff.actor(user))
    return RemindersOut(
        practices=count,
        detail=f"The notice of ballot is queued to every address of the {count} practices.",
    )


@router.post("/{ballot_id}/reminders")
def send_reminders(ballot_id: int, user: Secretariat, session: SessionDep) -> RemindersOut:
    ballot = ballots.get(session, ballot_id)
    count = roll.remind(session, ballot=ballot, actor=staff.actor(user))
    return RemindersOut(
        practices=count,
        detail=f"Reminders queued to every address of the {count} practices that have not voted.",
    )


@router.get("/{ballot_id}/deliveries")
def deliveries(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[DeliveryOut]:
    ballot = ballots.get(session, ballot_id)
    return [
        DeliveryOut(
            ods_code=practice.ods_code, practice=practice.name, to=m.to_address, kind=m.kind,
            subject=m.subject, status=m.status, attempts=m.attempts, last_error=m.last_error,
            queued_at=m.created_at, sent_at=m.sent_at,
        )
        for practice, m in outbox.deliveries(session, ballot=ballot)
    ]  # fmt: skip


@router.get("/{ballot_id}/turnout")
def turnout(ballot_id: int, _user: AnyStaff, session: SessionDep) -> TurnoutOut:
    ballot = ballots.get(session, ballot_id)
    entries = roll.entries(session, ballot=ballot)
    figures = turnout_figures.figures(entries, since=None, until=ballot.closes_at)
    return TurnoutOut(
        eligible=figures.eligible,
        voted=figures.voted,
        by_locality={
            loc.name: {"eligible": loc.eligible, "voted": loc.voted} for loc in figures.by_locality
        },
        practices=[
            TurnoutPractice(
                ods_code=e.ods_code,
                name=e.name,
                locality=e.locality,
                voted_at=e.voted_at,
                voted_by_name=e.voted_by_name,
                voted_by_role=e.voted_by_role,
            )
            for e in entries
        ],
    )
