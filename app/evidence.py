"""The evidence bundle of a published ballot: a signed, deterministic zip anyone can verify
offline with `mandate verify` (see app/verify.py for every check it makes)."""

import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from typing import Any

from sqlalchemy.orm import Session

from app import (
    audit,
    ballots,
    declaration,
    declaration_pdf,
    disputes,
    errors,
    outbox,
    proof,
    roll,
    roll_corrections,
    signing,
    voiding,
)
from app.models import (
    AuditEntry,
    Ballot,
    BallotStatus,
    DeliveryStatus,
    MessageKind,
    RollEntry,
    SigningKey,
)

FORMAT = "mandate-evidence/1"
ROLL_HEADER = ("ods_code", "name", "locality", "list_size", "votes", "emails", "voted", "voted_at")
DELIVERY_HEADER = (
    "ods_code", "practice", "to", "kind", "status", "attempts", "queued_at", "sent_at",
    "last_error",
)  # fmt: skip
# Messages that carry a voting link: a practice none of whose ones arrived may not have voted.
INVITATIONS = (MessageKind.invitation, MessageKind.new_link, MessageKind.reminder)


def software_version() -> str:
    return version("mandate")


def _stamp(at: datetime | None) -> str:
    return proof.instant(at) if at is not None else ""


def roll_csv(practices: list[RollEntry]) -> bytes:
    """Every eligible practice and whether it voted: never how."""
    return proof.csv_bytes(
        ROLL_HEADER,
        (
            (
                p.ods_code, p.name, p.locality, p.list_size, p.votes, ";".join(p.emails),
                "yes" if p.voted_at else "no", _stamp(p.voted_at),
            )
            for p in practices
        ),
    )  # fmt: skip


def box_csvs(box: dict[str, Any], question_ids: list[str]) -> dict[str, bytes]:
    """ballot_box.csv, and receipts.csv when the mode keeps receipts apart from choices."""
    if box["receipt_mode"] == "receipt_with_choices":
        header = ("receipt_code", "locality", "votes", *question_ids)
        rows = [
            (e["receipt_code"], e["locality"], e["votes"], *(e["choices"][q] for q in question_ids))
            for e in box["entries"]
        ]
        return {"ballot_box.csv": proof.csv_bytes(header, rows)}
    papers = [
        (b["locality"], b["votes"], *(b["choices"][q] for q in question_ids))
        for b in box["ballots"]
    ]
    return {
        "ballot_box.csv": proof.csv_bytes(("locality", "votes", *question_ids), papers),
        "receipts.csv": proof.csv_bytes(("receipt_code",), ([r] for r in box["receipts"])),
    }


def _document_name(position: int, filename: str) -> str:
    return f"documents/{position + 1:02d}-{filename}"


def was_published(ballot: Ballot) -> bool:
    """Published, or published and later declared void: either way its result exists."""
    return ballot.result is not None and ballot.status in (
        BallotStatus.published,
        BallotStatus.voided,
    )


def _published(ballot: Ballot) -> dict[str, Any]:
    if not was_published(ballot) or ballot.result is None:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}; the evidence bundle is made once the "
            "result is published."
        )
    return ballot.result


@dataclass(frozen=True)
class Evidence:
    """The fingerprinted record of a published result and the files it covers."""

    record: dict[str, Any]
    files: dict[str, bytes]
    practices: list[RollEntry]
    published: AuditEntry

    @property
    def fingerprint(self) -> str:
        return proof.fingerprint(self.record)


