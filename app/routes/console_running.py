"""The console while a ballot runs and after: turnout, a new link, reminders, extending, closing,
opening the sealed box and publishing. Every one of them asks first."""

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app import ballots, clock, errors, roll, sealed_box, staff, tally_key, turnout
from app.deps import AnyStaff, Secretariat, SessionDep
from app.models import BallotStatus
from app.routes.console import (
    PostedForm,
    attempt,
    confirm_page,
    done,
    london_time,
    page,
    reason_field,
    uploads,
)

router = APIRouter(prefix="/console/ballots/{ballot_id}", include_in_schema=False)


@router.get("/turnout", response_class=HTMLResponse)
def turnout_page(
    ballot_id: int, request: Request, user: AnyStaff, session: SessionDep
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    until = min(ballot.closed_at or clock.now(), ballot.closes_at)
    figures = turnout.figures(
        roll.entries(session, ballot=ballot), since=ballot.opened_at, until=until
    )
    return page(
        request, "turnout.html", user=user, ballot=ballot, turnout=figures,
        can_act=user.role == "secretariat" and ballot.status == BallotStatus.open,
    )  # fmt: skip


@router.get("/practices/{ods_code}/reissue", response_class=HTMLResponse)
def reissue_form(
    ballot_id: int, ods_code: str, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    practice = roll.entry(session, ballot=ballots.get(session, ballot_id), ods_code=ods_code)
    return confirm_page(
        request, session, user, ballot_id, f"practices/{practice.ods_code}/reissue",
        template="reissue", practice=practice,
    )  # fmt: skip


@router.post("/practices/{ods_code}/reissue", response_class=HTMLResponse)
def reissue(
    ballot_id: int,
    ods_code: str,
    request: Request,
    _form: PostedForm,
    user: Secretariat,
    session: SessionDep,
) -> Response:
    ballot = ballots.get(session, ballot_id)
    refused = attempt(
        session,
        lambda: roll.reissue(session, ballot=ballot, ods_code=ods_code, actor=staff.actor(user)),
    )
    if refused:
        practice = roll.entry(session, ballot=ballots.get(session, ballot_id), ods_code=ods_code)
        return confirm_page(
            request, session, user, ballot_id, f"practices/{ods_code}/reissue",
            template="reissue", practice=practice, problem=refused,
        )  # fmt: skip
    return done(ballot_id, "reissued")


def _not_voted(session: SessionDep, ballot_id: int) -> int:
    entries = roll.entries(session, ballot=ballots.get(session, ballot_id))
    return sum(1 for e in entries if e.voted_at is None)


@router.get("/reminders", response_class=HTMLResponse)
def reminders_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    return confirm_page(
        request, session, user, ballot_id, "reminders", waiting=_not_voted(session, ballot_id)
    )


@router.post("/reminders", response_class=HTMLResponse)
def send_reminders(
    ballot_id: int, request: Request, _form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    ballot = ballots.get(session, ballot_id)
    refused = attempt(session, lambda: roll.remind(session, ballot=ballot, actor=staff.actor(user)))
    if refused:
        return confirm_page(
            request, session, user, ballot_id, "reminders", problem=refused,
            waiting=_not_voted(session, ballot_id),
        )  # fmt: skip
    return done(ballot_id, "reminders")


@router.get("/extend", response_class=HTMLResponse)
def extend_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    return confirm_page(request, session, user, ballot_id, "extend", values={})


@router.post("/extend", response_class=HTMLResponse)
def extend(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    def change() -> None:
        closes_at = london_time(form, "closes_at", label="New closing time")
        if closes_at is None:
            raise errors.InvalidInput(
                "Enter the new closing time.",
                problems=[{"loc": "closes_at", "problem": "enter the new closing time"}],
            )
        ballots.extend_close(
            session, ballot_id=ballot_id, closes_at=closes_at, reason=reason_field(form),
            actor=staff.actor(user),
        )  # fmt: skip

    refused = attempt(session, change)
    if refused:
        values = {k: str(form.get(k, "")) for k in ("closes_at", "reason")}
        return confirm_page(
            request, session, user, ballot_id, "extend", problem=refused, values=values
        )
    return done(ballot_id, "extended")


@router.get("/close", response_class=HTMLResponse)
def close_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    return confirm_page(
        request, session, user, ballot_id, "close", waiting=_not_voted(session, ballot_id)
    )


@router.post("/close", response_class=HTMLResponse)
def close(
    ballot_id: int, request: Request, _form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: ballots.close_ballot(session, ballot_id=ballot_id, actor=staff.actor(user)),
    )
    if refused:
        return confirm_page(
            request, session, user, ballot_id, "close", problem=refused,
            waiting=_not_voted(session, ballot_id),
        )  # fmt: skip
    return done(ballot_id, "closed")


@router.get("/tally-open", response_class=HTMLResponse)
def tally_open_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    return confirm_page(request, session, user, ballot_id, "tally-open", template="tally_open")


@router.post("/tally-open", response_class=HTMLResponse)
def tally_open(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    def change() -> None:
        files = uploads(form, "shares")
        if not files:
            raise errors.InvalidInput(
                "Choose the key holders' share files (at least as many as the key needs).",
                problems=[{"loc": "shares", "problem": "choose the share files"}],
            )
        shares = []
        for n, f in enumerate(files, 1):
            try:
                data = json.loads(f.file.read(64 * 1024))
            except ValueError:
                raise errors.InvalidInput(
                    f"{f.filename or f'File {n}'} is not a share file written by "
                    "`mandate tally-key new`.",
                    problems=[{"loc": "shares", "problem": f"file {n} is not a share file"}],
                ) from None
            shares.append(tally_key.parse_share(data, name=f.filename or f"Share {n}"))
        sealed_box.open_box(session, ballot_id=ballot_id, shares=shares, actor=staff.actor(user))

    refused = attempt(session, change)
    if refused:
        return confirm_page(
            request, session, user, ballot_id, "tally-open", template="tally_open",
            problem=refused,
        )  # fmt: skip
    return done(ballot_id, "box_opened")


@router.get("/publish", response_class=HTMLResponse)
def publish_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    result = ballots.count(session, ballot=ballot) if ballot.box_opened_at else None
    return confirm_page(request, session, user, ballot_id, "publish", result=result)


@router.post("/publish", response_class=HTMLResponse)
def publish(
    ballot_id: int, request: Request, _form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    refused = attempt(
        session, lambda: ballots.publish(session, ballot_id=ballot_id, actor=staff.actor(user))
    )
    if refused:
        return confirm_page(
            request, session, user, ballot_id, "publish", problem=refused, result=None
        )
    return done(ballot_id, "published")
