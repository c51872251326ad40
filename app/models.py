"""Every table, in one readable schema."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app import clock
from app.db import Base


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(StrEnum):
    admin = "admin"
    secretariat = "secretariat"
    auditor = "auditor"
    # Independent of those who run the ballot (an LMC officer, the lay chair): approves what
    # will be frozen before opening, countersigns the count before publication, changes nothing.
    scrutineer = "scrutineer"


class BallotStatus(StrEnum):
    draft = "draft"
    open = "open"
    closed = "closed"
    published = "published"
    voided = "voided"


class MessageKind(StrEnum):
    invitation = "invitation"
    new_link = "new_link"
    reminder = "reminder"
    confirmation = "confirmation"
    extension = "extension"
    # Before opening: the questions, papers, dates and scrutineer, and how the link will come.
    notice = "notice"
    # At close: whether the practice is recorded as voted, and the audit trail's head.
    closed = "closed"
    # On publication, to every address, scrutineer and the LMC: the declaration, who voted.
    published = "published"
    # Each day while open, to each scrutineer: turnout, the audit trail's head, failed mail.
    digest = "digest"
    # While open: the practice's addresses on the roll were changed (to old and new alike).
    addresses_changed = "addresses_changed"


class DeliveryStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"


class DisputeChannel(StrEnum):
    """How a dispute came in: recorded by the secretariat, or raised from a practice's link."""

    secretariat = "secretariat"
    voter_link = "voter_link"