def evidence(session: Session, *, ballot: Ballot) -> Evidence:
    """What stays fixed once the result is published: the record every signature stands behind."""
    result = _published(ballot)
    published = audit.last(session, ballot=ballot, action="published")
    if published is None:
        raise errors.Conflict(f"Ballot {ballot.id} has no publication in its audit trail.")
    practices = roll.entries(session, ballot=ballot)
    question_ids = [q["id"] for q in ballot.definition["questions"]]
    box = proof.published_box(ballot.receipt_mode, ballots.box_entries(session, ballot=ballot))
    files = {"roll.csv": roll_csv(practices), **box_csvs(box, question_ids)}
    with_documents = ballots.get(session, ballot.id, with_documents=True)
    for document in with_documents.documents:
        files[_document_name(document.position, document.filename)] = document.content
    record = {
        "ballot": {
            "reference": ballot.reference,
            "title": ballot.title,
            "organisation": {
                "name": ballot.organisation_name,
                "ods_code": ballot.organisation_ods_code,
            },
            "receipt_mode": ballot.receipt_mode,
            "opens_at": _stamp(ballot.opens_at),
            "closes_at": _stamp(ballot.closes_at),
            "close_extended_reason": ballot.close_extended_reason,
            "opened_at": _stamp(ballot.opened_at),
            "closed_at": _stamp(ballot.closed_at),
            "box_opened_at": _stamp(ballot.box_opened_at),
            "published_at": _stamp(ballot.published_at),
        },
        "definition": ballot.definition,
        "frozen_hash": ballot.frozen_hash,
        # Practices added while open, each approved by a scrutineer: the roll frozen at open
        # plus these is the final roll (the verifier checks it).
        "roll_additions": _roll_additions(session, ballot=ballot),
        "roll_address_changes": _address_changes(session, ballot=ballot),
        "eligible": result["eligible"],
        "ballots_cast": result["ballots_cast"],
        "practices_voted": sum(1 for p in practices if p.voted_at is not None),
        "result": result,
        "ballot_box_root": proof.box_root(box),
        "audit_at_publish": {"seq": published.seq, "hash": published.hash},
        "files": {name: proof.sha256_hex(content) for name, content in sorted(files.items())},
    }
    return Evidence(record, files, practices, published)


def _roll_additions(session: Session, *, ballot: Ballot) -> list[dict[str, Any]]:
    return [
        {
            "number": a.number, "ods_code": a.ods_code, "reason": a.reason,
            "proposed_by": a.proposed_by, "proposed_at": _stamp(a.proposed_at),
            "approved_by": a.approved_by, "approved_at": _stamp(a.approved_at),
        }
        for a in roll_corrections.additions(session, ballot=ballot)
        if a.approved_at is not None
    ]  # fmt: skip


def _address_changes(session: Session, *, ballot: Ballot) -> list[dict[str, Any]]:
    return [
        {"ods_code": e.payload["ods_code"], "reason": e.payload["reason"], "changed_by": e.actor,
         "changed_at": e.at}
        for e in audit.entries(session, ballot=ballot)
        if e.action == "addresses_changed"
    ]  # fmt: skip


def _corrections(
    record: dict[str, Any], practices: list[RollEntry]
) -> tuple[declaration.Correction, ...]:
    names = {p.ods_code: p.name for p in practices}
    added = [
        declaration.Correction(
            kind="addition", ods_code=a["ods_code"], name=names.get(a["ods_code"], a["ods_code"]),
            reason=a["reason"], requested_by=a["proposed_by"].removeprefix("staff:"),
            at=datetime.fromisoformat(a["approved_at"]), approved_by=a["approved_by"],
        )
        for a in record["roll_additions"]
    ]  # fmt: skip
    changed = [
        declaration.Correction(
            kind="addresses", ods_code=c["ods_code"], name=names.get(c["ods_code"], c["ods_code"]),
            reason=c["reason"], requested_by=c["changed_by"].removeprefix("staff:"),
            at=datetime.fromisoformat(c["changed_at"]),
        )
        for c in record["roll_address_changes"]
    ]  # fmt: skip
    return tuple(sorted([*added, *changed], key=lambda c: c.at))


