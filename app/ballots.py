"""A ballot's life: draft → open → closed → published (or voided), and its count."""

import base64
import mimetypes
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app import (
    announcements,
    audit,
    clock,
    counting,
    errors,
    national_list,
    outbox,
    proof,
    roll,
    scrutiny,
    tally_key,
)
from app.definitions import BallotDefinition, Question
from app.models import (
    Ballot,
    BallotBoxEntry,
    BallotStatus,
    Document,
    MessageKind,
    RollEntry,
    SealedBallot,
)

# A (locality, votes) group smaller than this narrows who could have cast a published entry.
SMALL_GROUP = 3
# Where a ballot's definition keeps its tally public key (and who holds the private key's
# shares), so the key is frozen with everything else at open (see sealed_box).
TALLY_KEY = "tally_key"


def _documents(definition: BallotDefinition) -> list[Document]:
    documents, problems = [], []
    for i, doc in enumerate(definition.documents):
        try:
            content = base64.b64decode(doc.content_base64 or "", validate=True)
        except ValueError:  # binascii.Error, or text that is not even ASCII
            problems.append({"loc": f"documents[{i}].content_base64", "problem": "not base64"})
            continue
        if not content:
            problems.append({"loc": f"documents[{i}]", "problem": "the document is empty"})
            continue
        digest = proof.sha256_hex(content)
        if doc.sha256 is not None and doc.sha256 != digest:
            problems.append(
                {"loc": f"documents[{i}].sha256", "problem": f"the file's SHA-256 is {digest}"}
            )
        media_type = mimetypes.guess_type(doc.file)[0] or "application/octet-stream"
        name = Path(doc.file).name
        documents.append(
            Document(
                position=i,
                title=doc.title,
                filename=name,
                media_type=media_type,
                sha256=digest,
                content=content,
            )
        )
    if problems:
        raise errors.InvalidInput(errors.describe_problems(problems), problems=problems)
    return documents


def _stored_definition(definition: BallotDefinition, documents: list[Document]) -> dict[str, Any]:
    stored = definition.model_dump(mode="json", exclude={"roll", "documents"})
    if stored["organisation"].get("commissioner_code") is None:
        # Unset, it is left out, so a definition written before the field hashes as it did.
        stored["organisation"].pop("commissioner_code", None)
    stored["documents"] = [
        {"title": d.title, "file": d.filename, "sha256": d.sha256} for d in documents
    ]
    return stored


def create(session: Session, *, definition: BallotDefinition, actor: str) -> Ballot:
    """Create a draft ballot from a validated definition."""
    existing = session.scalar(select(Ballot.id).where(Ballot.reference == definition.reference))
    if existing is not None:
        raise errors.Conflict(
            f'Ballot {existing} already has the reference "{definition.reference}"; '
            "choose another reference or edit that ballot."
        )
    ballot = Ballot(reference=definition.reference, status=BallotStatus.draft)
    _apply(ballot, definition)
    session.add(ballot)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="ballot_created",
        reference=ballot.reference, title=ballot.title, definition_sha256=definition_hash(ballot),
    )  # fmt: skip
    return ballot


def update(session: Session, *, ballot: Ballot, definition: BallotDefinition, actor: str) -> Ballot:
    """Replace a draft's definition; opened ballots are frozen."""
    require_status(ballot, BallotStatus.draft, "edit it")
    if definition.reference != ballot.reference:
        raise errors.InvalidInput("The reference of a ballot cannot be changed.")
    key = ballot.definition.get(TALLY_KEY)
    _apply(ballot, definition)
    if key is not None:  # the tally key is set on its own, and an edit keeps it
        ballot.definition = ballot.definition | {TALLY_KEY: key}
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="ballot_edited",
        title=ballot.title, definition_sha256=definition_hash(ballot),
    )  # fmt: skip
    scrutiny.withdraw_approval(session, ballot=ballot, actor=actor, because="ballot edited")
    return ballot


