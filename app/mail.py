"""Email: the words of every message Mandate sends, and the transports that carry them."""

import contextlib
import html
import mailbox
import re
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined

from app import clock, crypto, proof, signing
from app.config import get_settings
from app.models import Ballot, MessageKind, RollEntry

_templates = Environment(
    loader=PackageLoader("app", "templates/email"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701  (plain text; the HTML part is escaped below)
)
_templates.filters["london"] = clock.london

_SUBJECTS = {
    MessageKind.invitation: "Vote now: {title} ({organisation})",
    MessageKind.new_link: "Your new voting link: {title} ({organisation})",
    MessageKind.reminder: "Reminder, your practice has not voted yet: {title} ({organisation})",
    MessageKind.confirmation: "Vote recorded for your practice: {title} ({organisation})",
    MessageKind.extension: "Voting extended: {title} ({organisation})",
    MessageKind.closed: "Voting has closed: {title} ({organisation})",
    MessageKind.notice: "Notice of ballot: {title} ({organisation})",
    MessageKind.published: "Result published: {title} ({organisation})",
    MessageKind.digest: "Scrutineer's daily digest: {title} ({organisation})",
    MessageKind.addresses_changed: "Your practice's addresses were changed: {title} "
    "({organisation})",
}
# Kinds whose message carries a voting link, minted when the message is sent.
WITH_LINK = frozenset({MessageKind.invitation, MessageKind.new_link, MessageKind.reminder})


class Titled(Protocol):
    @property
    def title(self) -> str: ...
    @property
    def organisation_name(self) -> str: ...


def subject(kind: MessageKind, ballot: Titled) -> str:
    return _SUBJECTS[kind].format(title=ballot.title, organisation=ballot.organisation_name)


def vote_url(token: str) -> str:
    return f"{get_settings().base_url}/vote/{token}"


# The papers-only link's signature: its own purpose, so it can never pass as anything else.
PAPERS = "ballot-papers"
PAPERS_MAX_AGE_SECONDS = 400 * 24 * 3600


def papers_url(ballot_id: int) -> str:
    """The link that shows a ballot's papers and dates and cannot vote."""
    return f"{get_settings().base_url}/papers/{crypto.signer(PAPERS).dumps(ballot_id)}"


def render(
    kind: MessageKind,
    *,
    ballot: Ballot,
    practice: RollEntry | None,
    to: str,
    message_id: str,
    link: str | None = None,
    audit_head: tuple[int, str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> EmailMessage:
    """The message, in plain text and HTML from the one template; `facts` are the kind's own."""
    settings = get_settings()
    text = _templates.get_template(f"{kind.value}.txt").render(
        ballot=ballot,
        practice=practice,
        questions=ballot.definition["questions"],
        contact=ballot.definition["organisation"].get("contact")
        or f"the governance team at {ballot.organisation_name}",
        link=link,
        audit_head=audit_head,
        documents=ballot.definition["documents"],
        governance=ballot.definition.get("governance", {}),
        sender=settings.mail_from,
        papers=papers_url(ballot.id),
        key_fingerprint=proof.key_fingerprint(signing.public_b64()),
        **(facts or {}),
        to=to,
    )
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject(kind, ballot)
    message["Date"] = clock.now()
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(_html(text), subtype="html")
    return message


_URL = re.compile(r"(https?://[^\s<]+)")


def _html(text: str) -> str:
    """The plain text as simple HTML: paragraphs, and the link as a link."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    body = "".join(
        "<p>" + _URL.sub(r'<a href="\1">\1</a>', html.escape(p)).replace("\n", "<br>\n") + "</p>\n"
        for p in paragraphs
    )
    return (
        '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer"></head>'
        f'<body style="font-family: Arial, sans-serif; font-size: 16px">\n{body}</body></html>\n'
    )


class DeliveryFailed(Exception):
    """The server refused this one message; `permanent` when retrying cannot help."""

    def __init__(self, reply: str, *, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


class ConnectionLost(Exception):
    """The mail server cannot be reached, or went away: try every message again later."""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class MaildirTransport:
    """The embedded default: each message becomes a standard .eml file in a local maildir."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(path, create=True)

    def send(self, message: EmailMessage) -> None:
        self.box.add(message)


class SmtpTransport:
    """One SMTP connection carrying many messages."""

    def __init__(self, connection: smtplib.SMTP) -> None:
        self.connection = connection

    def send(self, message: EmailMessage) -> None:
        try:
            self.connection.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise DeliveryFailed(_reply(code, reply), permanent=code >= 500) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise ConnectionLost(str(exc) or "the mail server closed the connection") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                _reply(exc.smtp_code, exc.smtp_error), permanent=exc.smtp_code >= 500
            ) from None
        except OSError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from None


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {words}".strip()[:500]


@contextlib.contextmanager
def transport() -> Iterator[Transport]:
    """The configured way out: a maildir, or one SMTP session for a batch of messages."""
    settings = get_settings()
    if settings.mail_backend == "maildir":
        assert settings.maildir is not None  # noqa: S101  (filled in by Settings)
        yield MaildirTransport(settings.maildir)
        return
    try:
        connection = _connect()
    except (OSError, smtplib.SMTPException) as exc:
        raise ConnectionLost(
            f"cannot reach {settings.smtp_host}:{settings.smtp_port}: {exc}"
        ) from None
    try:
        yield SmtpTransport(connection)
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            connection.quit()


def _connect() -> smtplib.SMTP:
    settings = get_settings()
    context = ssl.create_default_context()
    options: dict[str, Any] = {"timeout": settings.smtp_timeout_seconds}
    if settings.smtp_security == "tls":
        connection: smtplib.SMTP = smtplib.SMTP_SSL(
            settings.smtp_host, settings.smtp_port, context=context, **options
        )
    else:
        connection = smtplib.SMTP(settings.smtp_host, settings.smtp_port, **options)
        if settings.smtp_security == "starttls":
            connection.starttls(context=context)
    if settings.smtp_username:
        connection.login(settings.smtp_username, settings.smtp_password)
    return connection


def plain_text(message: Message) -> str:
    """The plain-text part of a message, as a reader sees it."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""
