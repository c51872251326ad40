"""Voter pages: plain HTML forms that need no JavaScript; answers travel only in POSTed fields.

The journey: the start page, one page per question, who is submitting (optional), check your
answers (each can be changed), submit, the receipt. Every form carries a signed token bound to
the address it posts to; an answer travels as its option's position code, and the check page pads
the option shown, so neither a request nor a page differs in size by the option chosen.
"""

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape
from starlette.datastructures import FormData

from app import ballots, clock, crypto, definitions, disputes, errors, voting
from app.deps import SessionDep, VoterLink, count_link_attempt
from app.routes import templates

router = APIRouter(
    prefix="/vote/{token}", include_in_schema=False, dependencies=[Depends(count_link_attempt)]
)

FORM_FIELD = "form_token"
FORM_MAX_AGE = timedelta(hours=2)
VOTE_FORM = "vote-form"


class FormExpired(errors.Forbidden):
    """A form without our token, for another address, or too old: refused, nothing changed."""


def form_token(purpose: str, action: str) -> str:
    """The hidden field of a form posting to `action`, dated by the one clock."""
    return crypto.signer(purpose).dumps([_digest(action), int(clock.now().timestamp())])


def check_form_token(form: FormData, *, purpose: str, action: str, detail: str) -> None:
    value = form.get(FORM_FIELD)
    if not isinstance(value, str):
        raise FormExpired(detail)
    max_age = int(FORM_MAX_AGE.total_seconds())
    try:
        # itsdangerous dates the signature by the system's time, the payload by the one clock
        # (which tests move); in service they agree.
        bound, issued = crypto.load_signed(purpose, value, max_age_seconds=max_age)
        age = clock.now().timestamp() - float(issued)
    except (crypto.SignedValueInvalid, TypeError, ValueError):
        raise FormExpired(detail) from None
    # A minute's grace for servers whose clocks differ a little.
    if bound != _digest(action) or not -60 <= age <= max_age:
        raise FormExpired(detail)


def _digest(action: str) -> str:
    return hashlib.sha256(action.encode()).hexdigest()[:32]


def signed_form(purpose: str, detail: str) -> Callable[[Request], AsyncIterator[FormData]]:
    """A dependency: the posted form, once its token is checked against the address posted to;
    any files uploaded with it are closed when the request is done."""

    async def read(request: Request) -> AsyncIterator[FormData]:
        async with request.form() as form:
            check_form_token(form, purpose=purpose, action=request.url.path, detail=detail)
            yield form

    return read


# Parsed and checked before the route runs (before the link is even looked up), so the routes
# stay synchronous and the database work stays off the event loop.
PostedForm = Annotated[
    FormData,
    Depends(
        signed_form(
            VOTE_FORM, "This form has expired; go back to your voting link and start again."
        )
    ),
]


def option_code(position: int) -> str:
    """What a radio button posts for an option: o01, o02, …, the same length for every option."""
    return f"o{position + 1:02d}"


def padding(options: list[str], chosen: str) -> Markup:
    """An HTML comment that brings the option shown to the byte length of the longest."""

    def size(option: str) -> int:
        return len(str(escape(option)).encode())

    return Markup(f"<!--{' ' * (max(map(size, options)) - size(chosen))}-->")  # noqa: S704


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.update(option_code=option_code, padding=padding)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _forms(token: str, *actions: str) -> dict[str, str]:
    return {a: form_token(VOTE_FORM, f"/vote/{token}/{a}") for a in actions}


@dataclass(frozen=True)
class Answers:
    """What the voter has given so far, as it travels in the posted fields."""

    choices: dict[str, str]
    voter_name: str = ""
    voter_role: str = ""


def _answers(form: FormData | None, questions: list[definitions.Question]) -> Answers:
    """The choices posted as option codes, by option; a code that is no option becomes "", which
    no option is, so the check refuses it without echoing what was sent."""
    if form is None:
        return Answers({})
    options = {q.id: q.options for q in questions}
    choices = {}
    for key, value in form.multi_items():
        if key.startswith("q_") and isinstance(value, str):
            qid = key.removeprefix("q_")
            codes = {option_code(i): o for i, o in enumerate(options.get(qid, []))}
            choices[qid] = codes.get(value, "")
    name, role = form.get("voter_name", ""), form.get("voter_role", "")
    return Answers(
        choices, name if isinstance(name, str) else "", role if isinstance(role, str) else ""
    )