def replace_roll(
    session: Session, *, ballot: Ballot, rows: list[roll.RollRow], actor: str
) -> list[RollEntry]:
    """Replace a draft's roll; a scrutineer's approval of the old one no longer stands."""
    entries = roll.replace(session, ballot=ballot, rows=rows, actor=actor)
    scrutiny.withdraw_approval(session, ballot=ballot, actor=actor, because="roll replaced")
    return entries


def definition_hash(ballot: Ballot) -> str:
    return proof.sha256_hex(proof.canonical_json(ballot.definition))


def _apply(ballot: Ballot, definition: BallotDefinition) -> None:
    documents = _documents(definition)
    ballot.title = definition.title
    ballot.organisation_name = definition.organisation.name
    ballot.organisation_ods_code = definition.organisation.ods_code
    ballot.receipt_mode = definition.receipt_mode
    ballot.opens_at = definition.opens_at
    ballot.closes_at = definition.closes_at
    ballot.definition = _stored_definition(definition, documents)
    ballot.documents = documents


def get(
    session: Session, ballot_id: int, *, lock: str | None = None, with_documents: bool = False
) -> Ballot:
    """Load a ballot, optionally locking its row: "share" for casts, "update" for transitions."""
    if not 0 < ballot_id < 2**31:  # past the databases' integer: no ballot, not an error
        raise errors.NotFound(f"There is no ballot {ballot_id}.")
    query = select(Ballot).where(Ballot.id == ballot_id)
    if with_documents:
        query = query.options(selectinload(Ballot.documents))
    if lock is not None:
        # SQLite has no row locks and needs none: BEGIN IMMEDIATE makes every writer exclusive.
        query = query.with_for_update(read=lock == "share")
    ballot = session.scalar(query)
    if ballot is None:
        raise errors.NotFound(f"There is no ballot {ballot_id}.")
    return ballot


def document(session: Session, *, ballot: Ballot, position: int) -> Document:
    found = session.scalar(
        select(Document).where(Document.ballot_id == ballot.id, Document.position == position)
    )
    if found is None:
        raise errors.NotFound("There is no such document for this ballot.")
    return found


def list_all(session: Session) -> list[Ballot]:
    return list(session.scalars(select(Ballot).order_by(Ballot.id.desc())))


def rules_of(ballot: Ballot) -> counting.Rules:
    return counting.Rules.model_validate(ballot.definition["rules"])


# Parsed once per frozen definition: a cast reads the questions while it holds the database.
_frozen_questions: dict[str, list[Question]] = {}


def cached_questions(frozen_hash: str | None) -> list[Question] | None:
    return _frozen_questions.get(frozen_hash) if frozen_hash is not None else None


def questions_of(ballot: Ballot) -> list[Question]:
    cached = cached_questions(ballot.frozen_hash)
    if cached is not None:
        return cached
    questions = [Question.model_validate(q) for q in ballot.definition["questions"]]
    if ballot.frozen_hash is not None:
        _frozen_questions[ballot.frozen_hash] = questions
    return questions


def require_status(ballot: Ballot, status: BallotStatus, doing: str) -> None:
    if ballot.status != status:
        raise errors.WrongState(
            f"Ballot {ballot.id} is {ballot.status}; only a {status} ballot can {doing}."
        )


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    # A blocking problem stops the opening; a warning must be acknowledged.
    blocking: bool


