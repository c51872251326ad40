"""The console for those who check: the scrutineer approves what will be frozen and countersigns
the count; the auditor sees the result, the trail and its chain, the register and the box."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app import audit, ballots, proof, roll, scrutiny
from app.deps import AnyStaff, Scrutineer, SessionDep
from app.models import BallotStatus, StaffUser
from app.routes import scrutiny as scrutiny_routes
from app.routes.console import PostedForm, attempt, done, page, text_field
from app.routes.public import published_box

router = APIRouter(prefix="/console/ballots/{ballot_id}", include_in_schema=False)


def _approval_page(
    request: Request, session: SessionDep, user: StaffUser, ballot_id: int, problem: object = None
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "approval.html", user=user, ballot=ballot,
        status_code=getattr(problem, "status_code", 200), problem=problem,
        frozen=scrutiny.what_is_frozen(session, ballot=ballot),
        may_approve=user.username in scrutiny.scrutineers(ballot),
    )  # fmt: skip


@router.get("/approval", response_class=HTMLResponse)
def approval(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    return _approval_page(request, session, user, ballot_id)


@router.post("/approval", response_class=HTMLResponse)
def approve(
    ballot_id: int, request: Request, form: PostedForm, user: Scrutineer, session: SessionDep
) -> Response:
    def change() -> None:
        ballot = ballots.get(session, ballot_id, lock="update")
        scrutiny.approve(session, ballot=ballot, user=user, frozen=text_field(form, "frozen_hash"))

    refused = attempt(session, change)
    if refused:
        return _approval_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "approved")


def _count_page(
    request: Request, session: SessionDep, user: StaffUser, ballot_id: int, problem: object = None
) -> HTMLResponse:
    count = scrutiny_routes.count_to_verify(session, ballot_id, user, lock=None)
    return page(
        request, "countersign.html", user=user, ballot=ballots.get(session, ballot_id),
        status_code=getattr(problem, "status_code", 200), problem=problem, count=count,
    )  # fmt: skip


@router.get("/countersignature", response_class=HTMLResponse)
def count(ballot_id: int, request: Request, user: Scrutineer, session: SessionDep) -> Response:
    return _count_page(request, session, user, ballot_id)


@router.post("/countersignature", response_class=HTMLResponse)
def countersign(
    ballot_id: int, request: Request, form: PostedForm, user: Scrutineer, session: SessionDep
) -> Response:
    def change() -> None:
        current = scrutiny_routes.count_to_verify(session, ballot_id, user, lock="update")
        scrutiny.countersign(
            session, ballot=ballots.get(session, ballot_id), user=user,
            given=text_field(form, "count_hash"), current=current.count_hash,
        )  # fmt: skip

    refused = attempt(session, change)
    if refused:
        return _count_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "countersigned")


@router.get("/audit", response_class=HTMLResponse)
def audit_view(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    """The auditor's view: result, trail and its chain, turnout register, ballot box."""
    ballot = ballots.get(session, ballot_id)
    entries = [audit.as_dict(e) for e in audit.entries(session, ballot=ballot)]
    published = ballot.status in (BallotStatus.published, BallotStatus.voided) and ballot.result
    return page(
        request, "audit.html", user=user, ballot=ballot, entries=entries,
        chain_problem=proof.chain_problem(entries), register=roll.entries(session, ballot=ballot),
        box=published_box(session, ballot) if published else None,
    )  # fmt: skip
