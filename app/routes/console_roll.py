"""The console's view of the roll beyond its upload: the check against the national list, and
add-only corrections while a ballot is open (the secretariat proposes, the scrutineer approves)."""

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import ballots, errors, national_list, roll, roll_corrections, staff
from app.deps import AnyStaff, Scrutineer, Secretariat, SessionDep
from app.models import StaffUser
from app.routes.console import PostedForm, attempt, done, page, reason_field, text_field

router = APIRouter(prefix="/console/ballots/{ballot_id}", include_in_schema=False)

_ADDITION_FIELDS = ("ods_code", "name", "locality", "list_size", "emails", "reason")


@router.get("/roll-check", response_class=HTMLResponse)
def roll_check(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "roll_check.html", user=user, ballot=ballot,
        check=national_list.check(session, ballot=ballot),
    )  # fmt: skip


def _additions_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "additions.html", user=user, ballot=ballot,
        problem=problem,
        additions=roll_corrections.additions(session, ballot=ballot), values=values or {},
    )  # fmt: skip


@router.get("/additions", response_class=HTMLResponse)
def additions(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    return _additions_page(request, session, user, ballot_id)


def _row(values: dict[str, str]) -> roll.RollRow:
    try:
        return roll.RollRow.model_validate({k: values[k] for k in _ADDITION_FIELDS[:-1]})
    except ValidationError as exc:
        problems = [{**p, "field": p["loc"]} for p in errors.problems_from_validation(exc.errors())]
        raise errors.InvalidInput(
            "The practice was not proposed: " + errors.describe_problems(problems),
            problems=problems,
        ) from None


@router.post("/additions", response_class=HTMLResponse)
def propose_addition(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    values = {k: text_field(form, k) for k in _ADDITION_FIELDS}

    def change() -> None:
        row, reason = _row(values), reason_field(form)
        roll_corrections.propose_addition(
            session, ballot=ballots.get(session, ballot_id, lock="update"), row=row,
            reason=reason, actor=staff.actor(user),
        )  # fmt: skip

    refused = attempt(session, change)
    if refused:
        return _additions_page(request, session, user, ballot_id, refused, values)
    return done(ballot_id, "addition_proposed")


@router.post("/additions/{number}/approve", response_class=HTMLResponse)
def approve_addition(
    ballot_id: int,
    number: int,
    request: Request,
    _form: PostedForm,
    user: Scrutineer,
    session: SessionDep,
) -> Response:
    refused = attempt(
        session,
        lambda: roll_corrections.approve_addition(
            session, ballot=ballots.get(session, ballot_id, lock="update"), number=number,
            user=user,
        ),
    )  # fmt: skip
    if refused:
        return _additions_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "addition_approved")
