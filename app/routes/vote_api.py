"""The voter API: read the ballot by link, cast once, raise a dispute."""

import functools
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from app import definitions, disputes, errors, voting
from app.deps import SessionDep, VoterLink, count_link_attempt
from app.mail import vote_url

router = APIRouter(
    prefix="/api/v1/vote/{token}", tags=["voting"], dependencies=[Depends(count_link_attempt)]
)


class VoterBallotOut(BaseModel):
    ballot_id: int
    title: str
    organisation: dict[str, str]
    practice: dict[str, str]
    phase: voting.Phase
    opens_at: datetime
    closes_at: datetime
    close_extended_reason: str | None
    questions: list[dict[str, Any]]
    abstain_means: str
    documents: list[dict[str, Any]]
    has_voted: bool
    voted_at: datetime | None
    result: dict[str, Any] | None


OneLine = Annotated[str, Field(max_length=200), AfterValidator(definitions.one_line)]


class CastIn(definitions.Schema):
    """The choices by option name, as the ballot lists them. Unlike the voter pages' forms
    (which post fixed-length option codes), the request's length here follows the names the
    client sends: a client that wants its requests one size pads them itself, e.g. with
    whitespace in the JSON."""

    choices: dict[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=200)]] = (
        Field(max_length=50)
    )
    voter_name: OneLine | None = None
    voter_role: OneLine | None = None


class ReceiptOut(BaseModel):
    """The same length whatever was chosen: the receipt code is always 24 characters."""

    receipt_code: str
    detail: str


class UnsupportedMediaType(errors.AppError):
    status_code = 415


async def json_only(request: Request) -> None:
    """Only JSON: a form on another site can post form or plain-text bodies, never JSON."""
    # async: a header check needs no worker thread, and every cast passes through here.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise UnsupportedMediaType(
            "Send the vote as JSON, with the header Content-Type: application/json."
        )


@router.get("")
def read_ballot(token: str, link: VoterLink, session: SessionDep) -> VoterBallotOut:
    v = voting.view(session, link=link)
    ballot, practice = v.ballot, v.practice
    return VoterBallotOut(
        ballot_id=ballot.id,
        title=ballot.title,
        organisation={"name": ballot.organisation_name, "ods_code": ballot.organisation_ods_code},
        practice={"ods_code": practice.ods_code, "name": practice.name},
        phase=v.phase,
        opens_at=ballot.opens_at,
        closes_at=ballot.closes_at,
        close_extended_reason=ballot.close_extended_reason,
        questions=[q.model_dump(mode="json", exclude={"rules"}) for q in v.questions],
        abstain_means=v.abstain_means,
        documents=[
            {
                "title": d["title"],
                "sha256": d["sha256"],
                "url": f"{vote_url(token)}/documents/{position}",
            }
            for position, d in enumerate(ballot.definition["documents"])
        ],
        has_voted=practice.voted_at is not None,
        voted_at=practice.voted_at,
        result=ballot.result if v.phase is voting.Phase.published else None,
    )


@router.post(
    "",
    dependencies=[Depends(json_only)],
    responses={415: {"description": "The body is not JSON (Content-Type: application/json)"}},
)
async def cast_vote(token: str, body: CastIn, request: Request, session: SessionDep) -> ReceiptOut:
    cast = functools.partial(
        voting.cast,
        session,
        token=token,
        choices=body.choices,
        voter_name=body.voter_name,
        voter_role=body.voter_role,
    )
    if request.app.state.database_is_sqlite:
        # SQLite casts one at a time (the database turn), and the commit already runs here on
        # the event loop. Handing the cast to a worker thread made the turn wait for that
        # thread to get the interpreter back from the loop, and every other cast waited with it.
        code = cast()
    else:
        # PostgreSQL serves many casts at once, each waiting on the network: off the loop. The
        # link is resolved inside the cast, in the same thread as the rest of the transaction.
        code = await run_in_threadpool(cast)
    return ReceiptOut(
        receipt_code=code,
        detail="Your practice's vote has been recorded. Keep this receipt code to check, once "
        "the result is published, that your ballot was counted.",
    )


class DisputeIn(definitions.Schema):
    """A practice's dispute: one paragraph, and whether it says a vote was recorded for the
    practice that it did not cast. Never how anyone voted."""

    text: Annotated[definitions.Text, Field(max_length=disputes.MAX_TEXT)]
    claims_not_voted: bool = False


class DisputeRaisedOut(BaseModel):
    raised_at: datetime
    detail: str


@router.post(
    "/disputes",
    status_code=201,
    dependencies=[Depends(json_only)],
    responses={415: {"description": "The body is not JSON (Content-Type: application/json)"}},
)
def raise_dispute(
    token: str, body: DisputeIn, link: VoterLink, session: SessionDep
) -> DisputeRaisedOut:
    dispute = disputes.raise_from_link(
        session, link=link, text=body.text, claims_not_voted=body.claims_not_voted
    )
    return DisputeRaisedOut(raised_at=dispute.raised_at, detail=disputes.RECEIVED)
