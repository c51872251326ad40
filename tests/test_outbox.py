"""Delivery through a real SMTP server on loopback: retries, refusals, two senders, no secrets."""

import asyncio
import email
import email.policy
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.engine import Engine

from app import clock, config, crypto, mail, outbox
from app.db import session_scope
from app.models import DeliveryStatus, OutboxMessage, VotingLink
from tests import factories
from tests.pgserver import free_port

VOTE = {"choices": {"delegated": "For", "constitution": "Against"}}
DEADLINE_SECONDS = 20.0
_LINK = re.compile(r"http://testserver/vote/([A-Za-z0-9_-]+)")


@dataclass(frozen=True)
class Received:
    recipients: tuple[str, ...]
    message_id: str
    message: EmailMessage
    connection: int

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        # A long subject is folded whole onto a continuation line; unfolding leaves a space.
        return str(self.message["Subject"]).strip()

    @property
    def token(self) -> str | None:
        found = _LINK.search(mail.plain_text(self.message))
        return found.group(1) if found else None


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it accepts and refuses what it is told to."""

    received: list[Received] = field(default_factory=list)
    deferred: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    connections: int = 0
    # Answer "451 4.3.0 try later" at DATA for this many more messages.
    defer_next: int = 0
    # Answer "550 5.1.1 no such user" at RCPT for these addresses.
    unknown_users: set[str] = field(default_factory=set)
    # Seconds each message takes to accept, so concurrent senders overlap.
    data_delay: float = 0.0
    # Called with each accepted message before the server answers 250.
    on_data: Callable[[Received], None] | None = None
    _connection_of: dict[Session, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _opened(self, session: Session, hostname: str) -> None:
        session.host_name = hostname
        with self._lock:
            self.connections += 1
            self._connection_of[session] = self.connections

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        self._opened(session, hostname)
        return f"250 {server.hostname}"

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self._opened(session, hostname)
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.unknown_users:
            with self._lock:
                self.refused.append(address)
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert raw is not None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        got = Received(
            recipients=tuple(envelope.rcpt_tos),
            message_id=str(message["Message-ID"]),
            message=message,
            connection=self._connection_of.get(session, 0),
        )
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        with self._lock:
            if self.defer_next > 0:
                self.defer_next -= 1
                self.deferred.append(got)
                return "451 4.3.0 try later"
        if self.on_data is not None:
            self.on_data(got)
        with self._lock:
            self.received.append(got)
        return "250 OK"

    def accepted(self) -> list[Received]:
        with self._lock:
            return list(self.received)


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port = free_port()
        self.handler = Recorder()
        self._monkeypatch = monkeypatch
        self._controller: Controller | None = None

    def start(self) -> None:
        assert self._controller is None
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def configure(self, **env: str) -> None:
        """Set more settings for Mandate, read afresh from the environment."""
        for name, value in env.items():
            self._monkeypatch.setenv(name, value)
        config.get_settings.cache_clear()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """Mandate sending through a real SMTP server on loopback, with tiny retry delays."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        server = SmtpServer(monkeypatch)
        server.configure(
            MAIL_BACKEND="smtp",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(server.port),
            SMTP_SECURITY="none",
            MAIL_RETRY_BASE_SECONDS="0.05",
            MAIL_RETRY_MAX_SECONDS="0.2",
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
    # Only the settings: the engine stays, since the database fixtures own it.
    config.get_settings.cache_clear()


def _practices(n: int, emails: Callable[[int], int]) -> list[dict[str, Any]]:
    """The factory roll, with emails(i) addresses for the i-th practice."""
    rows = factories.roll(n, emails_per_practice=3)
    for i, row in enumerate(rows):
        row["emails"] = row["emails"][: emails(i)]
    return rows


def _open_now(client: TestClient, secretariat: dict[str, str], rows: list[dict[str, Any]]) -> int:
    """A ballot open in real time, so retry delays pass without moving the clock."""
    now = clock.now()
    ballot_id = factories.draft_ballot(
        client,
        secretariat,
        opens_at=(now - timedelta(hours=1)).isoformat(),
        closes_at=(now + timedelta(days=1)).isoformat(),
    )
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=rows, headers=secretariat)
    assert response.status_code == 200, response.text
    opened = {"acknowledge_warnings": True}
    response = client.post(f"/api/v1/ballots/{ballot_id}/open", json=opened, headers=secretariat)
    assert response.status_code == 200, response.text
    return ballot_id


