"""The roll of member practices: import and validation, and the links issued to them."""

import csv
import io
from collections import Counter
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app import audit, clock, config, definitions, errors, outbox, proof
from app.models import Ballot, BallotStatus, MessageKind, RollEntry, VotingLink

CSV_COLUMNS = ("ods_code", "name", "locality", "list_size", "emails")
MAX_PRACTICES = 20_000


class RollRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An ODS code of a GP practice: one letter and five digits, e.g. G83001.
    ods_code: Annotated[
        str,
        BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
        StringConstraints(pattern=r"^[A-Z][0-9]{5}$"),
    ]
    # Names go into emails and the declaration: one line each, no control characters.
    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
        AfterValidator(definitions.one_line),
    ]
    locality: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
        AfterValidator(definitions.one_line),
    ]
    list_size: int = Field(gt=0, le=1_000_000)
    emails: list[EmailStr] = Field(min_length=1, max_length=10)

    @field_validator("emails", mode="before")
    @classmethod
    def _split_emails(cls, value: Any) -> Any:
        # In CSV several addresses share one cell, separated by ";" or spaces.
        if isinstance(value, str):
            return [part for part in value.replace(",", ";").replace(" ", ";").split(";") if part]
        return value


_rows = TypeAdapter(list[RollRow])


def outside_domains(emails: list[Any]) -> list[str]:
    """The addresses not in ALLOWED_EMAIL_DOMAINS (a subdomain of an allowed one is in it)."""
    allowed = config.get_settings().email_domains
    outside = []
    for email in emails:
        domain = str(email).rpartition("@")[2].lower()
        if not any(domain == d or domain.endswith("." + d) for d in allowed):
            outside.append(str(email))
    return outside


def domain_problem(emails: list[Any]) -> str | None:
    # Names the domain, not the address: refusals never echo what was sent.
    outside = sorted({e.rpartition("@")[2].lower() for e in outside_domains(emails)})
    if not outside:
        return None
    allowed = ", ".join(config.get_settings().email_domains)
    return (
        f"an address is in {', '.join(outside)}, outside the allowed email domains "
        f"({allowed}): give the practice's address in one of them"
    )


def parse_json(data: Any) -> list[RollRow]:
    """Validate a roll given as a JSON list of practices, reporting every problem."""
    if not isinstance(data, list):
        raise errors.InvalidInput("The roll must be a list of practices.")
    if len(data) > MAX_PRACTICES:
        raise errors.InvalidInput(f"A roll holds at most {MAX_PRACTICES} practices.")
    try:
        rows = _rows.validate_python(data)
    except ValidationError as exc:
        _refuse(errors.problems_from_validation(exc.errors(), prefix="roll"))
    outside = [
        {"loc": f"roll[{i}].emails", "problem": problem}
        for i, row in enumerate(rows)
        if (problem := domain_problem(row.emails)) is not None
    ]
    if outside:
        _refuse(outside)
    _check_unique(rows)
    return rows


def parse_csv(text: str) -> list[RollRow]:
    """Validate a CSV roll (header: ods_code,name,locality,list_size,emails), row by row."""
    # newline="": the csv module sees the line ends itself, so a CR inside a quoted cell stays in
    # the cell (where the name check refuses it) and a stray one ends a row instead of raising.
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        return _parse_rows(reader)
    except csv.Error as exc:  # e.g. a cell past the reader's size limit
        raise errors.InvalidInput(
            f"The CSV file could not be read after line {reader.line_num}: {exc}."
        ) from None


def _parse_rows(reader: "csv.DictReader[str]") -> list[RollRow]:
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise errors.InvalidInput(
            f"The CSV header is missing {', '.join(missing)}; "
            f"the first line must be: {','.join(CSV_COLUMNS)}"
        )
    rows, problems = [], []
    for line, raw in enumerate(reader, start=2):
        record = {k.strip(): (v or "") for k, v in raw.items() if k is not None}
        if None in raw:
            problems.append({"loc": f"line {line}", "problem": "more cells than the header has"})
            continue
        code = record.get("ods_code", "").strip()
        where = f"line {line}" + (f" ({code})" if code else "")
        try:
            row = RollRow.model_validate({c: record.get(c, "") for c in CSV_COLUMNS})
        except ValidationError as exc:
            problems += errors.problems_from_validation(exc.errors(), prefix=where)
        else:
            problem = domain_problem(row.emails)
            if problem is None:
                rows.append(row)
            else:
                problems.append({"loc": f"{where}.emails", "problem": problem})
        if line > MAX_PRACTICES + 1:
            raise errors.InvalidInput(f"A roll holds at most {MAX_PRACTICES} practices.")
    if problems:
        _refuse(problems)
    _check_unique(rows)
    return rows


def _check_unique(rows: list[RollRow]) -> None:
    if not rows:
        raise errors.InvalidInput("The roll has no practices.")
    duplicates = sorted(code for code, n in Counter(r.ods_code for r in rows).items() if n > 1)
    if duplicates:
        _refuse([{"loc": code, "problem": "listed more than once"} for code in duplicates])


def _refuse(problems: list[dict[str, Any]]) -> Any:
    raise errors.InvalidInput(
        f"The roll was not loaded: {len(problems)} problem(s). "
        + errors.describe_problems(problems[:20])
        + (" …" if len(problems) > 20 else ""),
        problems=problems,
    )


