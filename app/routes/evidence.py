"""The evidence API: signing key, audit trail, tally receipt, bundle and countersignatures."""

from typing import Annotated, Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, StringConstraints

from app import attestation, audit, ballots, definitions, errors, evidence, proof, signing, staff
from app.deps import AnyStaff, Attester, SessionDep
from app.models import Ballot, BallotStatus, StaffUser

router = APIRouter(prefix="/api/v1", tags=["evidence"])

Words = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class KeyOut(BaseModel):
    algorithm: str = "Ed25519"
    key_id: str
    public_key: str
    fingerprint: str
    first_used_at: str | None = None


class SigningKeysOut(BaseModel):
    current: KeyOut
    # Every key the service has signed with, so bundles signed before a rotation still verify.
    keys: list[KeyOut]


class ChainOut(BaseModel):
    intact: bool
    problem: str | None
    entries: list[dict[str, Any]]


class AttestationKeyIn(definitions.Schema):
    public_key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


class AttestationIn(definitions.Schema):
    """What `mandate attest` wrote: the words signed, the fingerprint and the signature."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    capacity: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    statement: Words
    fingerprint: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    signature: Annotated[str, StringConstraints(max_length=200)]


def _key(public_key: str, first_used_at: str | None = None) -> KeyOut:
    return KeyOut(
        key_id=signing.key_id(public_key),
        public_key=public_key,
        fingerprint=proof.key_fingerprint(public_key),
        first_used_at=first_used_at,
    )


@router.get("/signing-key")
def signing_key(session: SessionDep) -> SigningKeysOut:
    signing.register(session)
    return SigningKeysOut(
        current=_key(signing.public_b64()),
        keys=[
            _key(k.public_key, proof.instant(k.first_used_at)) for k in signing.known_keys(session)
        ],
    )


@router.get("/ballots/{ballot_id}/audit")
def audit_trail(ballot_id: int, _user: AnyStaff, session: SessionDep) -> ChainOut:
    ballot = ballots.get(session, ballot_id)
    entries = [audit.as_dict(e) for e in audit.entries(session, ballot=ballot)]
    problem = proof.chain_problem(entries)
    return ChainOut(intact=problem is None, problem=problem, entries=entries)


def _before_result(session: SessionDep, ballot: Ballot, user: StaffUser, what: str) -> Response:
    """Refuse, and record in the trail, a request for results before there are any."""
    audit.append(
        session, ballot=ballot, actor=staff.actor(user), action="refused_before_result",
        asked_for=what, status=ballot.status,
    )  # fmt: skip
    refusal = errors.WrongState(
        f"Ballot {ballot.id} is {ballot.status}: no {what} exists before the result is "
        "published. The request has been recorded in the ballot's audit trail."
    )
    return JSONResponse(refusal.body(), status_code=refusal.status_code)


@router.get("/ballots/{ballot_id}/receipt")
def tally_receipt(ballot_id: int, user: AnyStaff, session: SessionDep) -> Any:
    ballot = ballots.get(session, ballot_id)
    if ballot.status != BallotStatus.published:
        return _before_result(session, ballot, user, "tally receipt")
    return evidence.tally_receipt(session, ballot=ballot)


@router.get(
    "/ballots/{ballot_id}/evidence",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The bundle (zip)"}},
)
def evidence_bundle(ballot_id: int, user: AnyStaff, session: SessionDep) -> Response:
    ballot = ballots.get(session, ballot_id)
    if not evidence.was_published(ballot):
        return _before_result(session, ballot, user, "evidence bundle")
    content = evidence.bundle(session, ballot=ballot)
    filename = f"{ballot.reference}-evidence.zip"
    return Response(
        content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.put("/auth/attestation-key")
def register_attestation_key(body: AttestationKeyIn, user: Attester, session: SessionDep) -> KeyOut:
    attestation.register_key(session, user=user, public_key=body.public_key)
    return _key(body.public_key)


@router.get("/ballots/{ballot_id}/attestations")
def list_attestations(ballot_id: int, _user: AnyStaff, session: SessionDep) -> list[dict[str, Any]]:
    ballot = ballots.get(session, ballot_id)
    return [attestation.describe(e) for e in evidence.attestations(session, ballot=ballot)]


@router.post("/ballots/{ballot_id}/attestations", status_code=status.HTTP_201_CREATED)
def attest(
    ballot_id: int, body: AttestationIn, user: Attester, session: SessionDep
) -> dict[str, Any]:
    ballot = ballots.get(session, ballot_id, lock="update")
    entry = attestation.attest(
        session, ballot=ballot, user=user, name=body.name, capacity=body.capacity,
        statement=body.statement, fingerprint=body.fingerprint, signature=body.signature,
    )  # fmt: skip
    return attestation.describe(entry)
