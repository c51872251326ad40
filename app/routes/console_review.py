"""The console for those who check: the scrutineer approves what will be frozen and countersigns
the count; the auditor sees the result, the trail and its chain, the register and the box."""

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app import attestation, audit, ballots, errors, evidence, proof, roll, scrutiny
from app.deps import AnyStaff, Attester, Scrutineer, SessionDep
from app.models import BallotStatus, Role, StaffUser
from app.routes import evidence as evidence_routes
from app.routes import scrutiny as scrutiny_routes
from app.routes.console import PostedForm, attempt, done, page, text_field, uploads
from app.routes.public import published_box

router = APIRouter(prefix="/console/ballots/{ballot_id}", include_in_schema=False)


def _approval_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    return page(
        request, "approval.html", user=user, ballot=ballot,
        problem=problem,
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
    request: Request,
    session: SessionDep,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
) -> HTMLResponse:
    count = scrutiny_routes.count_to_verify(session, ballot_id, user, lock=None)
    return page(
        request, "countersign.html", user=user, ballot=ballots.get(session, ballot_id),
        problem=problem, count=count,
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


def _audit_page(
    request: Request,
    session: Session,
    user: StaffUser,
    ballot_id: int,
    problem: errors.AppError | None = None,
) -> HTMLResponse:
    ballot = ballots.get(session, ballot_id)
    entries = [audit.as_dict(e) for e in audit.entries(session, ballot=ballot)]
    published = ballot.status in (BallotStatus.published, BallotStatus.voided) and ballot.result
    signed = evidence.attestations(session, ballot=ballot) if published else []
    return page(
        request, "audit.html", user=user, ballot=ballot, entries=entries,
        problem=problem,
        chain_problem=proof.chain_problem(entries), register=roll.entries(session, ballot=ballot),
        box=published_box(session, ballot) if published else None,
        attestations=[attestation.describe(e) for e in signed],
        may_attest=bool(published) and user.role in (Role.auditor, Role.scrutineer),
        values={"public_key": user.attestation_key or ""},
    )  # fmt: skip


@router.get("/audit", response_class=HTMLResponse)
def audit_view(ballot_id: int, request: Request, user: AnyStaff, session: SessionDep) -> Response:
    """The auditor's view: result, trail and its chain, turnout register, ballot box and the
    countersignatures of those who verified the bundle."""
    return _audit_page(request, session, user, ballot_id)


@router.post("/attestation-key", response_class=HTMLResponse)
def register_key(
    ballot_id: int, request: Request, form: PostedForm, user: Attester, session: SessionDep
) -> Response:
    refused = attempt(
        session,
        lambda: attestation.register_key(
            session, user=user, public_key=text_field(form, "public_key")
        ),
    )
    if refused:
        return _audit_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "attestation_key")


@router.post("/attestations", response_class=HTMLResponse)
def attest(
    ballot_id: int, request: Request, form: PostedForm, user: Attester, session: SessionDep
) -> Response:
    def change() -> None:
        files = uploads(form, "attestation")
        if not files:
            raise errors.InvalidInput("Choose the file `mandate attest` wrote (attestation.json).")
        try:
            signed = evidence_routes.AttestationIn.model_validate(
                json.loads(files[0].file.read(64 * 1024))
            )
        except (ValueError, ValidationError):
            raise errors.InvalidInput(
                "That is not a countersignature written by `mandate attest`: choose its "
                "attestation.json."
            ) from None
        attestation.attest(
            session, ballot=ballots.get(session, ballot_id, lock="update"), user=user,
            name=signed.name, capacity=signed.capacity, statement=signed.statement,
            fingerprint=signed.fingerprint, signature=signed.signature,
        )  # fmt: skip

    refused = attempt(session, change)
    if refused:
        return _audit_page(request, session, user, ballot_id, refused)
    return done(ballot_id, "attested")
