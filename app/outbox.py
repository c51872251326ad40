"""The outbox: each email is queued in the transaction that causes it, and a sender delivers it.

Links are minted by the sender, at the moment of sending, so no voting token rests in the
database. A retry mints a fresh link and never revokes one already handed to the mail server
(the server may have accepted it even if we never heard so); only a re-issue revokes.
"""

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import make_msgid, parseaddr
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from app import audit, clock, crypto, mail
from app.config import get_settings
from app.db import session_scope, table
from app.models import (
    Ballot,
    BallotStatus,
    DeliveryStatus,
    MessageKind,
    OutboxMessage,
    RollEntry,
    VotingLink,
)

log = logging.getLogger("mandate.mail")
_T = TypeVar("_T")
_R = TypeVar("_R")
# How long a sender may hold a claimed message before another sender may take it over.
CLAIM = timedelta(minutes=5)


_INSERT = insert(table(OutboxMessage))


class Addressed(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def emails(self) -> list[str]: ...


class Sent(mail.Titled, Protocol):
    @property
    def id(self) -> int: ...


def enqueue(
    session: Session,
    *,
    kind: MessageKind,
    ballot: Sent,
    practice: Addressed | None,
    addresses: Iterable[str] | None = None,
) -> None:
    """Queue one message of this kind to each address of the practice (or to those given).

    Without a practice the message goes to addresses off the roll (a scrutineer, the LMC).
    """
    if addresses is None:
        if practice is None:
            raise ValueError("a message to no practice needs its addresses")
        addresses = practice.emails
    now = clock.now()
    # Message-IDs under the sender's own domain, as mail relays and spam filters expect.
    domain = parseaddr(get_settings().mail_from)[1].rpartition("@")[2] or "mandate.invalid"
    rows = [
        {
            "message_id": make_msgid(domain=domain),
            "kind": kind,
            "status": DeliveryStatus.queued,
            "ballot_id": ballot.id,
            "roll_entry_id": practice.id if practice is not None else None,
            "to_address": address,
            "subject": mail.subject(kind, ballot),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for address in addresses
    ]
    # A Core INSERT on the session's connection: this runs inside every cast, where the ORM's
    # bookkeeping would show. Changes made through the ORM are flushed first, as execute() did.
    session.flush()
    session.connection().execute(_INSERT, rows)


def cancel_links_queued(session: Session, *, practice: RollEntry, reason: str) -> None:
    """Withdraw queued messages that would mint a link for this practice."""
    session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.roll_entry_id == practice.id,
            OutboxMessage.status == DeliveryStatus.queued,
            OutboxMessage.kind.in_([k.value for k in mail.WITH_LINK]),
        )
        .values(status=DeliveryStatus.cancelled, last_error=reason)
    )


def deliveries(session: Session, *, ballot: Ballot) -> list[tuple[RollEntry, OutboxMessage]]:
    """Every message of the ballot with its practice, by practice, address and time."""
    return [
        (practice, message)
        for message, practice in session.execute(
            select(OutboxMessage, RollEntry)
            .join(RollEntry, OutboxMessage.roll_entry_id == RollEntry.id)
            .where(OutboxMessage.ballot_id == ballot.id)
            .order_by(RollEntry.ods_code, OutboxMessage.to_address, OutboxMessage.id)
        )
    ]


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    cancelled: int = 0

    def add(self, other: "Report") -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.retrying += other.retrying
        self.cancelled += other.cancelled


def deliver_pending(*, on_progress: Callable[[Report], None] | None = None) -> Report:
    """Send every message that is due, in batches, one mail-server connection per batch."""
    total = Report()
    while ids := _claim(get_settings().mail_batch_size):
        total.add(_record(_send(_mint_links(ids))))
        if on_progress is not None:
            on_progress(total)
    return total


class Activity:
    """When the server last took a request, so mail can wait while people are voting."""

    def __init__(self) -> None:
        self.last_request = 0.0

    def touch(self) -> None:
        self.last_request = time.monotonic()

    def busy(self) -> bool:
        return time.monotonic() - self.last_request < BUSY_WINDOW


# A sender inside the server shares its one interpreter with the voters: rendering and sending
# mail would take CPU from casting. So it sends while the server is quiet, and during a burst
# waits at most MAX_DEFER before sending a batch anyway.
BUSY_WINDOW = 0.5
MAX_DEFER = 30.0


