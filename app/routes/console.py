"""The staff console: sign in, the ballots, creating one, its roll, tally key and notice, and
opening it. Plain HTML forms that work without JavaScript; each posts a signed form token, and
each action that cannot be undone asks first and says what will happen.

The running ballot (turnout, reminders, close, publish), the scrutineer's pages and the auditor's
view, disputes and voiding, and the roll's check and corrections are in console_running.py,
console_review.py, console_disputes.py and console_roll.py; they share the helpers here.
"""

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from app import ballots, clock, definitions, errors, limits, roll, sealed_box, staff
from app.deps import AnyStaff, Secretariat, SessionDep, SessionToken
from app.models import BallotStatus, Role, StaffUser
from app.routes import auth, templates, vote_pages

router = APIRouter(prefix="/console", include_in_schema=False)

CONSOLE_FORM = "console-form"
PostedForm = Annotated[
    FormData,
    Depends(
        vote_pages.signed_form(
            CONSOLE_FORM, "This form has expired; go back, reload the page and try again."
        )
    ),
]

# What the ballot page says after an action, by the `done` it is sent back with.
DONE = {
    "created": "The ballot was created as a draft. Upload its roll next.",
    "roll": "The roll was loaded.",
    "tally_key": "The tally key was set: every ballot will be sealed to it.",
    "notice": "The notice of ballot is queued to every address on the roll.",
    "approved": "You approved the ballot as it will be frozen.",
    "opened": "Voting is open and the invitations are queued.",
    "reminders": "Reminders are queued to the practices that have not voted.",
    "reissued": "A new link is queued to the practice; its old link no longer works.",
    "extended": "The closing time was extended and every practice will be told.",
    "closed": "Voting is closed and every practice will be told whether it is recorded as voted.",
    "box_opened": "The ballot box was opened and counted.",
    "countersigned": "You countersigned the count.",
    "published": "The result is published.",
    "dispute": "The dispute was recorded. It will be listed in the declaration.",
    "void_proposed": "The proposal to void the ballot waits for the scrutineer to confirm it.",
    "voided": "The ballot is void. A new declaration says so, and why.",
    "void_withdrawn": "The proposal to void the ballot was withdrawn.",
    "attestation_key": "Your countersigning key was registered.",
    "attested": "Your countersignature was recorded in the trail and the bundle.",
    "addition_proposed": "The practice is proposed for the roll: the scrutineer approves it.",
    "addition_approved": "The practice is on the roll and its voting link is on its way.",
}

STATUS_COLOURS = {
    BallotStatus.draft: "grey",
    BallotStatus.open: "green",
    BallotStatus.closed: "orange",
    BallotStatus.published: "blue",
    BallotStatus.voided: "red",
}


def page(
    request: Request,
    name: str,
    *,
    user: StaffUser | None,
    problem: errors.AppError | None = None,
    **context: Any,
) -> HTMLResponse:
    """A console page, with its header's account links and a form token for each form; a
    refusal shown on it (`problem`) gives the page its status."""
    account = (
        [
            {"text": f"{user.username} ({user.role})", "icon": True},
            {"text": "Sign out", "action": "/console/sign-out"},
        ]
        if user
        else None
    )
    context.update(
        user=user,
        problem=problem,
        service="Ballot console",
        service_href="/console",
        account=account,
        colours=STATUS_COLOURS,
        form_token=lambda action: vote_pages.form_token(CONSOLE_FORM, action),
    )
    status = problem.status_code if problem else 200
    return templates.TemplateResponse(request, f"console/{name}", context, status_code=status)


def done(ballot_id: int, what: str) -> RedirectResponse:
    """After a change, back to the ballot (post, redirect, get), saying what was done."""
    return RedirectResponse(f"/console/ballots/{ballot_id}?done={what}", status_code=303)


def attempt(session: Session, change: Callable[[], object]) -> errors.AppError | None:
    """Make a change; a refusal undoes anything it began and is returned to show on the page."""
    try:
        change()
        session.flush()
    except errors.AppError as exc:
        session.rollback()
        return exc
    return None


def text_field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def uploads(form: FormData, name: str) -> list[UploadFile]:
    """The files posted in a field; a browser posts one empty part when none was chosen."""
    return [f for f in form.getlist(name) if isinstance(f, UploadFile) and f.filename]


_REASON = TypeAdapter(definitions.Reason)