def replace(
    session: Session, *, ballot: Ballot, rows: list[RollRow], actor: str
) -> list[RollEntry]:
    """Replace the roll of a draft ballot with these practices."""
    if ballot.status != BallotStatus.draft:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}; the roll is frozen once a ballot opens."
        )
    session.execute(delete(RollEntry).where(RollEntry.ballot_id == ballot.id))
    entries = [
        RollEntry(
            ballot_id=ballot.id,
            ods_code=r.ods_code,
            name=r.name,
            locality=r.locality,
            list_size=r.list_size,
            emails=[str(e).lower() for e in r.emails],
        )
        for r in rows
    ]
    session.add_all(entries)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="roll_loaded",
        practices=len(entries), roll_sha256=roll_hash(session, ballot=ballot),
    )  # fmt: skip
    return entries


def entries(session: Session, *, ballot: Ballot) -> list[RollEntry]:
    return list(
        session.scalars(
            select(RollEntry).where(RollEntry.ballot_id == ballot.id).order_by(RollEntry.ods_code)
        )
    )


def entry(session: Session, *, ballot: Ballot, ods_code: str) -> RollEntry:
    found = session.scalar(
        select(RollEntry).where(
            RollEntry.ballot_id == ballot.id, RollEntry.ods_code == ods_code.strip().upper()
        )
    )
    if found is None:
        raise errors.NotFound(f"{ods_code} is not on the roll of ballot {ballot.id}.")
    return found


def canonical(
    session: Session, *, ballot: Ballot, votes_for: Callable[[int], int] | None = None
) -> list[dict[str, Any]]:
    """The roll as hashed at open; a draft's votes as `votes_for` will give them at open."""
    return [
        {
            "ods_code": e.ods_code,
            "name": e.name,
            "locality": e.locality,
            "list_size": e.list_size,
            "emails": e.emails,
            "votes": e.votes
            if e.votes is not None or votes_for is None
            else votes_for(e.list_size),
        }
        for e in entries(session, ballot=ballot)
    ]


def roll_hash(session: Session, *, ballot: Ballot) -> str:
    return proof.sha256_hex(proof.canonical_json(canonical(session, ballot=ballot)))


def invite_all(
    session: Session, *, ballot: Ballot, on_progress: Callable[[int, int], None] | None = None
) -> None:
    """Queue an invitation to every address on the roll; each link is minted when it is sent."""
    practices = entries(session, ballot=ballot)
    for done, practice in enumerate(practices, start=1):
        outbox.enqueue(session, kind=MessageKind.invitation, ballot=ballot, practice=practice)
        if on_progress is not None:
            on_progress(done, len(practices))
    session.flush()


def reissue(session: Session, *, ballot: Ballot, ods_code: str, actor: str) -> RollEntry:
    """Revoke every link of a practice and send it new ones."""
    if ballot.status != BallotStatus.open:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}; links are re-issued only while it is open."
        )
    practice = entry(session, ballot=ballot, ods_code=ods_code)
    if practice.voted_at is not None:
        raise errors.Conflict(
            f"{practice.name} ({practice.ods_code}) has already voted; "
            "a new link could not change that."
        )
    revoked = revoke_links(session, practice=practice)
    audit.append(
        session, ballot=ballot, actor=actor, action="links_revoked",
        ods_code=practice.ods_code, links=revoked, new_links_to=len(practice.emails),
    )  # fmt: skip
    outbox.cancel_links_queued(
        session, practice=practice, reason="not sent: replaced by a new link"
    )
    outbox.enqueue(session, kind=MessageKind.new_link, ballot=ballot, practice=practice)
    session.flush()
    return practice


def give_notice(session: Session, *, ballot: Ballot, actor: str) -> int:
    """Queue the notice of ballot to every address on a draft's roll; returns practices."""
    if ballot.status != BallotStatus.draft:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}; the notice goes before it opens."
        )
    practices = entries(session, ballot=ballot)
    if not practices:
        raise errors.Conflict("The roll is empty: load the member practices first.")
    for practice in practices:
        outbox.enqueue(session, kind=MessageKind.notice, ballot=ballot, practice=practice)
    ballot.notice_sent_at = clock.now()
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="notice_queued", practices=len(practices)
    )
    return len(practices)


def remind(session: Session, *, ballot: Ballot, actor: str) -> int:
    """Queue a reminder to every address of each practice that has not voted; returns practices."""
    if ballot.status != BallotStatus.open or clock.now() >= ballot.closes_at:
        raise errors.WrongState(
            f"Ballot {ballot.id} is not open for voting; reminders go only while it is."
        )
    waiting = [p for p in entries(session, ballot=ballot) if p.voted_at is None]
    for practice in waiting:
        outbox.enqueue(session, kind=MessageKind.reminder, ballot=ballot, practice=practice)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="reminders_queued",
        practices=len(waiting), ods_codes=[p.ods_code for p in waiting],
    )  # fmt: skip
    return len(waiting)


def revoke_links(session: Session, *, practice: RollEntry) -> int:
    revoked = session.execute(
        update(VotingLink)
        .where(VotingLink.roll_entry_id == practice.id, VotingLink.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    return int(revoked.rowcount)  # type: ignore[attr-defined]
