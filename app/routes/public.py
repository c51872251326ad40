"""What anyone may see once a result is published: the result, the ballot box, a receipt check."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from app import ballots, crypto, errors, proof
from app.deps import SessionDep
from app.models import Ballot, BallotStatus, ReceiptMode
from app.routes import templates, vote_pages

router = APIRouter(tags=["public"])

RECEIPT_CHECK_FORM = "receipt-check-form"
_CHECKED_FORM = Depends(
    vote_pages.signed_form(
        RECEIPT_CHECK_FORM,
        "This form has expired; open the ballot's check page again and enter the receipt code.",
    )
)


def _published(session: SessionDep, ballot_id: int) -> Ballot:
    ballot = ballots.get(session, ballot_id)
    if ballot.status != BallotStatus.published:
        raise errors.WrongState(
            f"Ballot {ballot_id} has not published a result yet; nothing is shown before then."
        )
    return ballot


@router.get("/api/v1/ballots/{ballot_id}/results")
def results(ballot_id: int, session: SessionDep) -> dict[str, Any]:
    ballot = _published(session, ballot_id)
    assert ballot.result is not None  # noqa: S101  (set when published)
    return {
        "ballot_id": ballot.id,
        "title": ballot.title,
        "published_at": ballot.published_at,
        **ballot.result,
    }


def published_box(session: SessionDep, ballot: Ballot) -> dict[str, Any]:
    """The box as the receipt mode allows: receipts and choices unlinked, or side by side."""
    return proof.published_box(ballot.receipt_mode, ballots.box_entries(session, ballot=ballot))


@router.get("/api/v1/ballots/{ballot_id}/ballot-box")
def ballot_box(ballot_id: int, session: SessionDep) -> dict[str, Any]:
    return published_box(session, _published(session, ballot_id))


def _check_page(
    request: Request, ballot: Ballot, checked: dict[str, Any] | None = None
) -> HTMLResponse:
    token = vote_pages.form_token(RECEIPT_CHECK_FORM, f"/ballots/{ballot.id}/check")
    return templates.TemplateResponse(
        request, "check.html", {"ballot": ballot, "checked": checked, "form_token": token}
    )


@router.get("/ballots/{ballot_id}/check", response_class=HTMLResponse, include_in_schema=False)
def check_form(ballot_id: int, request: Request, session: SessionDep) -> HTMLResponse:
    return _check_page(request, _published(session, ballot_id))


@router.post(
    "/ballots/{ballot_id}/check",
    response_class=HTMLResponse,
    include_in_schema=False,
    dependencies=[_CHECKED_FORM],
)
def check_receipt(
    ballot_id: int,
    receipt_code: Annotated[str, Form(max_length=64)],
    request: Request,
    session: SessionDep,
) -> HTMLResponse:
    # A POST, so the receipt code never sits in a URL, a log line or a referrer.
    ballot = _published(session, ballot_id)
    wanted = crypto.normalise_receipt_code(receipt_code)
    found = next(
        (e for e in ballots.ballot_box(session, ballot=ballot) if e.receipt_code == wanted), None
    )
    show_choices = ballot.receipt_mode == ReceiptMode.receipt_with_choices
    return _check_page(
        request,
        ballot,
        {"found": found is not None, "choices": found.choices if found and show_choices else None},
    )