def reason_field(form: FormData, name: str = "reason") -> str:
    try:
        return _REASON.validate_python(text_field(form, name))
    except ValidationError:
        raise errors.InvalidInput(
            "Give the reason in one line of at most 500 characters.",
            problems=[{"loc": name, "problem": "give the reason in one line (500 characters)"}],
        ) from None


def london_time(form: FormData, name: str, *, label: str) -> datetime | None:
    """A date and time typed as UK time (a datetime-local field), or None when left empty."""
    value = text_field(form, name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=clock.LONDON)
    except ValueError:
        raise errors.InvalidInput(
            f"{label}: enter a date and time, for example 2026-12-07T09:00.",
            problems=[{"loc": name, "problem": "enter a date and time, like 2026-12-07T09:00"}],
        ) from None


# -- signing in --------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request) -> HTMLResponse:
    return page(request, "sign_in.html", user=None)


@router.post("/sign-in", response_class=HTMLResponse)
def sign_in(
    request: Request, form: PostedForm, previous: SessionToken, session: SessionDep
) -> Response:
    username = text_field(form, "username")
    limits.check(limits.SIGN_IN_ADDRESS, limits.address_of(request), doing="sign in from here")
    limits.check(limits.SIGN_IN_ACCOUNT, username.lower(), doing="sign in")
    password = form.get("password", "")
    try:
        token = staff.sign_in(
            session,
            username=username,
            password=password if isinstance(password, str) else "",
            otp=text_field(form, "otp") or None,
            replacing=previous,
        )
    except errors.NotAuthenticated:
        return page(
            request,
            "sign_in.html",
            user=None,
            username=username,
            problem=errors.NotAuthenticated(
                "The username, password or authenticator code is not right. Check them and "
                "try again."
            ),
        )
    response = RedirectResponse("/console", status_code=303)
    auth.set_session_cookie(response, token)
    return response


@router.post("/sign-out")
def sign_out(token: SessionToken, session: SessionDep) -> Response:
    # No form token: the header's sign-out button is a bare form, and a forged sign-out harms
    # nobody; the cookie's SameSite=Strict and the Origin check still apply.
    if token:
        # Already ended: signing out again is not an error.
        with contextlib.suppress(errors.NotAuthenticated):
            staff.sign_out(session, token)
    response = RedirectResponse("/console/sign-in", status_code=303)
    auth.clear_session_cookie(response)
    return response


# -- ballots -----------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def ballot_list(request: Request, user: AnyStaff, session: SessionDep) -> HTMLResponse:
    return page(request, "ballots.html", user=user, ballots=ballots.list_all(session))


@router.get("/ballots/new", response_class=HTMLResponse)
def new_ballot(request: Request, user: Secretariat) -> HTMLResponse:
    return page(request, "new.html", user=user, values={})