# HEAD too: mail link scanners probe links with it, and it must answer without consuming.
@router.api_route("", methods=["GET", "HEAD"], response_class=HTMLResponse)
def start(token: str, link: VoterLink, request: Request, session: SessionDep) -> HTMLResponse:
    v = voting.view(session, link=link)
    if _can_vote(v):
        return _page(request, "vote_start.html", v=v, token=token)
    return _status(request, v, token)


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


def _status(request: Request, v: voting.VoterView, token: str) -> HTMLResponse:
    """Already voted, not yet open, closed, published or void: what the link can do now."""
    return _page(request, "vote_status.html", v=v, token=token, can_dispute=disputes.can_raise(v))


# The step after the questions: who is submitting, which is optional.
WHO = "who"


def _question_page(
    request: Request,
    v: voting.VoterView,
    token: str,
    answers: Answers,
    *,
    position: int,
    back_to_check: bool,
    problem: str | None = None,
) -> HTMLResponse:
    """One question; the other answers ride along in hidden fields."""
    question = v.questions[position]
    return _page(
        request,
        "vote_question.html",
        status_code=422 if problem else 200,
        v=v,
        token=token,
        forms=_forms(token, "choices"),
        question=question,
        position=position,
        chosen=answers.choices.get(question.id),
        # The hidden fields: every answer but this question's, which its radios carry.
        choices={k: c for k, c in answers.choices.items() if k != question.id},
        voter_name=answers.voter_name,
        voter_role=answers.voter_role,
        then="check" if back_to_check else "next",
        problem=problem,
    )


def _who_page(request: Request, v: voting.VoterView, token: str, answers: Answers) -> HTMLResponse:
    return _page(
        request,
        "vote_who.html",
        v=v,
        token=token,
        forms=_forms(token, "check", "choices"),
        choices=answers.choices,
        voter_name=answers.voter_name,
        voter_role=answers.voter_role,
    )


def _check_page(
    request: Request, v: voting.VoterView, token: str, answers: Answers
) -> HTMLResponse:
    """Check your answers; a question not (or wrongly) answered is shown again, with its error."""
    try:
        voting.check_choices(v.questions, answers.choices)
    except errors.InvalidInput as exc:
        positions = {f"choices.{q.id}": n for n, q in enumerate(v.questions)}
        found = [
            (positions[p["loc"]], p["problem"]) for p in exc.problems or [] if p["loc"] in positions
        ]
        if not found:  # an answer to no question on this ballot: nothing to show it on
            raise
        position, problem = min(found)
        return _question_page(
            request, v, token, answers, position=position, back_to_check=True, problem=problem
        )
    return _page(
        request,
        "vote_check.html",
        v=v,
        token=token,
        forms=_forms(token, "choices", "submit"),
        choices=answers.choices,
        voter_name=answers.voter_name,
        voter_role=answers.voter_role,
    )