class ReceiptMode(StrEnum):
    inclusion_only = "inclusion_only"
    receipt_with_choices = "receipt_with_choices"


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class StaffUser(Base):
    __tablename__ = "staff_user"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="role"),
        CheckConstraint(
            "totp_confirmed_at IS NULL OR totp_secret_encrypted IS NOT NULL",
            name="totp_confirmed_has_secret",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The Ed25519 public key (base64) this person countersigns results with; the private key
    # never leaves their own machine.
    attestation_key: Mapped[str | None] = mapped_column(String(64))
    attestation_key_registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The TOTP secret, encrypted with a key derived from SECRET_KEY; pending until a code from
    # it is confirmed. The last time step a code was accepted for, so no code is used twice.
    totp_secret_encrypted: Mapped[str | None] = mapped_column(String(200))
    totp_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(Integer)


class StaffSession(Base):
    """A signed-in staff session; the bearer token is kept only as a keyed hash."""

    __tablename__ = "staff_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Moved forward at most once a minute, so the idle timeout costs no write per request.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The absolute timeout: created_at + STAFF_SESSION_HOURS, however active the session.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    staff_user: Mapped[StaffUser] = relationship(lazy="joined")


class Ballot(Base):
    __tablename__ = "ballot"
    __table_args__ = (
        CheckConstraint(_in("status", BallotStatus), name="status"),
        CheckConstraint(_in("receipt_mode", ReceiptMode), name="receipt_mode"),
        CheckConstraint("opens_at < closes_at", name="opens_before_closes"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    organisation_name: Mapped[str] = mapped_column(String(200))
    organisation_ods_code: Mapped[str] = mapped_column(String(10))
    status: Mapped[BallotStatus] = mapped_column(String(20), default=BallotStatus.draft)
    receipt_mode: Mapped[ReceiptMode] = mapped_column(String(30))
    # The validated definition (questions, rules, consultations); frozen once opened.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    # SHA-256 of the canonical frozen definition, roll and documents, set at open.
    frozen_hash: Mapped[str | None] = mapped_column(String(64))
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    close_extended_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the key holders opened the sealed box, after close; only then is there a box to count.
    box_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The scrutineer's approval of exactly what will be frozen (its hash), withdrawn by any
    # change; and their countersignature of the count (its hash) before publication.
    # When the notice of ballot went to every address on the roll (governance.notice_days).
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_hash: Mapped[str | None] = mapped_column(String(64))
    countersigned_by: Mapped[str | None] = mapped_column(String(100))
    countersigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    countersigned_hash: Mapped[str | None] = mapped_column(String(64))

    documents: Mapped[list["Document"]] = relationship(
        lazy="raise", order_by="Document.position", cascade="all, delete-orphan"
    )


class Document(Base):
    """A paper voters must see, pinned by its SHA-256."""

    __tablename__ = "document"
    __table_args__ = (UniqueConstraint("ballot_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    filename: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class RollEntry(Base):
    """A member practice on one ballot's roll; also its line in the turnout register."""

    __tablename__ = "roll_entry"
    __table_args__ = (
        UniqueConstraint("ballot_id", "ods_code"),
        CheckConstraint("list_size > 0", name="list_size_positive"),
        CheckConstraint("votes IS NULL OR votes > 0", name="votes_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"), index=True)
    ods_code: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    locality: Mapped[str] = mapped_column(String(100))
    list_size: Mapped[int] = mapped_column(Integer)
    emails: Mapped[list[str]] = mapped_column(JSON)
    # Frozen at open from the ballot's weighting rule.
    votes: Mapped[int | None] = mapped_column(Integer)
    # The turnout register: that the practice voted, when and who submitted; never how.
    voted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    voted_by_name: Mapped[str | None] = mapped_column(String(200))
    voted_by_role: Mapped[str | None] = mapped_column(String(200))


class VotingLink(Base):
    """One emailed link of a practice; the token itself is never stored."""

    __tablename__ = "voting_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    roll_entry_id: Mapped[int] = mapped_column(ForeignKey("roll_entry.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    roll_entry: Mapped[RollEntry] = relationship(lazy="joined")


class BallotBoxEntry(Base):
    """One recorded ballot: no practice, no link, no time, and a random key.

    On SQLite the table is WITHOUT ROWID, so even the storage order follows the random key
    rather than the order of casting.
    """

    __tablename__ = "ballot_box_entry"
    __table_args__ = (
        UniqueConstraint("ballot_id", "receipt_code"),
        CheckConstraint("votes > 0", name="votes_positive"),
        {"sqlite_with_rowid": False},
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"))
    receipt_code: Mapped[str] = mapped_column(String(24))
    choices: Mapped[dict[str, str]] = mapped_column(JSON)
    locality: Mapped[str] = mapped_column(String(100))
    votes: Mapped[int] = mapped_column(Integer)


class SealedBallot(Base):
    """One ballot as cast: sealed to the ballot's tally key, with nothing else in clear.

    No receipt, no hash of one, no locality or weight: nothing to count or join on. The key is
    random, and on SQLite the table is WITHOUT ROWID, so storage follows the key, not the cast.
    """

    __tablename__ = "sealed_ballot"
    __table_args__ = ({"sqlite_with_rowid": False},)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)


class Dispute(Base):
    """A challenge to a ballot: when, from whom, what it says; never a vote or a receipt.

    It names at most the practice (the turnout register already says whether it voted), so
    nothing here can be joined to a ballot-box entry.
    """

    __tablename__ = "dispute"
    __table_args__ = (
        CheckConstraint(_in("channel", DisputeChannel), name="channel"),
        CheckConstraint("length(text) BETWEEN 1 AND 2000", name="text_length"),
        # A practice raising one from its link is always known; the secretariat records who.
        CheckConstraint(
            "(channel = 'voter_link' AND ods_code IS NOT NULL AND recorded_by IS NULL) OR "
            "(channel = 'secretariat' AND recorded_by IS NOT NULL)",
            name="channel_source",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"), index=True)
    # None when the challenge does not come from one practice (the LMC, a member of the public).
    ods_code: Mapped[str | None] = mapped_column(String(6))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text)
    channel: Mapped[DisputeChannel] = mapped_column(String(20))
    recorded_by: Mapped[str | None] = mapped_column(String(100))
    # "A vote was recorded for us but we did not vote": the one kind the declaration weighs.
    claims_not_voted: Mapped[bool] = mapped_column(Boolean, default=False)


class VoidProposal(Base):
    """The secretariat's proposal to void a ballot; it stands only once a scrutineer confirms it.

    Never edited: a proposal is withdrawn (by either party) or confirmed, and a new reason is a
    new proposal. At most one is pending per ballot.
    """

    __tablename__ = "void_proposal"
    __table_args__ = (
        CheckConstraint(
            "withdrawn_at IS NULL OR confirmed_at IS NULL", name="withdrawn_or_confirmed"
        ),
        Index(
            "uq_void_proposal_pending",
            "ballot_id",
            unique=True,
            sqlite_where=text("withdrawn_at IS NULL AND confirmed_at IS NULL"),
            postgresql_where=text("withdrawn_at IS NULL AND confirmed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(100))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(100))
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(100))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """An email to send, written in the transaction that causes it; never its link or body.

    A message that carries a link gets it minted by the sender at the moment of sending, so no
    voting token ever rests here. After delivery only the metadata remains.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        CheckConstraint(_in("kind", MessageKind), name="kind"),
        CheckConstraint(_in("status", DeliveryStatus), name="status"),
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Message-ID header, fixed at enqueue so every attempt sends the same one.
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[MessageKind] = mapped_column(String(20))
    status: Mapped[DeliveryStatus] = mapped_column(String(20), default=DeliveryStatus.queued)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"), index=True)
    # None for a recipient who is not on the roll: a scrutineer or the LMC contact.
    roll_entry_id: Mapped[int | None] = mapped_column(ForeignKey("roll_entry.id"), index=True)
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A sender's claim; a claim that lapses (the sender died) makes the message due again.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One link of a ballot's hash chain: who did what, when; appended, never changed."""

    __tablename__ = "audit_entry"
    __table_args__ = (UniqueConstraint("ballot_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"))
    seq: Mapped[int] = mapped_column(Integer)
    # The instant as hashed: ISO 8601 UTC with microseconds, kept as text so it hashes the same
    # on every database.
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SigningKey(Base):
    """A public key the service has signed with; retired keys stay so old bundles verify."""

    __tablename__ = "signing_key"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RateLimit(Base):
    """Attempts in one window for one key (a keyed hash), when servers count together."""

    __tablename__ = "rate_limit"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)


class NationalListImport(Base):
    """One import of the national list of GP practices (ODS `epraccur`): when, and which file."""

    __tablename__ = "national_list_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    imported_by: Mapped[str] = mapped_column(String(200))
    # The SHA-256 of the file as received, so a check can be tied to the extract it used.
    file_sha256: Mapped[str] = mapped_column(String(64))
    practices: Mapped[int] = mapped_column(Integer)


class NationalPractice(Base):
    """A practice of the latest national list import; the whole table is replaced each time."""

    __tablename__ = "national_practice"
    __table_args__ = (CheckConstraint("status IN ('A', 'C', 'D', 'P')", name="status"),)

    ods_code: Mapped[str] = mapped_column(String(10), primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("national_list_import.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(10))
    # A active, C closed, D dormant, P proposed (as the epraccur file codes it).
    status: Mapped[str] = mapped_column(String(1))
    commissioner_code: Mapped[str] = mapped_column(String(10))


class RollAddition(Base):
    """A practice proposed for the roll of an open ballot; on the roll once a scrutineer approves.

    Corrections while open are add-only: nothing here ever removes a practice.
    """

    __tablename__ = "roll_addition"
    __table_args__ = (
        UniqueConstraint("ballot_id", "number"),
        CheckConstraint("list_size > 0", name="list_size_positive"),
        CheckConstraint(
            "(approved_at IS NULL) = (roll_entry_id IS NULL)", name="approved_has_entry"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ballot_id: Mapped[int] = mapped_column(ForeignKey("ballot.id"), index=True)
    # 1, 2, … within the ballot, as the API and the declaration number them.
    number: Mapped[int] = mapped_column(Integer)
    ods_code: Mapped[str] = mapped_column(String(6))
    name: Mapped[str] = mapped_column(String(200))
    locality: Mapped[str] = mapped_column(String(100))
    list_size: Mapped[int] = mapped_column(Integer)
    emails: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(100))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    roll_entry_id: Mapped[int | None] = mapped_column(ForeignKey("roll_entry.id"), unique=True)
