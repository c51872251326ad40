"""Email: the messages Mandate sends and the backend that delivers them."""

import mailbox
from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined

from app import clock
from app.config import get_settings
from app.models import Ballot, RollEntry

_templates = Environment(
    loader=PackageLoader("app", "templates/email"),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701  (plain-text bodies, never HTML)
)
_templates.filters["london"] = clock.london


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class MaildirMailer:
    """The embedded default: each message becomes a standard .eml file in a local maildir."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, message: EmailMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.path, create=True).add(message)


def get_mailer() -> Mailer:
    settings = get_settings()
    if settings.mail_backend != "maildir":
        raise ValueError(f"MAIL_BACKEND={settings.mail_backend!r} is not known; use 'maildir'")
    assert settings.maildir is not None  # noqa: S101  (filled in by Settings)
    return MaildirMailer(settings.maildir)


def send_all(messages: Iterable[EmailMessage]) -> None:
    mailer = get_mailer()
    for message in messages:
        mailer.send(message)


def _message(to: str, subject: str, template: str, **context: Any) -> EmailMessage:
    settings = get_settings()
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = clock.now()
    message["Message-ID"] = make_msgid(domain="mandate.invalid")
    message.set_content(_templates.get_template(template).render(**context))
    return message


def vote_url(token: str) -> str:
    return f"{get_settings().base_url}/vote/{token}"


def invitation(ballot: Ballot, practice: RollEntry, address: str, *, token: str) -> EmailMessage:
    """The invitation to vote; the link is in the body, never in the subject."""
    return _message(
        address,
        f"Vote now: {ballot.title} ({ballot.organisation_name})",
        "invitation.txt",
        ballot=ballot,
        practice=practice,
        questions=ballot.definition["questions"],
        link=vote_url(token),
    )


def extension_notice(
    ballot: Ballot, practice: RollEntry, address: str, *, previous: datetime
) -> EmailMessage:
    return _message(
        address,
        f"Voting extended: {ballot.title} ({ballot.organisation_name})",
        "extension.txt",
        ballot=ballot,
        practice=practice,
        previous=previous,
    )