def problems_before_opening(session: Session, *, ballot: Ballot) -> list[Problem]:
    """Everything that should stop, or give pause to, the opening of this ballot."""
    problems = []
    if ballot.status != BallotStatus.draft:
        problems.append(Problem("not_draft", f"The ballot is already {ballot.status}.", True))
    entries = roll.entries(session, ballot=ballot)
    if not entries:
        problems.append(
            Problem("empty_roll", "The roll is empty: load the member practices.", True)
        )
    notice = _notice_problem(ballot)
    if notice is not None:
        problems.append(Problem("notice_period", notice, True))
    unapproved = scrutiny.approval_problem(session, ballot=ballot)
    if unapproved is not None:
        problems.append(Problem("not_approved", unapproved, True))
    if ballot.closes_at <= clock.now():
        problems.append(
            Problem(
                "closes_in_past",
                f"The closing time ({clock.london(ballot.closes_at)}) has passed: edit the ballot.",
                True,
            )
        )
    if TALLY_KEY not in ballot.definition:
        problems.append(
            Problem(
                "no_tally_key",
                "The ballot has no tally key: the key holders make one with `mandate tally-key "
                "new` and its public key is set on the ballot, so every ballot is sealed until "
                "they open the box after close.",
                True,
            )
        )
    checked = national_list.check(session, ballot=ballot)
    findings = checked.findings()
    if findings:
        # A warning, not a block: the list can lag a merger by weeks, so a person decides. The
        # scrutineer sees these beside what they approve, the approval records them, and the
        # declaration lists them.
        problems.append(
            Problem(
                "roll_check",
                f"Checked against the national list of GP practices, the roll has "
                f"{len(findings)} finding(s): " + "; ".join(findings) + ".",
                False,
            )
        )
    rules = rules_of(ballot)
    groups = Counter((e.locality, rules.votes_for(e.list_size)) for e in entries)
    small = sorted(g for g, n in groups.items() if n < SMALL_GROUP)
    if small:
        described = ", ".join(f"{loc} with {votes} vote(s)" for loc, votes in small)
        problems.append(
            Problem(
                "small_groups",
                f"Fewer than {SMALL_GROUP} practices share these locality and vote figures, so a "
                f"published ballot-box entry could point to its practice: {described}.",
                False,
            )
        )
    return problems


def _notice_problem(ballot: Ballot) -> str | None:
    days = ballot.definition.get("governance", {}).get("notice_days")
    if days is None:
        return None
    if ballot.notice_sent_at is None:
        return f"The rules need {days} days' notice of the ballot: send the notice first."
    ready = ballot.notice_sent_at + timedelta(days=days)
    if clock.now() < ready:
        return (
            f"The rules need {days} days' notice: the ballot can open from {clock.london(ready)}."
        )
    return None


def open_ballot(
    session: Session,
    *,
    ballot_id: int,
    actor: str,
    acknowledge_warnings: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> Ballot:
    """Freeze the ballot and its roll, issue the links and write the invitations."""
    ballot = get(session, ballot_id, lock="update")
    require_status(ballot, BallotStatus.draft, "be opened")
    problems = problems_before_opening(session, ballot=ballot)
    blocking = [p for p in problems if p.blocking]
    if blocking:
        raise errors.Conflict(
            "The ballot cannot open yet: " + " ".join(p.message for p in blocking),
            problems=[{"loc": p.code, "problem": p.message} for p in blocking],
        )
    warnings = [p for p in problems if not p.blocking]
    if warnings and not acknowledge_warnings:
        raise errors.Conflict(
            "Acknowledge these warnings to open the ballot: "
            + " ".join(p.message for p in warnings),
            problems=[{"loc": p.code, "problem": p.message} for p in warnings],
        )
    rules, definition = rules_of(ballot), ballot.definition
    for entry in roll.entries(session, ballot=ballot):
        entry.votes = rules.votes_for(entry.list_size)
    now = clock.now()
    ballot.status = BallotStatus.open
    ballot.opened_at = now
    ballot.frozen_hash = scrutiny.frozen_hash(session, ballot=ballot)
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="opened",
        frozen_hash=ballot.frozen_hash, definition_sha256=definition_hash(ballot),
        roll_sha256=roll.roll_hash(session, ballot=ballot),
        documents=[{"file": d["file"], "sha256": d["sha256"]} for d in definition["documents"]],
        eligible=len(roll.entries(session, ballot=ballot)), receipt_mode=ballot.receipt_mode,
        opens_at=proof.instant(ballot.opens_at), closes_at=proof.instant(ballot.closes_at),
        warnings_acknowledged=[w.code for w in warnings],
    )  # fmt: skip
    roll.invite_all(session, ballot=ballot, on_progress=on_progress)
    return ballot


