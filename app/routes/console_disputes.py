"""The console's record of challenges: disputes recorded by the secretariat (or raised by a
practice from its link), and voiding a ballot, which the secretariat proposes and a named
scrutineer confirms."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from app import ballots, disputes, errors, staff, voiding
from app.deps import AnyStaff, Secretariat, SessionDep, VoidParty
from app.models import StaffUser
from app.routes.console import PostedForm, attempt, done, page, reason_field, text_field

router = APIRouter(prefix="/console/ballots/{ballot_id}", include_in_schema=False)


def _disputes_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "disputes.html", user=user, ballot=ballot,
        problem=problem,
        disputes=disputes.list_for(session, ballot=ballot), values=values or {},
    )  # fmt: skip


@router.get("/disputes", response_class=HTMLResponse)
def dispute_list(
    ballot_id: int, request: Request, user: AnyStaff, session: SessionDep
) -> HTMLResponse:
    return _disputes_page(request, session, user, ballot_id)


@router.post("/disputes", response_class=HTMLResponse)
def record_dispute(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    values = {k: text_field(form, k) for k in ("ods_code", "text")}
    refused = attempt(
        session,
        lambda: disputes.record_by_secretariat(
            session, ballot=ballots.get(session, ballot_id), text=values["text"],
            actor=staff.actor(user), ods_code=values["ods_code"].upper() or None,
            claims_not_voted=form.get("claims_not_voted") == "yes",
        ),
    )  # fmt: skip
    if refused:
        return _disputes_page(request, session, user, ballot_id, refused, values)
    return done(ballot_id, "dispute")


def _void_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "void.html", user=user, ballot=ballot,
        problem=problem,
        pending=voiding.pending(session, ballot=ballot), values={},
        action=f"/console/ballots/{ballot_id}/void",
    )  # fmt: skip


@router.get("/void", response_class=HTMLResponse)
def void_form(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    return _void_page(request, session, user, ballot_id)


@router.post("/void", response_class=HTMLResponse)
def propose_void(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: voiding.propose(session, ballot_id=ballot_id, reason=reason_field(form), user=user),
    )
    if refused:
        return _void_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "void_proposed")


def _proposal(form: PostedForm) -> int:
    value = text_field(form, "proposal_id")
    if not value.isdigit():
        raise errors.InvalidInput("The proposal to act on is missing: reload the page.")
    return int(value)


@router.post("/void/confirm", response_class=HTMLResponse)
def confirm_void(
    ballot_id: int, request: Request, form: PostedForm, user: VoidParty, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: voiding.confirm(
            session, ballot_id=ballot_id, proposal_id=_proposal(form), user=user
        ),
    )
    if refused:
        return _void_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "voided")


@router.post("/void/withdraw", response_class=HTMLResponse)
def withdraw_void(
    ballot_id: int, request: Request, form: PostedForm, user: VoidParty, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: voiding.withdraw(
            session, ballot_id=ballot_id, proposal_id=_proposal(form), user=user
        ),
    )
    if refused:
        return _void_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "void_withdrawn")