async def run_sender(
    turn: anyio.Semaphore, *, activity: Activity | None = None, idle_seconds: float = 1.0
) -> None:
    """Deliver the outbox for as long as the server (or `mandate mail send --watch`) runs.

    Each database step takes the server's database turn, like a request does; rendering and
    talking to the mail server happen outside any transaction, so voters never wait on them.
    """

    async def in_turn(step: Callable[[_T], _R], argument: _T) -> _R:
        async with turn:
            return await anyio.to_thread.run_sync(step, argument)

    waiting_since: float | None = None
    while True:
        if activity is not None and activity.busy():
            waiting_since = waiting_since or time.monotonic()
            if time.monotonic() - waiting_since < MAX_DEFER:
                await anyio.sleep(BUSY_WINDOW)
                continue
        waiting_since = None
        report = Report()
        try:
            if ids := await in_turn(_claim, get_settings().mail_batch_size):
                outcomes = await anyio.to_thread.run_sync(_send, await in_turn(_mint_links, ids))
                report = await in_turn(_record, outcomes)
        except Exception:  # the sender must outlive a database or mail hiccup
            log.exception("outbox delivery failed; trying again shortly")
        if report.sent or report.failed:
            log.info(
                "mail: %d sent, %d failed, %d to retry", report.sent, report.failed, report.retrying
            )
        if not (report.sent or report.failed or report.retrying or report.cancelled):
            await anyio.sleep(idle_seconds)


def _claim(limit: int) -> list[int]:
    with session_scope() as session:
        now = clock.now()
        due = or_(
            and_(
                OutboxMessage.status == DeliveryStatus.queued, OutboxMessage.next_attempt_at <= now
            ),
            and_(OutboxMessage.status == DeliveryStatus.sending, OutboxMessage.claimed_until < now),
        )
        # SKIP LOCKED lets several senders share one PostgreSQL outbox without taking the same
        # message twice; SQLite has one writer at a time and needs no more.
        messages = session.scalars(
            select(OutboxMessage).where(due).order_by(OutboxMessage.id).limit(limit)
            .with_for_update(skip_locked=True)
        ).all()  # fmt: skip
        for message in messages:
            message.status = DeliveryStatus.sending
            message.claimed_until = now + CLAIM
            message.attempts += 1
        return [m.id for m in messages]


@dataclass(frozen=True)
class _Claimed:
    """A claimed message, ready to render: its row, practice, ballot and any minted link."""

    message: OutboxMessage
    practice: RollEntry | None
    ballot: Ballot
    link: str | None
    link_hash: str | None = None
    cancelled: str | None = None
    # The audit trail's head as the message left, for copies kept outside the server.
    audit_head: tuple[int, str] | None = None
    # What this kind of message tells beyond the ballot and practice (see _facts).
    facts: dict[str, Any] | None = None


def _mint_links(ids: list[int]) -> list[_Claimed]:
    """Mint a link for each claimed message that carries one; withdraw the unwanted."""
    claimed = []
    with session_scope() as session:
        rows = session.execute(
            select(OutboxMessage, RollEntry, Ballot)
            .outerjoin(RollEntry, OutboxMessage.roll_entry_id == RollEntry.id)
            .join(Ballot, OutboxMessage.ballot_id == Ballot.id)
            .where(OutboxMessage.id.in_(ids))
            # In claim order: the links join the audit trail in this order, which must not
            # depend on the database's join plan (PostgreSQL returns these rows reversed).
            .order_by(OutboxMessage.id)
        )
        now = clock.now()
        heads: dict[int, tuple[int, str] | None] = {}
        facts: dict[tuple[int, str], dict[str, Any]] = {}
        for message, practice, ballot in rows:
            if ballot.id not in heads:
                head = audit.head(session, ballot=ballot)
                heads[ballot.id] = (head.seq, head.hash) if head else None
            reason = _no_longer_wanted(message, practice, ballot)
            if reason is not None:
                claimed.append(_Claimed(message, practice, ballot, None, cancelled=reason))
                continue
            if (ballot.id, message.kind) not in facts:
                facts[ballot.id, message.kind] = _facts(session, kind=message.kind, ballot=ballot)
            link = link_hash = None
            if message.kind in mail.WITH_LINK and practice is not None:
                token = crypto.new_token()
                link, link_hash = mail.vote_url(token), crypto.token_hash(token)
                session.add(
                    VotingLink(
                        roll_entry_id=practice.id,
                        email=message.to_address,
                        token_hash=link_hash,
                        issued_at=now,
                    )
                )
                audit.append(
                    session, ballot=ballot, actor=audit.SYSTEM, action="link_issued",
                    ods_code=practice.ods_code, to=message.to_address, kind=message.kind,
                )  # fmt: skip
            claimed.append(
                _Claimed(
                    message, practice, ballot, link, link_hash, audit_head=heads[ballot.id],
                    facts=facts[ballot.id, message.kind],
                )
            )  # fmt: skip
    # Committed before anything is sent: a link that reaches a practice is always known here.
    return claimed