def _deliver_until(done: Callable[[], bool], *, deadline: float = DEADLINE_SECONDS) -> None:
    """Run the sender as the server's background task would, until done() or the deadline."""
    give_up = time.monotonic() + deadline
    while True:
        outbox.deliver_pending()
        if done():
            return
        assert time.monotonic() < give_up, "the outbox was not delivered in time"
        time.sleep(0.05)


def _outbox() -> list[OutboxMessage]:
    with session_scope() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _all_settled() -> bool:
    return all(
        m.status in {DeliveryStatus.sent, DeliveryStatus.failed, DeliveryStatus.cancelled}
        for m in _outbox()
    )


def _deliveries(client: TestClient, ballot_id: int, secretariat: dict[str, str]) -> list[Any]:
    response = client.get(f"/api/v1/ballots/{ballot_id}/deliveries", headers=secretariat)
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()
    return rows


def _practice_of(client: TestClient, token: str) -> str:
    response = client.get(f"/api/v1/vote/{token}")
    assert response.status_code == 200, response.text
    code: str = response.json()["practice"]["ods_code"]
    return code


def _stored_text(engine: Engine) -> str:
    """Every value in every table, as text."""
    rows: list[Any] = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows += connection.execute(text(f"SELECT * FROM {table}")).all()  # noqa: S608
    return "\n".join(str(row) for row in rows)


def _of_kind(received: list[Received], subject_starts: str) -> list[Received]:
    return [r for r in received if r.subject.startswith(subject_starts)]


@pytest.mark.parametrize("batch_size", [500, 25])
def test_opening_sends_one_working_invitation_per_address_over_one_connection_per_batch(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str], batch_size: int
) -> None:
    smtp.configure(MAIL_BATCH_SIZE=str(batch_size))
    rows = _practices(40, emails=lambda i: 1 + (i * 7) % 3)
    addresses = {a: row["ods_code"] for row in rows for a in row["emails"]}
    assert set(Counter(len(row["emails"]) for row in rows)) == {1, 2, 3}
    _open_now(client, secretariat, rows)

    report = outbox.deliver_pending()

    received = smtp.handler.accepted()
    assert report.sent == len(addresses)
    assert sorted(r.to for r in received) == sorted(addresses)
    assert all(r.recipients == (r.to,) for r in received)
    assert {r.message_id for r in received} == {m.message_id for m in _outbox()}
    tokens = [r.token for r in received]
    assert None not in tokens
    assert len(set(tokens)) == len(addresses)
    for r in received:
        assert r.token is not None
        assert _practice_of(client, r.token) == addresses[r.to]
    batches = math.ceil(len(addresses) / batch_size)
    assert smtp.handler.connections == batches
    per_connection = Counter(r.connection for r in received)
    assert per_connection == {
        n + 1: min(batch_size, len(addresses) - n * batch_size) for n in range(batches)
    }