@router.get("/choices", response_class=HTMLResponse)
def first_question(
    token: str, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    v = voting.view(session, link=link)
    if not _can_vote(v):
        return _status(request, v, token)
    return _question_page(request, v, token, Answers({}), position=0, back_to_check=False)


@router.post("/choices", response_class=HTMLResponse)
def next_step(
    token: str, form: PostedForm, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    """A question answered (the next step), or a change asked for on the check page."""
    v = voting.view(session, link=link)
    # A re-posted form (the back button) must not offer a vote that can no longer be cast.
    if not _can_vote(v):
        return _status(request, v, token)
    answers = _answers(form, v.questions)
    ids = [q.id for q in v.questions]
    change, shown, back = form.get("change"), form.get("question"), form.get("back")
    if back in ids:
        # The back link of a question (or of who is submitting): the one before, answers kept.
        position = ids.index(str(back))
        return _question_page(request, v, token, answers, position=position, back_to_check=False)
    if change == WHO:
        return _who_page(request, v, token, answers)
    if change in ids:
        position = ids.index(str(change))
        return _question_page(request, v, token, answers, position=position, back_to_check=True)
    if shown not in ids:
        # The whole set again from the first question, the answers kept.
        return _question_page(request, v, token, answers, position=0, back_to_check=False)
    position = ids.index(str(shown))
    back_to_check = form.get("then") == "check"
    question = v.questions[position]
    try:
        voting.check_choices([question], {question.id: answers.choices.get(question.id, "")})
    except errors.InvalidInput as exc:
        problem = (exc.problems or [{"problem": ""}])[0]["problem"]
        if question.id not in answers.choices:
            problem = "answer this question (Abstain is an answer)"
        return _question_page(
            request,
            v,
            token,
            answers,
            position=position,
            back_to_check=back_to_check,
            problem=problem,
        )
    if back_to_check:
        return _check_page(request, v, token, answers)
    if position + 1 < len(ids):
        return _question_page(
            request, v, token, answers, position=position + 1, back_to_check=False
        )
    return _who_page(request, v, token, answers)


@router.post("/check", response_class=HTMLResponse)
def check_answers(
    token: str, form: PostedForm, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    v = voting.view(session, link=link)
    if not _can_vote(v):
        return _status(request, v, token)
    return _check_page(request, v, token, _answers(form, v.questions))


@router.post("/submit", response_class=HTMLResponse)
def submit(token: str, form: PostedForm, request: Request, session: SessionDep) -> HTMLResponse:
    link = voting.resolve(session, token)
    # The codes are read against the ballot's questions; the cast checks the answers again.
    answers = _answers(form, voting.view(session, link=link).questions)
    receipt_code = voting.cast(
        session,
        token=token,
        choices=answers.choices,
        voter_name=answers.voter_name,
        voter_role=answers.voter_role,
    )
    v = voting.view(session, link=link)
    return _page(request, "vote_receipt.html", v=v, token=token, receipt_code=receipt_code)


def _dispute_page(
    request: Request,
    v: voting.VoterView,
    token: str,
    *,
    text: str = "",
    claims_not_voted: bool = False,
    problem: str | None = None,
) -> HTMLResponse:
    return _page(
        request,
        "vote_dispute.html",
        status_code=422 if problem else 200,
        v=v,
        token=token,
        forms=_forms(token, "dispute"),
        text=text,
        claims_not_voted=claims_not_voted,
        problem=problem,
    )


@router.get("/dispute", response_class=HTMLResponse)
def dispute_form(
    token: str, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    v = voting.view(session, link=link)
    if not disputes.can_raise(v):
        return _status(request, v, token)
    return _dispute_page(request, v, token)


@router.post("/dispute", response_class=HTMLResponse)
def raise_dispute(
    token: str, form: PostedForm, link: VoterLink, request: Request, session: SessionDep
) -> HTMLResponse:
    v = voting.view(session, link=link)
    if not disputes.can_raise(v):
        return _status(request, v, token)
    posted = form.get("text")
    text = posted.strip() if isinstance(posted, str) else ""
    # Only a practice recorded as voted can say a vote was recorded that it did not cast.
    claims = form.get("claims_not_voted") == "yes" and v.practice.voted_at is not None
    problem = None
    if not text:
        problem = "Say what the dispute is about"
    elif len(text) > disputes.MAX_TEXT:
        problem = f"The dispute must be {disputes.MAX_TEXT:,} characters or fewer"
    else:
        try:
            definitions.running_text(text)
        except ValueError:
            problem = "The dispute must be plain text, without control characters"
    if problem is not None:
        return _dispute_page(
            request, v, token, text=text[: disputes.MAX_TEXT], claims_not_voted=claims,
            problem=problem,
        )  # fmt: skip
    dispute = disputes.raise_from_link(session, link=link, text=text, claims_not_voted=claims)
    return _page(
        request,
        "vote_dispute_done.html",
        v=v,
        token=token,
        raised_at=dispute.raised_at,
        received=disputes.RECEIVED,
    )
