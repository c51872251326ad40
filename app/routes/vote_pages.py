"""Voter pages: plain HTML forms, no JavaScript; answers travel only in POSTed fields."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from app import ballots, errors, voting
from app.deps import SessionDep, VoterLink
from app.routes import templates

router = APIRouter(prefix="/vote/{token}", include_in_schema=False)


async def _read_form(request: Request) -> FormData:
    return await request.form()


# Parsed before the route runs, so the routes stay synchronous and the database work stays
# off the event loop.
PostedForm = Annotated[FormData, Depends(_read_form)]


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _answers(form: FormData) -> tuple[dict[str, str], str, str]:
    choices = {
        key.removeprefix("q_"): value
        for key, value in form.multi_items()
        if key.startswith("q_") and isinstance(value, str)
    }
    name, role = form.get("voter_name", ""), form.get("voter_role", "")
    return choices, name if isinstance(name, str) else "", role if isinstance(role, str) else ""


# HEAD too: mail link scanners probe links with it, and it must answer without consuming.
@router.api_route("", methods=["GET", "HEAD"], response_class=HTMLResponse)
def start(token: str, link: VoterLink, request: Request, session: SessionDep) -> HTMLResponse:
    v = voting.view(session, link=link)
    if v.phase is voting.Phase.open and v.practice.voted_at is None:
        return _page(request, "vote_start.html", v=v, token=token)
    return _page(request, "vote_status.html", v=v, token=token)


@router.get("/documents/{position}")
def document(position: int, link: VoterLink, session: SessionDep) -> Response:
    ballot = ballots.get(session, link.roll_entry.ballot_id)
    found = ballots.document(session, ballot=ballot, position=position)
    return Response(
        found.content,
        media_type=found.media_type,
        headers={"Content-Disposition": f'inline; filename="{found.filename}"'},
    )


def _can_vote(v: voting.VoterView) -> bool:
    return v.phase is voting.Phase.open and v.practice.voted_at is None


def _choices_page(
    request: Request,
    v: voting.VoterView,
    token: str,
    form: FormData | None,
    status_code: int = 200,
    problems: list[dict[str, Any]] | None = None,
) -> HTMLResponse:
    choices, name, role = _answers(form) if form is not None else ({}, "", "")
    if not _can_vote(v):
        return _page(request, "vote_status.html", v=v, token=token)
    return _page(
        request,
        "vote_choices.html",
        status_code=status_code,
        v=v,
        token=token,
        choices=choices,
        voter_name=name,
        voter_role=role,
        problems=problems or [],
    )


@router.get("/choices", response_class=HTMLResponse)
def choices_form(
    token: str, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    return _choices_page(request, voting.view(session, link=link), token, None)


@router.post("/choices", response_class=HTMLResponse)
def change_choices(
    token: str, link: VoterLink, form: PostedForm, request: Request, session: SessionDep
) -> HTMLResponse:
    return _choices_page(request, voting.view(session, link=link), token, form)


@router.post("/check", response_class=HTMLResponse)
def check_answers(
    token: str, link: VoterLink, form: PostedForm, request: Request, session: SessionDep
) -> HTMLResponse:
    v = voting.view(session, link=link)
    # A re-posted form (the back button) must not offer a vote that can no longer be cast.
    if not _can_vote(v):
        return _page(request, "vote_status.html", v=v, token=token)
    choices, name, role = _answers(form)
    try:
        voting.check_choices(v.questions, choices)
    except errors.InvalidInput as exc:
        return _choices_page(request, v, token, form, status_code=422, problems=exc.problems)
    return _page(
        request,
        "vote_check.html",
        v=v,
        token=token,
        choices=choices,
        voter_name=name,
        voter_role=role,
    )


@router.post("/submit", response_class=HTMLResponse)
def submit(token: str, form: PostedForm, request: Request, session: SessionDep) -> HTMLResponse:
    choices, name, role = _answers(form)
    receipt_code = voting.cast(
        session, token=token, choices=choices, voter_name=name, voter_role=role
    )
    v = voting.view(session, link=voting.resolve(session, token))
    return _page(request, "vote_receipt.html", v=v, token=token, receipt_code=receipt_code)
