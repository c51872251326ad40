"""The audit trail: each ballot's hash chain of every state change, appended in the same
transaction as the change itself."""

from typing import Any

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.orm import Session

from app import clock, db, proof
from app.models import AuditEntry, Ballot

# Who acts when no person does.
VOTER = "voter"
SYSTEM = "system"
# First key of the PostgreSQL advisory lock that serialises appends to one ballot's chain.
_LOCK_CLASS = 0x4D41
# Built once: an append runs inside every cast, so it must not rebuild its statements.
_HEAD = (
    select(AuditEntry.seq, AuditEntry.hash)
    .where(AuditEntry.ballot_id == bindparam("ballot_id"))
    .order_by(AuditEntry.seq.desc())
    .limit(1)
)
_INSERT = insert(db.table(AuditEntry))
_LOCK = text("SELECT pg_advisory_xact_lock(:cls, :ballot)")


def append(
    session: Session, *, ballot: Ballot | int, actor: str, action: str, **payload: Any
) -> str:
    """Add an entry to the ballot's chain and return its hash.

    Appends to one chain take turns until their transactions end, so two writers never both
    extend the same head: SQLite has one writer at a time already (every transaction begins
    IMMEDIATE), and on PostgreSQL a transaction-scoped advisory lock per ballot does it.
    """
    ballot_id = ballot if isinstance(ballot, int) else ballot.id
    # Whatever the caller changed through the ORM reaches the database first, as
    # session.execute() would have done; then the statements go to the session's connection
    # (the same transaction) without the ORM's per-statement bookkeeping.
    session.flush()
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        connection.execute(_LOCK, {"cls": _LOCK_CLASS, "ballot": ballot_id})
    head = connection.execute(_HEAD, {"ballot_id": ballot_id}).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, proof.GENESIS)
    entry = {
        "seq": seq,
        "at": proof.instant(clock.now()),
        "actor": actor,
        "action": action,
        "payload": payload,
        "prev": prev,
    }
    digest = proof.entry_hash(entry)
    connection.execute(
        _INSERT,
        {"ballot_id": ballot_id, "seq": seq, "at": entry["at"], "actor": actor,
         "action": action, "payload": payload, "prev_hash": prev, "hash": digest},
    )  # fmt: skip
    return digest


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as published (a line of audit_log.jsonl): the hashed fields and the hash."""
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "payload": entry.payload,
        "prev": entry.prev_hash,
        "hash": entry.hash,
    }


def entries(session: Session, *, ballot: Ballot, upto: int | None = None) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.ballot_id == ballot.id)
    if upto is not None:
        query = query.where(AuditEntry.seq <= upto)
    return list(session.scalars(query.order_by(AuditEntry.seq)))


def head(session: Session, *, ballot: Ballot) -> AuditEntry | None:
    return session.scalar(
        select(AuditEntry)
        .where(AuditEntry.ballot_id == ballot.id)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    )


def last(session: Session, *, ballot: Ballot, action: str) -> AuditEntry | None:
    """The latest entry of one kind, e.g. the close that committed the ballot box."""
    return session.scalar(
        select(AuditEntry)
        .where(AuditEntry.ballot_id == ballot.id, AuditEntry.action == action)
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    )


def length(session: Session, *, ballot: Ballot) -> int:
    return int(session.scalar(select(func.count()).where(AuditEntry.ballot_id == ballot.id)) or 0)