@router.post("/ballots/new/file", response_class=HTMLResponse)
def create_from_file(
    request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    try:
        definition = _uploaded_definition(form)
    except errors.AppError as exc:
        return page(request, "new.html", user=user, problem=exc, values={}, which="file")
    ballot = ballots.create(session, definition=definition, actor=staff.actor(user))
    return done(ballot.id, "created")


def _uploaded_definition(form: FormData) -> definitions.BallotDefinition:
    files = uploads(form, "ballot_file")
    if not files:
        raise errors.InvalidInput(
            "Choose the ballot file (.toml) to upload.",
            problems=[{"loc": "ballot_file", "problem": "choose the ballot file"}],
        )
    try:
        text = files[0].file.read().decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidInput("The ballot file must be saved as UTF-8.") from None
    attached = {f.filename: f.file.read() for f in uploads(form, "documents")}
    times = {
        key: at
        for key, label in (("opens_at", "Voting opens"), ("closes_at", "Voting closes"))
        if (at := london_time(form, key, label=label)) is not None
    }
    return definitions.parse_ballot_file(
        text,
        name=files[0].filename or "the ballot file",
        # The roll is uploaded on the ballot's own page, so a file's `roll` is not read here.
        replace={**times, "roll": None},
        attachment=lambda name: attached.get(name.rsplit("/", 1)[-1]),
        missing="among the documents uploaded",
    )


@router.post("/ballots/new/form", response_class=HTMLResponse)
def create_from_form(
    request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    values = {k: text_field(form, k) for k in _FORM_FIELDS}
    try:
        definition = definitions.parse_definition(_definition_of(form, values))
    except errors.AppError as exc:
        problem = _in_form_words(exc)
        return page(request, "new.html", user=user, problem=problem, values=values, which="form")
    ballot = ballots.create(session, definition=definition, actor=staff.actor(user))
    return done(ballot.id, "created")


# Where a definition's problem is on the form, and its label there.
_ON_FORM = {
    "reference": ("reference", "Reference"),
    "title": ("title", "Title"),
    "organisation.name": ("organisation_name", "Organisation"),
    "organisation.ods_code": ("organisation_ods_code", "Organisation ODS code"),
    "organisation.contact": ("contact", "Who practices contact"),
    "opens_at": ("opens_at", "Voting opens"),
    "closes_at": ("closes_at", "Voting closes"),
    "questions[0].text": ("question_1", "Question 1"),
    "questions[1].text": ("question_2", "Question 2"),
    "rules.constitution_ref": ("constitution_ref", "Constitution reference"),
    "rules.quorum.fraction": ("quorum", "Quorum"),
    "governance.scrutineer_accounts[0]": ("scrutineer_account", "Scrutineer's username"),
}
# The validator's words, as a person filling in the form would need them.
_PLAIN = {
    "String should have at least 1 character": "enter it",
    "must not be blank": "enter it",
    "Input should be a valid datetime": "enter a date and time",
    "Input should be a valid datetime or date": "enter a date and time",
}
_PATTERNS = {
    "reference": "use 3 to 64 letters, digits, dots, dashes or underscores",
    "organisation_ods_code": "use 3 to 6 capital letters or digits, for example 99X",
    "scrutineer_account": "use the account's username: lower-case letters, digits, . _ @ -",
}


def _in_form_words(exc: errors.AppError) -> errors.AppError:
    """The definition's problems named by the form's labels, each linked to its field."""
    problems = []
    for p in exc.problems or []:
        field, label = _ON_FORM.get(p["loc"], (None, p["loc"]))
        words = _PLAIN.get(p["problem"], p["problem"])
        if words.startswith("String should match pattern") and field in _PATTERNS:
            words = _PATTERNS[field]
        problems.append({"loc": label, "problem": words, "field": field})
    return errors.InvalidInput(
        f"The ballot was not created: {len(problems)} answer(s) need changing.", problems=problems
    )


_FORM_FIELDS = (
    "reference", "title", "organisation_name", "organisation_ods_code", "contact", "opens_at",
    "closes_at", "question_1", "question_2", "constitution_ref", "preset", "quorum",
    "scrutineer_account",
)  # fmt: skip


def _definition_of(form: FormData, values: dict[str, str]) -> dict[str, Any]:
    """A definition from the form's fields: one or two For / Against / Abstain questions."""
    questions = [
        {"id": f"q{n}", "text": values[f"question_{n}"]}
        for n in (1, 2)
        if values[f"question_{n}"] or n == 1
    ]
    rules: dict[str, Any] = {
        "constitution_ref": values["constitution_ref"],
        "preset": values["preset"] or "simple_majority",
    }
    if values["quorum"]:
        rules["quorum"] = {"fraction": values["quorum"], "basis": "practices"}
    return {
        "reference": values["reference"],
        "title": values["title"],
        "organisation": {
            "name": values["organisation_name"],
            "ods_code": values["organisation_ods_code"].upper(),
            **({"contact": values["contact"]} if values["contact"] else {}),
        },
        "opens_at": london_time(form, "opens_at", label="Voting opens"),
        "closes_at": london_time(form, "closes_at", label="Voting closes"),
        "questions": questions,
        "rules": rules,
        "governance": {
            "scrutineer_accounts": [values["scrutineer_account"].lower()]
            if values["scrutineer_account"]
            else []
        },
    }


# -- one ballot --------------------------------------------------------------------------------


def ballot_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    *,
    problem: errors.AppError | None = None,
    which: str | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    entries = roll.entries(session, ballot=ballot)
    voted = sum(1 for e in entries if e.voted_at is not None)
    done_key = request.query_params.get("done", "")
    return page(
        request,
        "ballot.html",
        user=user,
        ballot=ballot,
        entries=entries,
        voted=voted,
        problems=(
            ballots.problems_before_opening(session, ballot=ballot)
            if ballot.status == BallotStatus.draft
            else []
        ),
        scrutineers=ballot.definition.get("governance", {}).get("scrutineer_accounts", []),
        tally_key=ballot.definition.get(ballots.TALLY_KEY),
        done=DONE.get(done_key),
        problem=problem,
        which=which,
        is_secretariat=user.role == Role.secretariat,
    )


@router.get("/ballots/{ballot_id}", response_class=HTMLResponse)
def ballot_overview(
    ballot_id: int, request: Request, user: AnyStaff, session: SessionDep
) -> HTMLResponse:
    return ballot_page(request, session, user, ballot_id)


@router.post("/ballots/{ballot_id}/roll", response_class=HTMLResponse)
def upload_roll(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    files = uploads(form, "roll")
    try:
        if not files:
            raise errors.InvalidInput(
                "Choose the roll (a CSV file) to upload.",
                problems=[{"loc": "roll", "problem": "choose the CSV file"}],
            )
        try:
            text = files[0].file.read().decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidInput("The CSV file must be saved as UTF-8.") from None
        rows = roll.parse_csv(text)
    except errors.AppError as exc:
        return ballot_page(request, session, user, ballot_id, problem=exc, which="roll")
    ballot = ballots.get(session, ballot_id, lock="update")
    refused = attempt(
        session,
        lambda: ballots.replace_roll(session, ballot=ballot, rows=rows, actor=staff.actor(user)),
    )
    if refused:
        return ballot_page(request, session, user, ballot_id, problem=refused, which="roll")
    return done(ballot_id, "roll")


@router.post("/ballots/{ballot_id}/tally-key", response_class=HTMLResponse)
def set_tally_key(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    holders = [h.strip() for h in text_field(form, "holders").splitlines() if h.strip()]

    def change() -> None:
        ballot = ballots.get(session, ballot_id, lock="update")
        sealed_box.set_tally_key(
            session, ballot=ballot, public_key=text_field(form, "public_key"),
            holders=holders or None, threshold=None, holder_count=None, actor=staff.actor(user),
        )  # fmt: skip

    refused = attempt(session, change)
    if refused:
        return ballot_page(request, session, user, ballot_id, problem=refused, which="tally_key")
    return done(ballot_id, "tally_key")


# -- asking first ------------------------------------------------------------------------------


def confirm_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    action: str,
    *,
    problem: errors.AppError | None = None,
    template: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page that asks before an action (posted to `action` under the ballot): what will
    happen, and the button that does it; confirm_{template or action}.html."""
    ballot = ballots.get(session, ballot_id)
    return page(
        request,
        f"confirm_{template or action}.html",
        user=user,
        ballot=ballot,
        action=f"/console/ballots/{ballot_id}/{action}",
        problem=problem,
        **context,
    )


@router.get("/ballots/{ballot_id}/notice", response_class=HTMLResponse)
def notice_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    practices = len(roll.entries(session, ballot=ballots.get(session, ballot_id)))
    return confirm_page(request, session, user, ballot_id, "notice", practices=practices)


@router.post("/ballots/{ballot_id}/notice", response_class=HTMLResponse)
def send_notice(
    ballot_id: int, request: Request, _form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    def change() -> None:
        ballot = ballots.get(session, ballot_id, lock="update")
        roll.give_notice(session, ballot=ballot, actor=staff.actor(user))

    refused = attempt(session, change)
    if refused:
        return confirm_page(request, session, user, ballot_id, "notice", problem=refused)
    return done(ballot_id, "notice")


@router.get("/ballots/{ballot_id}/open", response_class=HTMLResponse)
def open_form(
    ballot_id: int, request: Request, user: Secretariat, session: SessionDep
) -> HTMLResponse:
    return _open_page(request, session, user, ballot_id)


def _open_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    found = ballots.problems_before_opening(session, ballot=ballot)
    return confirm_page(
        request, session, user, ballot_id, "open", problem=problem,
        practices=len(roll.entries(session, ballot=ballot)),
        blocking=[p for p in found if p.blocking], warnings=[p for p in found if not p.blocking],
    )  # fmt: skip


@router.post("/ballots/{ballot_id}/open", response_class=HTMLResponse)
def open_ballot(
    ballot_id: int, request: Request, form: PostedForm, user: Secretariat, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: ballots.open_ballot(
            session, ballot_id=ballot_id, actor=staff.actor(user),
            acknowledge_warnings=form.get("acknowledge") == "yes",
        ),
    )  # fmt: skip
    if refused:
        return _open_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "opened")
