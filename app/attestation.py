"""Countersignatures: an auditor's own Ed25519 signature over a published bundle's fingerprint.

The private key never reaches the server: `mandate attest` signs on the attester's machine, and
the server only checks the signature against the public key the attester registered earlier.
"""

from typing import Any

from sqlalchemy.orm import Session

from app import audit, clock, errors, evidence, proof, staff
from app.models import AuditEntry, Ballot, StaffUser


def register_key(session: Session, *, user: StaffUser, public_key: str) -> StaffUser:
    try:
        proof.public_key(public_key)
    except ValueError as exc:
        raise errors.InvalidInput(
            f"That is not an Ed25519 public key: {exc}. Use the public key that "
            "`mandate keygen` printed."
        ) from None
    user.attestation_key = public_key.strip()
    user.attestation_key_registered_at = clock.now()
    session.flush()
    return user


def attest(
    session: Session,
    *,
    ballot: Ballot,
    user: StaffUser,
    name: str,
    capacity: str,
    statement: str,
    fingerprint: str,
    signature: str,
) -> AuditEntry:
    """Record a countersignature made over this ballot's current fingerprint."""
    if user.attestation_key is None:
        raise errors.Conflict(
            "Register your public key first (PUT /api/v1/auth/attestation-key); a "
            "countersignature is checked against the key you registered beforehand."
        )
    current = evidence.evidence(session, ballot=ballot).fingerprint
    if fingerprint != current:
        raise errors.Conflict(
            "That signature is over another fingerprint than this ballot's evidence "
            f"({current}); download the bundle again, verify it and sign that."
        )
    message = proof.attestation_message(
        fingerprint=fingerprint, name=name, capacity=capacity, statement=statement
    )
    if not proof.signature_valid(user.attestation_key, signature, message):
        raise errors.InvalidInput(
            "The signature does not match your registered key and these words: sign with "
            "`mandate attest` using the private key whose public key you registered, and send "
            "the name, capacity and statement exactly as signed."
        )
    signed_before = [
        e
        for e in evidence.attestations(session, ballot=ballot)
        if e.payload["public_key"] == user.attestation_key
    ]
    if signed_before:
        raise errors.Conflict("You have already countersigned this result with this key.")
    audit.append(
        session, ballot=ballot, actor=staff.actor(user), action="attested",
        name=name, capacity=capacity, statement=statement, fingerprint=fingerprint,
        public_key=user.attestation_key, signature=signature,
        key_registered_at=proof.instant(user.attestation_key_registered_at or clock.now()),
    )  # fmt: skip
    entry = audit.last(session, ballot=ballot, action="attested")
    assert entry is not None  # noqa: S101  (just appended)
    return entry


def describe(entry: AuditEntry) -> dict[str, Any]:
    return evidence.attestation_file(entry) | {
        "key_fingerprint": proof.key_fingerprint(entry.payload["public_key"])
    }