def _facts(session: Session, *, kind: str, ballot: Ballot) -> dict[str, Any]:
    """What a message of this kind tells beyond the ballot and practice, as it stands now."""
    if kind == MessageKind.closed:
        # The commitment the close fixed, from the trail: the email repeats what the
        # evidence must later contain, so a box swapped before the count would show.
        closed = audit.last(session, ballot=ballot, action="closed")
        commitment = None
        if closed is not None and closed.payload.get("sealed_sha256"):
            commitment = {
                "seq": closed.seq,
                "sealed_sha256": closed.payload["sealed_sha256"],
                "ballots_sealed": closed.payload["ballots_cast"],
            }
        return {"commitment": commitment}
    if kind == MessageKind.published:
        # Imported here: announcements builds on the evidence, which reads this outbox.
        from app import announcements

        return announcements.published_facts(session, ballot=ballot)
    if kind == MessageKind.digest:
        from app import announcements

        return announcements.digest_facts(session, ballot=ballot)
    return {}


@dataclass
class _Sent:
    """What became of a batch, and the links that certainly never left this process."""

    outcomes: dict[int, tuple[DeliveryStatus, str | None]]
    unsent_links: list[_Claimed]


def _send(claimed: list[_Claimed]) -> _Sent:
    """Render and send over one connection; no transaction is open meanwhile."""
    sent = _Sent(
        {c.message.id: (DeliveryStatus.cancelled, c.cancelled) for c in claimed if c.cancelled}, []
    )
    wanted = [c for c in claimed if not c.cancelled]
    in_flight = None
    try:
        with mail.transport() as transport:
            for c in wanted:
                rendered = mail.render(
                    MessageKind(c.message.kind), ballot=c.ballot, practice=c.practice,
                    to=c.message.to_address, message_id=c.message.message_id, link=c.link,
                    audit_head=c.audit_head, facts=c.facts,
                )  # fmt: skip
                in_flight = c
                try:
                    transport.send(rendered)
                    sent.outcomes[c.message.id] = (DeliveryStatus.sent, None)
                except mail.DeliveryFailed as exc:
                    status = DeliveryStatus.failed if exc.permanent else DeliveryStatus.queued
                    sent.outcomes[c.message.id] = (status, exc.reply)
    except mail.ConnectionLost as exc:
        log.warning("mail server unreachable, will retry: %s", exc)
        for c in wanted:
            sent.outcomes.setdefault(c.message.id, (DeliveryStatus.queued, str(exc)))
    # A refused message, or one never handed over, took its link nowhere: forget the link. The
    # message in flight when a connection broke may have arrived, so its link stays valid.
    sent.unsent_links = [
        c
        for c in wanted
        if c.link_hash is not None
        and c is not in_flight
        and sent.outcomes[c.message.id][0] != DeliveryStatus.sent
    ]
    return sent


def _no_longer_wanted(
    message: OutboxMessage, practice: RollEntry | None, ballot: Ballot
) -> str | None:
    if message.kind in mail.WITH_LINK and practice is None:
        return "not sent: a voting link goes only to a practice on the roll"
    if message.kind in mail.WITH_LINK and (
        ballot.status != BallotStatus.open or clock.now() >= ballot.closes_at
    ):
        return "not sent: voting had closed"
    if message.kind == MessageKind.published and ballot.status != BallotStatus.published:
        return "not sent: the result is no longer published (the ballot was voided)"
    if message.kind == MessageKind.reminder and practice is not None and practice.voted_at:
        return "not sent: the practice had voted"
    if (
        message.kind in mail.WITH_LINK
        and practice is not None
        and message.to_address not in practice.emails
    ):
        # Links go only to addresses on the roll, whatever was queued before a change.
        return "not sent: the address is no longer on the roll"
    return None


def _record(sent: _Sent) -> Report:
    report = Report()
    settings = get_settings()
    outcomes = sent.outcomes
    with session_scope() as session:
        if sent.unsent_links:
            hashes = [c.link_hash for c in sent.unsent_links]
            session.execute(delete(VotingLink).where(VotingLink.token_hash.in_(hashes)))
            for c in sent.unsent_links:
                # A link is minted only for a message to a practice (see _mint_links).
                ods_code = c.practice.ods_code if c.practice is not None else None
                audit.append(
                    session, ballot=c.message.ballot_id, actor=audit.SYSTEM,
                    action="link_withdrawn", ods_code=ods_code, to=c.message.to_address,
                    reason="the mail server did not take the message, so the link never left",
                )  # fmt: skip
        now = clock.now()
        for message in session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(outcomes))):
            status, reply = outcomes[message.id]
            message.status = status
            message.claimed_until = None
            if status == DeliveryStatus.sent:
                message.sent_at = now
                message.last_error = None
                report.sent += 1
            elif status == DeliveryStatus.queued:
                delay = min(
                    settings.mail_retry_max_seconds,
                    settings.mail_retry_base_seconds * 2 ** (message.attempts - 1),
                )
                jitter = random.uniform(0.5, 1.0)  # noqa: S311  (spreads retries; not a secret)
                message.next_attempt_at = now + timedelta(seconds=delay * jitter)
                message.last_error = reply
                report.retrying += 1
            elif status == DeliveryStatus.failed:
                message.last_error = reply
                report.failed += 1
            else:
                message.last_error = reply
                report.cancelled += 1
    return report