def test_invitations_wait_for_a_mail_server_that_is_down_and_arrive_once_it_is_up(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    smtp.stop()
    ballot_id = _open_now(client, secretariat, _practices(9, emails=lambda i: 1 + i % 2))

    report = outbox.deliver_pending()

    queued = _outbox()
    assert report.sent == 0
    assert report.failed == 0
    assert report.retrying >= len(queued) > 0
    assert {m.status for m in queued} == {DeliveryStatus.queued}
    assert all(m.last_error and "cannot reach 127.0.0.1" in m.last_error for m in queued)
    assert all(d["status"] == "queued" for d in _deliveries(client, ballot_id, secretariat))

    smtp.start()
    _deliver_until(lambda: len(smtp.handler.accepted()) >= len(queued))
    time.sleep(0.3)  # longer than any retry delay: a duplicate would have gone by now
    outbox.deliver_pending()

    received = Counter(r.message_id for r in smtp.handler.accepted())
    assert received == Counter({m.message_id: 1 for m in queued})
    assert {m.status for m in _outbox()} == {DeliveryStatus.sent}
    # Links minted for attempts that never reached the server were forgotten again.
    with session_scope() as session:
        links = session.scalar(select(func.count()).select_from(VotingLink))
    assert links == len(queued)


def test_messages_the_server_defers_are_retried_and_delivered(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    smtp.handler.defer_next = 3
    ballot_id = _open_now(client, secretariat, _practices(9, emails=lambda i: 1))

    _deliver_until(_all_settled)

    deferred = {r.to: r.message_id for r in smtp.handler.deferred}
    assert len(deferred) == 3
    received = smtp.handler.accepted()
    assert Counter(r.message_id for r in received) == Counter({m.message_id: 1 for m in _outbox()})
    assert {r.to: r.message_id for r in received if r.to in deferred} == deferred
    deliveries = _deliveries(client, ballot_id, secretariat)
    assert len(deliveries) == 9
    assert {d["status"] for d in deliveries} == {"sent"}
    assert {d["to"] for d in deliveries if d["attempts"] > 1} == set(deferred)
    assert all(d["last_error"] is None for d in deliveries)


def test_a_message_the_server_refuses_for_good_is_failed_with_its_reply_and_not_retried(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    rows = _practices(9, emails=lambda i: 2)
    unknown = rows[4]["emails"][1]
    smtp.handler.unknown_users = {unknown}
    ballot_id = _open_now(client, secretariat, rows)

    _deliver_until(_all_settled)
    time.sleep(0.3)  # longer than any retry delay
    outbox.deliver_pending()

    deliveries = _deliveries(client, ballot_id, secretariat)
    failed = [d for d in deliveries if d["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["to"] == unknown
    assert failed[0]["ods_code"] == rows[4]["ods_code"]
    assert "550" in failed[0]["last_error"]
    assert "5.1.1 no such user" in failed[0]["last_error"]
    assert failed[0]["attempts"] == 1
    assert failed[0]["sent_at"] is None
    assert smtp.handler.refused == [unknown]
    others = [d for d in deliveries if d["to"] != unknown]
    assert len(others) == 17
    assert {d["status"] for d in others} == {"sent"}
    assert sorted(r.to for r in smtp.handler.accepted()) == sorted(d["to"] for d in others)


def test_two_senders_at_once_never_send_a_message_twice(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str], db: Engine
) -> None:
    smtp.configure(MAIL_BATCH_SIZE="5")
    smtp.handler.data_delay = 0.01
    _open_now(client, secretariat, _practices(30, emails=lambda i: 1 + i % 3))
    start = threading.Barrier(2)
    reports: list[outbox.Report] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            start.wait(timeout=30)
            reports.append(outbox.deliver_pending())
        except BaseException as exc:
            errors.append(exc)

    def linger(*args: Any) -> None:
        # Hold each claim open a moment, so the two senders' claims overlap every time.
        statement: str = args[2]
        if all(part in statement for part in ("SELECT", "FROM outbox_message", "LIMIT")):
            time.sleep(0.05)

    event.listen(db, "after_cursor_execute", linger)
    try:
        senders = [threading.Thread(target=sender) for _ in range(2)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(timeout=120)
    finally:
        event.remove(db, "after_cursor_execute", linger)

    assert errors == []
    queued = _outbox()
    received = [r.message_id for r in smtp.handler.accepted()]
    assert len(received) == len(set(received)) == 60
    assert set(received) == {m.message_id for m in queued}
    assert {m.status for m in queued} == {DeliveryStatus.sent}
    assert all(m.attempts == 1 for m in queued)
    assert sorted(r.sent for r in reports)[0] > 0  # both senders took a share
    assert sum(r.sent for r in reports) == 60


def test_no_token_rests_in_the_database_while_or_after_it_is_sent(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str], db: Engine
) -> None:
    _open_now(client, secretariat, _practices(9, emails=lambda i: 1 + i % 3))
    before = _stored_text(db)
    # What the database holds at the moment the mail server has each message in hand.
    in_flight: list[tuple[str | None, str]] = []
    smtp.handler.on_data = lambda got: in_flight.append((got.token, _stored_text(db)))

    report = outbox.deliver_pending()

    after = _stored_text(db)
    tokens = [r.token for r in smtp.handler.accepted()]
    assert report.sent == len(tokens) == len(in_flight) == 18
    assert all(t is not None for t in tokens)
    assert not [t for t in tokens if t and t in before]
    assert not [t for t in tokens if t and t in after]
    for token, stored in in_flight:
        assert token is not None
        assert token not in stored
        assert crypto.token_hash(token) in stored  # the link was recorded before it was sent
    assert all(t and crypto.token_hash(t) in after for t in tokens)


def test_reminders_reach_only_practices_that_have_not_voted_and_both_links_work(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    rows = _practices(9, emails=lambda i: 2)
    ballot_id = _open_now(client, secretariat, rows)
    outbox.deliver_pending()
    invitations = {r.to: r.token for r in smtp.handler.accepted()}
    voted = {rows[0]["ods_code"], rows[1]["ods_code"]}
    for row in rows[:2]:
        response = client.post(f"/api/v1/vote/{invitations[row['emails'][0]]}", json=VOTE)
        assert response.status_code == 200, response.text

    response = client.post(f"/api/v1/ballots/{ballot_id}/reminders", headers=secretariat)
    assert response.status_code == 200, response.text
    assert response.json()["practices"] == 7
    _deliver_until(_all_settled)

    reminders = _of_kind(smtp.handler.accepted(), "Reminder")
    waiting = [row for row in rows if row["ods_code"] not in voted]
    assert sorted(r.to for r in reminders) == sorted(a for row in waiting for a in row["emails"])
    reminder_links = {r.to: r.token for r in reminders}
    for row in waiting:
        for address in row["emails"]:
            earlier, later = invitations[address], reminder_links[address]
            assert earlier is not None
            assert later is not None
            assert earlier != later
            assert _practice_of(client, earlier) == _practice_of(client, later) == row["ods_code"]
    practice = waiting[0]["emails"]
    assert client.post(f"/api/v1/vote/{reminder_links[practice[1]]}", json=VOTE).status_code == 200
    assert client.post(f"/api/v1/vote/{invitations[practice[0]]}", json=VOTE).status_code == 409
    assert client.post(f"/api/v1/vote/{reminder_links[practice[0]]}", json=VOTE).status_code == 409
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    assert turnout["voted"] == 3


def test_a_reissue_delivers_a_new_link_and_the_old_links_stop_working(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    rows = _practices(9, emails=lambda i: 2)
    ballot_id = _open_now(client, secretariat, rows)
    outbox.deliver_pending()
    old = {r.to: r.token for r in smtp.handler.accepted()}
    practice = rows[3]

    response = client.post(
        f"/api/v1/ballots/{ballot_id}/voters/{practice['ods_code']}/reissue", headers=secretariat
    )
    assert response.status_code == 200, response.text
    _deliver_until(_all_settled)

    new_links = _of_kind(smtp.handler.accepted(), "Your new voting link")
    assert sorted(r.to for r in new_links) == sorted(practice["emails"])
    for message in new_links:
        assert "Any earlier link for your practice no longer works" in mail.plain_text(
            message.message
        )
        assert message.token is not None
        assert _practice_of(client, message.token) == practice["ods_code"]
    for address in practice["emails"]:
        assert client.get(f"/api/v1/vote/{old[address]}").status_code == 404
        assert client.post(f"/api/v1/vote/{old[address]}", json=VOTE).status_code == 404
    other = rows[4]["emails"][0]
    assert client.get(f"/api/v1/vote/{old[other]}").status_code == 200


def test_the_vote_confirmation_reaches_every_address_without_receipt_or_choices(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    rows = _practices(9, emails=lambda i: 3)
    _open_now(client, secretariat, rows)
    outbox.deliver_pending()
    token = next(r.token for r in smtp.handler.accepted() if r.to == rows[2]["emails"][1])

    response = client.post(f"/api/v1/vote/{token}", json=VOTE)
    assert response.status_code == 200, response.text
    receipt = response.json()["receipt_code"]
    _deliver_until(_all_settled)

    confirmations = _of_kind(smtp.handler.accepted(), "Vote recorded")
    assert sorted(r.to for r in confirmations) == sorted(rows[2]["emails"])
    for message in confirmations:
        whole = message.message.as_string()
        assert rows[2]["ods_code"] in mail.plain_text(message.message)
        assert receipt not in whole
        assert receipt.replace("-", "") not in whole
        assert "Against" not in whole
        assert "/vote/" not in whole


def test_reading_a_link_any_number_of_times_consumes_nothing(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str]
) -> None:
    ballot_id = _open_now(client, secretariat, _practices(9, emails=lambda i: 1))
    outbox.deliver_pending()
    token = next(r.token for r in smtp.handler.accepted() if "g83001" in r.to)
    assert token is not None

    for _ in range(5):
        for path in (f"/api/v1/vote/{token}", f"/vote/{token}"):
            assert client.get(path).status_code == 200
        # The emailed page link answers HEAD, as link scanners probe with it.
        assert client.head(f"/vote/{token}").status_code == 200

    read = client.get(f"/api/v1/vote/{token}").json()
    assert read["has_voted"] is False
    assert read["voted_at"] is None
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    assert turnout["voted"] == 0
    assert client.post(f"/api/v1/vote/{token}", json=VOTE).status_code == 200
    assert client.get(f"/api/v1/vote/{token}").json()["has_voted"] is True


METADATA = {
    "id",
    "message_id",
    "kind",
    "status",
    "ballot_id",
    "roll_entry_id",
    "to_address",
    "subject",
    "attempts",
    "next_attempt_at",
    "claimed_until",
    "last_error",
    "created_at",
    "sent_at",
}


def test_after_delivery_the_outbox_keeps_metadata_only(
    smtp: SmtpServer, client: TestClient, secretariat: dict[str, str], db: Engine
) -> None:
    rows = _practices(9, emails=lambda i: 2)
    ballot_id = _open_now(client, secretariat, rows)
    outbox.deliver_pending()
    first = next(r.token for r in smtp.handler.accepted() if r.to == rows[0]["emails"][0])
    assert client.post(f"/api/v1/vote/{first}", json=VOTE).status_code == 200
    ballot = f"/api/v1/ballots/{ballot_id}"
    reissued = client.post(f"{ballot}/voters/{rows[1]['ods_code']}/reissue", headers=secretariat)
    assert reissued.status_code == 200
    assert client.post(f"{ballot}/reminders", headers=secretariat).status_code == 200
    _deliver_until(_all_settled)

    received = smtp.handler.accepted()
    kinds = Counter(str(m.kind) for m in _outbox())
    assert set(kinds) == {"invitation", "confirmation", "new_link", "reminder"}
    assert {c["name"] for c in inspect(db).get_columns("outbox_message")} == METADATA
    with db.connect() as connection:
        stored = [str(row) for row in connection.execute(text("SELECT * FROM outbox_message"))]
    assert len(stored) == len(received) == sum(kinds.values())
    tokens = [r.token for r in received if r.token is not None]
    assert len(tokens) == kinds["invitation"] + kinds["new_link"] + kinds["reminder"]
    for row in stored:
        assert "/vote/" not in row
        assert "Dear practice manager" not in row
        assert "do not forward" not in row
        assert not [t for t in tokens if t in row]