def attestations(session: Session, *, ballot: Ballot) -> list[AuditEntry]:
    return [e for e in audit.entries(session, ballot=ballot) if e.action == "attested"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "attester"


def _deliveries(session: Session, *, ballot: Ballot) -> tuple[bytes, list[declaration.Undelivered]]:
    rows, arrived, practices = [], set(), {}
    for practice, m in outbox.deliveries(session, ballot=ballot):
        if m.kind == MessageKind.published:
            # Sent after the record it announces was fixed: listing it would change the
            # bundle's bytes as the announcement is delivered.
            continue
        rows.append(
            (
                practice.ods_code, practice.name, m.to_address, m.kind, m.status, m.attempts,
                _stamp(m.created_at), _stamp(m.sent_at), m.last_error or "",
            )
        )  # fmt: skip
        if m.kind in INVITATIONS:
            practices[practice.ods_code] = practice
            if m.status == DeliveryStatus.sent:
                arrived.add(practice.ods_code)
    undelivered = [
        declaration.Undelivered(ods_code=p.ods_code, name=p.name, addresses=list(p.emails))
        for code, p in practices.items()
        if code not in arrived
    ]
    return proof.csv_bytes(DELIVERY_HEADER, rows), undelivered


def _scrutinised(entries: list[AuditEntry], action: str) -> declaration.Scrutinised | None:
    found = [e for e in entries if e.action == action]
    if not found:
        return None
    return declaration.Scrutinised(
        account=found[-1].actor.removeprefix("staff:"), at=datetime.fromisoformat(found[-1].at)
    )


def _approved_roll_check(entries: list[AuditEntry]) -> dict[str, Any] | None:
    """The roll check as the scrutineer's last approval recorded it."""
    approved = [e for e in entries if e.action == "approved"]
    found: dict[str, Any] | None = approved[-1].payload.get("roll_check") if approved else None
    return found


def bundle(session: Session, *, ballot: Ballot) -> bytes:
    """The evidence bundle as zip bytes: the same ballot always gives the same bytes."""
    found = evidence(session, ballot=ballot)
    files = dict(found.files)
    entries = audit.entries(session, ballot=ballot)
    files["audit_log.jsonl"] = b"".join(
        proof.canonical_json(audit.as_dict(e)) + b"\n" for e in entries
    )
    files["deliveries.csv"], undelivered = _deliveries(session, ballot=ballot)
    attested = [e for e in entries if e.action == "attested"]
    # Outside the fingerprinted record: disputes may come after publication, and one must not
    # unsettle the countersignatures made over the record. The manifest's signature covers it.
    files["disputes.json"] = _pretty(disputes.bundle_file(session, ballot=ballot))
    for n, entry in enumerate(attested, start=1):
        name = f"attestations/{n:02d}-{_slug(entry.payload['name'])}.json"
        files[name] = _pretty(attestation_file(entry))
    key = signing.register(session)
    facts = _facts(session, ballot, found=found, entries=entries, undelivered=undelivered, key=key)
    files["declaration.html"] = declaration.render_html(facts).encode()
    files["declaration.pdf"] = declaration_pdf.render_pdf(facts)
    head = entries[-1]
    manifest = {
        "format": FORMAT,
        "software": {"name": "mandate", "version": software_version()},
        # As at the last entry of the trail it holds, so the same ballot gives the same bytes.
        "generated_at": head.at,
        "evidence": found.record,
        "fingerprint": found.fingerprint,
        "audit_head": {"seq": head.seq, "hash": head.hash},
        "signing_key": {
            "algorithm": "Ed25519",
            "key_id": key.key_id,
            "public_key": key.public_key,
            "fingerprint": proof.key_fingerprint(key.public_key),
        },
        "files": {name: proof.sha256_hex(content) for name, content in sorted(files.items())},
    }
    files["manifest.json"] = _pretty(manifest)
    files["manifest.sig"] = signing.sign(files["manifest.json"]).encode() + b"\n"
    return _zip(files, _required(ballot.published_at))


def declaration_facts(session: Session, *, ballot: Ballot) -> declaration.Facts:
    """What the declaration of a published ballot says, as the bundle would render it now."""
    found = evidence(session, ballot=ballot)
    entries = audit.entries(session, ballot=ballot)
    undelivered = _deliveries(session, ballot=ballot)[1]
    return _facts(
        session, ballot, found=found, entries=entries, undelivered=undelivered,
        key=signing.register(session),
    )  # fmt: skip


def _facts(
    session: Session,
    ballot: Ballot,
    *,
    found: Evidence,
    entries: list[AuditEntry],
    undelivered: list[declaration.Undelivered],
    key: SigningKey,
) -> declaration.Facts:
    attested = [e for e in entries if e.action == "attested"]
    closed = next((e for e in reversed(entries) if e.action == "closed"), None)
    assessed = disputes.assess(session, ballot=ballot)
    return declaration.Facts(
        reference=ballot.reference,
        title=ballot.title,
        organisation_name=ballot.organisation_name,
        organisation_ods_code=ballot.organisation_ods_code,
        receipt_mode=ballot.receipt_mode,
        opens_at=ballot.opens_at,
        closes_at=ballot.closes_at,
        opened_at=_required(ballot.opened_at),
        closed_at=_required(ballot.closed_at),
        published_at=_required(ballot.published_at),
        close_extended_reason=ballot.close_extended_reason,
        definition=ballot.definition,
        result=found.record["result"],
        practices=[
            declaration.Practice(p.ods_code, p.name, p.locality, p.voted_at)
            for p in found.practices
        ],
        undelivered=undelivered,
        attestations=[
            declaration.Attestation(
                name=e.payload["name"],
                capacity=e.payload["capacity"],
                statement=e.payload["statement"],
                attested_at=datetime.fromisoformat(e.at),
                key_fingerprint=proof.key_fingerprint(e.payload["public_key"]),
            )
            for e in attested
        ],
        approved=_scrutinised(entries, "approved"),
        count_countersigned=_scrutinised(entries, "count_countersigned"),
        fingerprint=found.fingerprint,
        signing_key_fingerprint=proof.key_fingerprint(key.public_key),
        software_version=software_version(),
        box_opened_at=ballot.box_opened_at,
        disputes=assessed.listed,
        disputes_could_change=assessed.could_change,
        voided=_voided(session, ballot=ballot),
        sealed_sha256=closed.payload.get("sealed_sha256") if closed else None,
        ballots_sealed=closed.payload.get("ballots_cast") if closed else None,
        ballot_box_root=found.record["ballot_box_root"],
        roll_check=_approved_roll_check(entries),
        roll_corrections=_corrections(found.record, found.practices),
    )


def _voided(session: Session, *, ballot: Ballot) -> declaration.Voided | None:
    proposal = voiding.confirmed(session, ballot=ballot)
    if ballot.status != BallotStatus.voided or proposal is None or ballot.voided_at is None:
        return None
    return declaration.Voided(
        at=ballot.voided_at,
        reason=proposal.reason,
        proposed_by=proposal.proposed_by,
        confirmed_by=proposal.confirmed_by or "",
    )


def tally_receipt(session: Session, *, ballot: Ballot) -> dict[str, Any]:
    """The result with the hashes that bind it to the ballot box and the trail, signed."""
    found = evidence(session, ballot=ballot)
    record, head = found.record, audit.head(session, ballot=ballot)
    assert head is not None  # noqa: S101  (a published ballot has a trail)
    key = signing.register(session)
    receipt = {
        "format": "mandate-tally-receipt/1",
        "ballot": record["ballot"],
        "rules": record["definition"]["rules"],
        "questions": record["definition"]["questions"],
        "eligible": record["eligible"],
        "ballots_cast": record["ballots_cast"],
        "practices_voted": record["practices_voted"],
        "result": record["result"]["questions"],
        "ballot_box_root": record["ballot_box_root"],
        "audit_head": {"seq": head.seq, "hash": head.hash},
        "fingerprint": found.fingerprint,
        "signing_key": {"algorithm": "Ed25519", "key_id": key.key_id, "public_key": key.public_key},
    }
    # Signed over its canonical JSON (app.proof.canonical_json), whatever the layout it travels in.
    return {"receipt": receipt, "signature": signing.sign(proof.canonical_json(receipt))}


def attestation_file(entry: AuditEntry) -> dict[str, Any]:
    """An attestation as the bundle carries it: enough to check the signature offline."""
    keys = ("name", "capacity", "statement", "fingerprint", "public_key", "signature")
    return {"audit_seq": entry.seq, "attested_at": entry.at} | {k: entry.payload[k] for k in keys}


def _required(at: datetime | None) -> datetime:
    if at is None:
        raise errors.Conflict("The ballot's record is incomplete: a published ballot lacks a time.")
    return at


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _zip(files: dict[str, bytes], at: datetime) -> bytes:
    """A zip whose bytes depend only on the files: fixed order, times and permissions."""
    out = io.BytesIO()
    stamp = (at.year, at.month, at.day, at.hour, at.minute, at.second)
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name], compresslevel=9)
    return out.getvalue()