def extend_close(
    session: Session, *, ballot_id: int, closes_at: datetime, reason: str, actor: str
) -> Ballot:
    """Move the close later, once, with a reason told to every practice."""
    ballot = get(session, ballot_id, lock="update")
    require_status(ballot, BallotStatus.open, "have its close extended")
    if ballot.close_extended_reason is not None:
        raise errors.Conflict("The close of this ballot has already been extended once.")
    if clock.now() >= ballot.closes_at:
        raise errors.Conflict("Voting has already closed; a close cannot be extended afterwards.")
    if closes_at <= ballot.closes_at:
        raise errors.InvalidInput(
            "The new closing time must be after the current one "
            f"({clock.london(ballot.closes_at)})."
        )
    if not reason.strip():
        raise errors.InvalidInput("Give the reason for the extension; every practice is told it.")
    audit.append(
        session, ballot=ballot, actor=actor, action="close_extended",
        closes_at_was=proof.instant(ballot.closes_at), closes_at=proof.instant(closes_at),
        reason=reason.strip(),
    )  # fmt: skip
    ballot.closes_at = closes_at
    ballot.close_extended_reason = reason.strip()
    session.flush()
    for practice in roll.entries(session, ballot=ballot):
        outbox.enqueue(session, kind=MessageKind.extension, ballot=ballot, practice=practice)
    session.flush()
    return ballot


def close_ballot(session: Session, *, ballot_id: int, actor: str) -> Ballot:
    """Stop voting; before the closing time only if every practice has voted."""
    # FOR UPDATE waits for every cast holding the row FOR SHARE, so no vote commits after this.
    ballot = get(session, ballot_id, lock="update")
    require_status(ballot, BallotStatus.open, "be closed")
    now = clock.now()
    if now < ballot.closes_at:
        eligible, voted = turnout_figures(session, ballot=ballot)
        if voted < eligible:
            raise errors.Conflict(
                f"Voting is open until {clock.london(ballot.closes_at)} and {eligible - voted} of "
                f"{eligible} practices have not voted; a ballot closes early only when every "
                "practice has voted."
            )
    ballot.status = BallotStatus.closed
    ballot.closed_at = now
    session.flush()
    sealed = sealed_ballots(session, ballot=ballot)
    # The box is still sealed: the trail fixes how many ballots it holds and exactly which
    # ciphertexts, so none can be added, swapped or removed before the holders open it.
    audit.append(
        session, ballot=ballot, actor=actor, action="closed",
        ballots_cast=len(sealed), practices_voted=turnout_figures(session, ballot=ballot)[1],
        sealed_sha256=tally_key.sealed_digest([c for _, c in sealed]),
    )  # fmt: skip
    # Every address learns whether its practice is recorded as voted: a ballot cast in its name
    # without its knowledge, or a vote that went missing, comes to light before publication.
    for practice in roll.entries(session, ballot=ballot):
        outbox.enqueue(session, kind=MessageKind.closed, ballot=ballot, practice=practice)
    return ballot


def sealed_ballots(session: Session, *, ballot: Ballot) -> list[tuple[str, bytes]]:
    """The ballot's sealed ballots (id, ciphertext), in id order."""
    rows = session.execute(
        select(SealedBallot.id, SealedBallot.ciphertext)
        .where(SealedBallot.ballot_id == ballot.id)
        .order_by(SealedBallot.id)
    )
    return [(row.id, row.ciphertext) for row in rows]


class BoxStillSealed(errors.Conflict):
    pass


def box_commitment(session: Session, *, ballot: Ballot) -> tuple[str, int]:
    """(root hash over the box exactly as it will be published, number of ballots)."""
    entries = box_entries(session, ballot=ballot)
    return proof.box_root(proof.published_box(ballot.receipt_mode, entries)), len(entries)


def box_entries(session: Session, *, ballot: Ballot) -> list[dict[str, Any]]:
    """The ballot box as plain values: receipt, choices and the figures a recount needs."""
    return [
        {"receipt_code": e.receipt_code, "choices": e.choices, "locality": e.locality,
         "votes": e.votes}
        for e in ballot_box(session, ballot=ballot)
    ]  # fmt: skip


class BoxChanged(errors.Conflict):
    pass


def publish(session: Session, *, ballot_id: int, actor: str) -> Ballot:
    """Count a closed ballot and publish the result; published is final.

    The box must be exactly the one committed to at close: a changed, added or removed entry
    stops the publication.
    """
    ballot = get(session, ballot_id, lock="update")
    require_status(ballot, BallotStatus.closed, "be published")
    if ballot.box_opened_at is None:
        raise BoxStillSealed(
            f"The ballot box of ballot {ballot.id} is still sealed: the key holders open it "
            f"first (`mandate tally-open {ballot.id} --share FILE --share FILE`), then the "
            "result can be counted and published."
        )
    opened = audit.last(session, ballot=ballot, action="box_opened")
    root, cast = box_commitment(session, ballot=ballot)
    if opened is None or opened.payload.get("ballot_box_root") != root:
        raise BoxChanged(
            "The ballot box is not the one its key holders opened (its root hash differs), so "
            "the result cannot be published. Nothing was counted or published; the returning "
            "officer and the scrutineer should investigate before anything else is done."
        )
    voted = turnout_figures(session, ballot=ballot)[1]
    if cast != voted:
        raise BoxChanged(
            f"The ballot box holds {cast} ballots but {voted} practices are marked as voted, so "
            "the result cannot be published; the returning officer and the scrutineer should "
            "investigate."
        )
    result = count(session, ballot=ballot)
    scrutiny.require_countersigned(
        ballot, current=proof.count_hash(ballot_box_root=root, ballots_cast=cast, result=result)
    )
    ballot.result = result
    ballot.status = BallotStatus.published
    ballot.published_at = clock.now()
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="published",
        result=ballot.result, ballot_box_root=root,
    )  # fmt: skip
    # Queued with the publication: every copy outside the server fixes the record as it stood.
    announcements.queue_publication(session, ballot=ballot)
    return ballot


def count(session: Session, *, ballot: Ballot) -> dict[str, Any]:
    """Count the ballot box under the ballot's frozen rules."""
    if ballot.status not in (BallotStatus.closed, BallotStatus.published):
        # Nothing is counted before close, for anyone.
        raise errors.WrongState("Nothing is counted before the ballot closes.")
    rules = rules_of(ballot)
    electors = [
        counting.Elector(locality=e.locality, votes=e.votes or 1)
        for e in roll.entries(session, ballot=ballot)
    ]
    papers = [
        counting.Paper(locality=p.locality, votes=p.votes, choices=p.choices)
        for p in ballot_box(session, ballot=ballot)
    ]
    return counting.declare(
        rules,
        questions=[(q.id, q.options, q.rules) for q in questions_of(ballot)],
        electors=electors,
        papers=papers,
    )


def ballot_box(session: Session, *, ballot: Ballot) -> list[BallotBoxEntry]:
    """The recorded ballots in receipt order, never in the order they were cast."""
    # A ballot voided after publication keeps the box it published.
    was_published = ballot.status == BallotStatus.voided and ballot.result is not None
    if ballot.status not in (BallotStatus.closed, BallotStatus.published) and not was_published:
        raise errors.WrongState("The ballot box stays shut until the ballot closes.")
    return list(
        session.scalars(
            select(BallotBoxEntry)
            .where(BallotBoxEntry.ballot_id == ballot.id)
            .order_by(BallotBoxEntry.receipt_code)
        )
    )


def turnout_figures(session: Session, *, ballot: Ballot) -> tuple[int, int]:
    """(eligible practices, practices that have voted)."""
    eligible, voted = session.execute(
        select(func.count(RollEntry.id), func.count(RollEntry.voted_at)).where(
            RollEntry.ballot_id == ballot.id
        )
    ).one()
    return int(eligible), int(voted)
